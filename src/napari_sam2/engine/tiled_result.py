"""A frame's result in a tiled session: each object's logits only inside its box, never the whole frame.

At 4,096² with dozens of objects, full-frame logits per object would take gigabytes; here an object keeps the
crop of its tile's logits where they are positive (its mask's bounding box). Outside its box an object's logit is
taken as ``NO_OBJECT_LOGIT``: since the label store gives a pixel only to a logit > 0, writing the crops
(``FrameView.write_sparse_result``) gives the same labels as writing the full logits.
"""

from __future__ import annotations

import numpy as np

from .tiles import Box

NO_OBJECT_LOGIT = -1024.0


class TiledFrameResult:
    """All objects' results on one frame: ``boxes`` (K, 4) int (y0, x0, y1, x1 in frame pixels, end exclusive;
    empty when the object has no pixel), ``crops`` K float32 arrays (y1 - y0, x1 - x0) of logits inside them,
    ``object_scores`` (K,) float32 object-score logits; ``height``/``width`` of the frame.

    ``masks`` and ``logits`` give the dense (K, H, W) arrays of a :class:`FrameResult` for code that needs them
    (outside its box an object's logit is ``NO_OBJECT_LOGIT``); large frames should use the crops.
    """

    __slots__ = ("frame", "obj_ids", "boxes", "crops", "object_scores", "height", "width")

    def __init__(self, frame: int, obj_ids: tuple[int, ...], boxes: list[Box], crops: list[np.ndarray],
                 object_scores: np.ndarray, height: int, width: int) -> None:
        self.frame = frame
        self.obj_ids = tuple(obj_ids)
        self.boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        self.crops = list(crops)
        self.object_scores = np.asarray(object_scores, dtype=np.float32)
        self.height, self.width = height, width

    def mask(self, k: int) -> np.ndarray:
        """Object ``k``'s (H, W) bool mask."""
        out = np.zeros((self.height, self.width), bool)
        y0, x0, y1, x1 = self.boxes[k]
        out[y0:y1, x0:x1] = self.crops[k] > 0
        return out

    @property
    def masks(self) -> np.ndarray:
        """(K, H, W) bool."""
        out = np.zeros((len(self.obj_ids), self.height, self.width), bool)
        for k, (y0, x0, y1, x1) in enumerate(self.boxes):
            out[k, y0:y1, x0:x1] = self.crops[k] > 0
        return out

    @property
    def logits(self) -> np.ndarray:
        """(K, H, W) float32, ``NO_OBJECT_LOGIT`` outside each object's box."""
        out = np.full((len(self.obj_ids), self.height, self.width), NO_OBJECT_LOGIT, np.float32)
        for k, (y0, x0, y1, x1) in enumerate(self.boxes):
            out[k, y0:y1, x0:x1] = self.crops[k]
        return out

    def __repr__(self) -> str:
        return f"TiledFrameResult(frame={self.frame}, obj_ids={self.obj_ids})"


def crop_positive(logits: np.ndarray, offset: tuple[int, int]) -> tuple[Box, np.ndarray]:
    """The box (frame pixels) of a (h, w) logit plane's positive pixels, shifted by ``offset``, and the logits
    inside it; an empty box and crop when no pixel is positive."""
    positive = logits > 0
    rows, cols = np.flatnonzero(positive.any(1)), np.flatnonzero(positive.any(0))
    if not len(rows):
        return (0, 0, 0, 0), np.zeros((0, 0), np.float32)
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    box = (y0 + offset[0], x0 + offset[1], y1 + offset[0], x1 + offset[1])
    return box, np.ascontiguousarray(logits[y0:y1, x0:x1], dtype=np.float32)
