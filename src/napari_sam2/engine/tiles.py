"""Overlapping tiles at the model's input size over a frame larger than it, and which tile holds a box best.

A frame side longer than the tile is covered by n tiles of ``tile`` pixels, n = ceil((side - overlap) /
(tile - overlap)), spread evenly from 0 to ``side - tile``: neighbours overlap by at least ``overlap`` pixels. A side
no longer than the tile gets one tile of the whole side. A tile's *inner* borders are its sides that are not the
frame's border; how central a box is in a tile (:meth:`TileLayout.margin`) is the distance from the box to the
nearest inner border (a box outside the tile, or cut by it, has a negative or zero margin).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), end exclusive, frame pixels

MIN_OBJECT_PIXELS = 16.0  # "auto" tiling: objects narrower than this after resizing the frame are too small
UNKNOWN_SIZE_FACTOR = 4  # "auto" tiling without an object size: frames at least 4 × the model's input


def _starts(side: int, tile: int, overlap: int) -> list[int]:
    if side <= tile:
        return [0]
    n = math.ceil((side - overlap) / (tile - overlap))
    return sorted({int(round(i * (side - tile) / (n - 1))) for i in range(n)})


@dataclass(frozen=True)
class TileLayout:
    """Overlapping tiles over a (height, width) frame: each ``tile`` × ``tile`` (or the frame's side where it is
    shorter), neighbours overlapping by at least ``overlap`` pixels."""

    height: int
    width: int
    tile: int
    overlap: int

    def __post_init__(self) -> None:
        if self.tile < 1 or self.height < 1 or self.width < 1:
            raise ValueError(f"tile and frame sides must be positive, got tile {self.tile} over "
                             f"{self.height} × {self.width}")
        if not 0 <= self.overlap < self.tile:
            raise ValueError(f"the tile overlap must be at least 0 and less than the tile ({self.tile} px), "
                             f"got {self.overlap}")

    @cached_property
    def boxes(self) -> tuple[Box, ...]:
        """Every tile's box, row by row."""
        ys, xs = _starts(self.height, self.tile, self.overlap), _starts(self.width, self.tile, self.overlap)
        th, tw = min(self.tile, self.height), min(self.tile, self.width)
        return tuple((y, x, y + th, x + tw) for y in ys for x in xs)

    def __len__(self) -> int:
        return len(self.boxes)

    def margin(self, index: int, box: Box) -> float:
        """How far ``box`` lies inside tile ``index`` from its nearest inner border (inf: the tile is the frame)."""
        ty0, tx0, ty1, tx1 = self.boxes[index]
        y0, x0, y1, x1 = box
        sides = []
        if ty0 > 0:
            sides.append(y0 - ty0)
        if tx0 > 0:
            sides.append(x0 - tx0)
        if ty1 < self.height:
            sides.append(ty1 - y1)
        if tx1 < self.width:
            sides.append(tx1 - x1)
        return float(min(sides)) if sides else math.inf

    def best_tile(self, box: Box) -> int:
        """The tile that holds ``box`` most centrally (largest margin; ties: the first)."""
        margins = [self.margin(i, box) for i in range(len(self))]
        return int(np.argmax(margins))

    def contains(self, index: int, box: Box) -> bool:
        ty0, tx0, ty1, tx1 = self.boxes[index]
        y0, x0, y1, x1 = box
        return ty0 <= y0 and tx0 <= x0 and y1 <= ty1 and x1 <= tx1


def mask_box(mask: np.ndarray) -> Box | None:
    """The bounding box (y0, x0, y1, x1) of a 2D mask's pixels, None when it is empty."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def should_tile(height: int, width: int, image_size: int, object_diameter: float | None) -> bool:
    """The "auto" rule: tile when the frame is larger than the model's input and an object of
    ``object_diameter`` frame pixels would be narrower than ``MIN_OBJECT_PIXELS`` once the frame is resized to
    it; with no diameter known (clicks only, or the widget before any prompt), when the frame's longer side is at
    least ``UNKNOWN_SIZE_FACTOR`` times the model's input (resizing would shrink a 60-px cell under 16 px)."""
    side = max(height, width)
    if side <= image_size:
        return False
    if object_diameter is None:
        return side >= UNKNOWN_SIZE_FACTOR * image_size
    return object_diameter * image_size / side < MIN_OBJECT_PIXELS


def choose_tiling(mode: str, height: int, width: int, image_size: int, object_diameter: float | None) -> bool:
    """Whether to tile, for ``mode`` "auto" (:func:`should_tile`), "on" or "off"."""
    if mode == "on":
        return True
    if mode == "off":
        return False
    if mode == "auto":
        return should_tile(height, width, image_size, object_diameter)
    raise ValueError(f"tiling must be 'auto', 'on' or 'off', got {mode!r}")
