"""What a prompt or a propagation step returns: every object's result on one frame."""

from __future__ import annotations

import numpy as np


class FrameResult:
    """All objects' results on one frame: ``logits`` (len(obj_ids), H, W) float32 at the frame's resolution,
    and their object-score logits ``object_scores`` (len(obj_ids),) (< 0: the object is predicted absent).

    The logits stay on the compute device until first read, so a consumer that needs only ``masks`` (or
    nothing, e.g. while skipping frames) does not pay for moving float32 images off the GPU.
    """

    __slots__ = ("frame", "obj_ids", "_scores", "_logits", "_device_logits")

    def __init__(self, frame: int, obj_ids: tuple[int, ...], logits, object_scores) -> None:
        self.frame = frame
        self.obj_ids = tuple(obj_ids)
        self._scores = object_scores
        self._logits = logits if isinstance(logits, np.ndarray) else None
        self._device_logits = None if isinstance(logits, np.ndarray) else logits

    @property
    def object_scores(self) -> np.ndarray:
        if not isinstance(self._scores, np.ndarray):
            self._scores = self._scores.float().cpu().numpy()
        return self._scores

    @property
    def logits(self) -> np.ndarray:
        if self._logits is None:
            self._logits = self._device_logits.float().cpu().numpy()
            self._device_logits = None
        return self._logits

    @property
    def masks(self) -> np.ndarray:
        """(len(obj_ids), H, W) bool."""
        if self._logits is None:
            return (self._device_logits > 0).cpu().numpy()
        return self._logits > 0

    def __repr__(self) -> str:
        return f"FrameResult(frame={self.frame}, obj_ids={self.obj_ids})"
