"""An object's crops over time for review mode: a window of one size for every frame (the object's largest extent,
with a margin), centred on the object on each frame, so growth, shrinking and a split read at a glance.
No Qt and no torch."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from napari_sam2._qt.footprints import Footprint

MARGIN = 1.6  # window side = MARGIN × the object's largest bounding-box side over its frames


@dataclass(frozen=True)
class Crop:
    """One thumbnail: ``frame``, ``image`` (S, S) uint8 grey, ``mask`` (S, S) bool (the object's pixels)."""

    frame: int
    image: np.ndarray
    mask: np.ndarray


def sample_frames(frames: list[int], count: int) -> list[int]:
    """At most ``count`` of ``frames`` (sorted), evenly spread, first and last included."""
    if len(frames) <= count:
        return list(frames)
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[i] for i in sorted(set(picks.tolist()))]


def _window(centre: float, side: int, size: int) -> np.ndarray:
    """Indices (side,) of a window of ``side`` pixels centred on ``centre``, clipped into 0 … size - 1."""
    start = int(round(centre - side / 2))
    return np.clip(np.arange(start, start + side), 0, size - 1)


def _to_grey(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, np.float32)
    return image.mean(axis=-1) if image.ndim == 3 else image


def object_crops(
    footprints: Mapping[int, Footprint],
    obj_id: int,
    read_image: Callable[[int], np.ndarray],
    read_labels: Callable[[int], np.ndarray],
    *,
    count: int = 10,
    size: int = 64,
) -> list[Crop]:
    """Crops of ``obj_id`` on at most ``count`` of the frames in ``footprints`` (``{frame: Footprint}``), each
    ``size`` × ``size``. ``read_image(frame)``: (H, W) or (H, W, C); ``read_labels(frame)``: (H, W) ids."""
    if not footprints:
        return []
    extent = max(max(f.box[2] - f.box[0], f.box[3] - f.box[1]) for f in footprints.values())
    side = max(8, int(np.ceil(extent * MARGIN)))
    pick = np.linspace(0, side - 1, size).round().astype(int)
    crops = []
    for frame in sample_frames(sorted(footprints), count):
        cy, cx = footprints[frame].centroid
        image, labels = _to_grey(read_image(frame)), np.asarray(read_labels(frame))
        rows = _window(cy, side, image.shape[0])[pick]
        cols = _window(cx, side, image.shape[1])[pick]
        patch = image[np.ix_(rows, cols)]
        lo, hi = np.percentile(patch, (1, 99.5))
        grey = np.clip((patch - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
        crops.append(Crop(frame, grey, labels[np.ix_(rows, cols)] == obj_id))
    return crops


def outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` (bool (H, W)) that touch a pixel outside it (4-neighbourhood)."""
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner
