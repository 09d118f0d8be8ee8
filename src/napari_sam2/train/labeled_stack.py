"""``LabeledStack``: frames and object labels linked over the frame axis, the unit every training source yields;
and ``link_by_overlap``, which turns per-frame instance labels into such linked labels."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

LINK_MIN_IOU = 0.3


class TrainingDataError(ValueError):
    """Training data that cannot be used: missing, unreadable, or not images with labels. Names the path."""


@dataclass
class LabeledStack:
    """A stack of 2D frames with object labels linked over its frame axis (time or depth).

    ``frames``: (N, H, W) of any numeric dtype, or (N, H, W, 3) uint8 RGB. ``labels``: (N, H, W) int32, 0 is
    background and an id is the same object on every frame it appears on. ``object_ids``: the objects that may be
    trained on (None: every object). ``name`` says where the stack came from.
    """

    frames: np.ndarray
    labels: np.ndarray
    name: str
    object_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames)
        labels = np.asarray(self.labels)
        rgb = self.frames.ndim == 4 and self.frames.shape[-1] == 3 and self.frames.dtype == np.uint8
        if not (self.frames.ndim == 3 or rgb):
            raise TrainingDataError(
                f"{self.name}: frames must be (N, H, W) or (N, H, W, 3) uint8, got {self.frames.shape} "
                f"{self.frames.dtype}"
            )
        if labels.shape != self.frames.shape[:3]:
            raise TrainingDataError(f"{self.name}: labels {labels.shape} do not match frames {self.frames.shape}")
        if labels.dtype.kind not in "iub":
            raise TrainingDataError(f"{self.name}: labels must be integers, got {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.int32).max):
            raise TrainingDataError(f"{self.name}: label values must lie in 0..2**31-1")
        self.labels = labels.astype(np.int32, copy=False)
        if self.object_ids is not None:
            self.object_ids = tuple(sorted(int(i) for i in self.object_ids))

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def shape2d(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def frame_range(self, start: int, stop: int) -> LabeledStack:
        """Frames ``[start, stop)`` as a stack of their own (views, not copies)."""
        return LabeledStack(self.frames[start:stop], self.labels[start:stop], self.name, self.object_ids)

    def __repr__(self) -> str:
        allowed = "all" if self.object_ids is None else len(self.object_ids)
        return (
            f"LabeledStack({self.name!r}, frames={self.frames.shape} {self.frames.dtype}, objects allowed: {allowed})"
        )


def contiguous_runs(indices: list[int]) -> Iterator[tuple[int, int]]:
    """``(first, last + 1)`` of each run of consecutive integers in sorted ``indices``."""
    start = prev = None
    for i in indices:
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            yield start, prev + 1
            start = prev = i
    if start is not None:
        yield start, prev + 1


def _overlap_pairs(previous: np.ndarray, current: np.ndarray) -> list[tuple[float, int, int]]:
    """``[(IoU, previous id, current id)]`` for every pair of objects that overlap, highest IoU first."""
    both = (previous > 0) & (current > 0)
    if not both.any():
        return []
    prev_ids, prev_area = np.unique(previous[previous > 0], return_counts=True)
    cur_ids, cur_area = np.unique(current[current > 0], return_counts=True)
    p = np.searchsorted(prev_ids, previous[both])
    c = np.searchsorted(cur_ids, current[both])
    codes, inter = np.unique(p.astype(np.int64) * len(cur_ids) + c, return_counts=True)
    pi, ci = codes // len(cur_ids), codes % len(cur_ids)
    iou = inter / (prev_area[pi] + cur_area[ci] - inter)
    order = np.argsort(-iou, kind="stable")
    return [(float(iou[k]), int(prev_ids[pi[k]]), int(cur_ids[ci[k]])) for k in order]


def link_by_overlap(labels: np.ndarray, min_iou: float = LINK_MIN_IOU) -> np.ndarray:
    """Link per-frame instance labels (N, H, W) into tracks: (N, H, W) int32 with one id per track.

    Consecutive frames are matched greedily by highest IoU (pairs with IoU > ``min_iou``, each object used once);
    an object of frame t matched to one of frame t − 1 takes its track id, an unmatched one starts a new track.
    Track ids are 1, 2, … in order of appearance.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be (N, H, W), got shape {labels.shape}")
    out = np.zeros(labels.shape, np.int32)
    next_id = 1
    previous = None
    for t in range(labels.shape[0]):
        current = labels[t]
        ids = [int(i) for i in np.unique(current) if i != 0]
        track_of: dict[int, int] = {}
        if previous is not None:
            used: set[int] = set()
            for iou, prev_track, cur in _overlap_pairs(previous, current):
                if iou <= min_iou:
                    break
                if prev_track not in used and cur not in track_of:
                    track_of[cur] = prev_track
                    used.add(prev_track)
        for cur in ids:
            if cur not in track_of:
                track_of[cur] = next_id
                next_id += 1
        if ids:
            lookup_keys = np.asarray(ids)
            lookup_values = np.asarray([track_of[i] for i in ids], np.int32)
            inside = current > 0
            out[t][inside] = lookup_values[np.searchsorted(lookup_keys, current[inside])]
        previous = out[t]
    return out
