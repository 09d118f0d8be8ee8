"""Automatic masklets over a frame larger than the model: every tile searched at native resolution.

Each tile runs ``find_objects.find_candidates`` on its own cached features; a candidate touching an inner border of
its tile (a side that is not the frame's border) is left to a tile that holds it whole; duplicates in the overlaps
are removed by mask NMS over the frame; the survivors are made disjoint, best first (``make_disjoint``'s rule,
without full-frame masks). The default object diameter is the tile's (``FindSettings.diameter`` of the tile's size).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .find_objects import Candidate, FindSettings, find_candidates, mask_nms
from .tiles import Box, TileLayout


def touches_inner_border(layout: TileLayout, tile: int, box: Box) -> bool:
    """Whether a box in tile ``tile``'s pixels touches one of the tile's inner borders."""
    ty0, tx0, ty1, tx1 = layout.boxes[tile]
    y0, x0, y1, x1 = box
    return bool((ty0 > 0 and y0 == 0) or (tx0 > 0 and x0 == 0) or (ty1 < layout.height and y1 == ty1 - ty0)
                or (tx1 < layout.width and x1 == tx1 - tx0))


def disjoint(candidates: list[Candidate], height: int, width: int, min_area: int, max_taken: float
             ) -> list[tuple[Box, np.ndarray]]:
    """``find_objects.make_disjoint`` in frame pixels without full-frame masks: (box, mask inside it), best first."""
    taken = np.zeros((height, width), bool)
    out = []
    for cand in sorted(candidates, key=lambda c: -c.score):
        y0, x0, y1, x1 = cand.box
        mask = cand.mask & ~taken[y0:y1, x0:x1]
        kept = int(mask.sum())
        if kept >= min_area and kept >= (1 - max_taken) * cand.area:
            taken[y0:y1, x0:x1] |= mask
            out.append((cand.box, mask))
    return out


def find_in_tiles(
    layout: TileLayout, session_of: Callable[[int], Any], frame: int, settings: FindSettings,
    covered: np.ndarray | None,
) -> list[tuple[Box, np.ndarray]]:
    """The objects found on ``frame`` (module docstring) as (box in frame pixels, bool mask inside it), best first.

    session_of: the tile's ``Session`` (made if needed); covered: (H, W) bool pixels to skip, or None.
    """
    candidates: list[Candidate] = []
    for index, (ty0, tx0, ty1, tx1) in enumerate(layout.boxes):
        session = session_of(index)
        region = None if covered is None else covered[ty0:ty1, tx0:tx1]
        for cand in session.compute.run(find_candidates, session, frame, settings, region):
            if touches_inner_border(layout, index, cand.box):
                continue
            y0, x0, y1, x1 = cand.box
            candidates.append(Candidate((y0 + ty0, x0 + tx0, y1 + ty0, x1 + tx0), cand.mask, cand.score))
    kept = mask_nms(candidates, settings.nms_iou)
    y0, x0, y1, x1 = layout.boxes[0]
    min_area = settings.area_range(y1 - y0, x1 - x0)[0]
    return disjoint(kept, layout.height, layout.width, min_area, settings.covered_fraction)
