"""Where each object is on each frame — area, bounding box, centroid — read from the label store for review mode
(jump to an object, its crops over time). No Qt and no torch.

:class:`FootprintIndex` scans a frame once and keeps the result until told that the frame changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Footprint:
    """One object on one frame: ``area`` in pixels, ``box`` (y0, x0, y1, x1) with y1/x1 exclusive, ``centroid``
    (y, x) in frame pixels."""

    area: int
    box: tuple[int, int, int, int]
    centroid: tuple[float, float]


def frame_footprints(labels: np.ndarray) -> dict[int, Footprint]:
    """Every object of one (H, W) label frame (0 is background): ``{obj_id: Footprint}``."""
    labels = np.asarray(labels)
    ys, xs = np.nonzero(labels)
    if not len(ys):
        return {}
    ids, inverse = np.unique(labels[ys, xs], return_inverse=True)
    n = len(ids)
    area = np.bincount(inverse, minlength=n)
    cy = np.bincount(inverse, weights=ys, minlength=n) / area
    cx = np.bincount(inverse, weights=xs, minlength=n) / area
    y0 = np.full(n, labels.shape[0], np.int64)
    x0 = np.full(n, labels.shape[1], np.int64)
    y1 = np.zeros(n, np.int64)
    x1 = np.zeros(n, np.int64)
    np.minimum.at(y0, inverse, ys)
    np.minimum.at(x0, inverse, xs)
    np.maximum.at(y1, inverse, ys + 1)
    np.maximum.at(x1, inverse, xs + 1)
    return {
        int(i): Footprint(int(area[k]), (int(y0[k]), int(x0[k]), int(y1[k]), int(x1[k])), (float(cy[k]), float(cx[k])))
        for k, i in enumerate(ids)
    }


class FootprintIndex:
    """Footprints of every object on every frame of ``view`` (a label store ``FrameView``: ``read_frame``,
    ``len``), computed on first use per frame; :meth:`invalidate` after frames were written."""

    def __init__(self, view: Any) -> None:
        self.view = view
        self._frames: dict[int, dict[int, Footprint]] = {}

    def invalidate(self, frames: Iterable[int] | None = None) -> None:
        """Forget ``frames`` (all, if None): they are read again when next needed."""
        if frames is None:
            self._frames.clear()
        else:
            for frame in frames:
                self._frames.pop(int(frame), None)

    def on_frame(self, frame: int) -> dict[int, Footprint]:
        """``{obj_id: Footprint}`` on ``frame``."""
        if frame not in self._frames:
            self._frames[frame] = frame_footprints(self.view.read_frame(frame))
        return self._frames[frame]

    def of_object(self, obj_id: int) -> dict[int, Footprint]:
        """``{frame: Footprint}`` of ``obj_id``, in frame order (frames where it has no pixels are left out)."""
        found = {}
        for frame in range(len(self.view)):
            footprint = self.on_frame(frame).get(obj_id)
            if footprint is not None:
                found[frame] = footprint
        return found
