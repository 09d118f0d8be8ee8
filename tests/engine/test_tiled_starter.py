"""Tiling with real masks (the shipped starter model, 512-px tiles): small cells in an 896² time-lapse are tracked
far better at native resolution than resized to the model's input, and a cell crossing into the next tile is handed
over with its id, its labels continuing on the right cell."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2.engine import Session
from napari_sam2.engine.tiled_session import TiledSession
from napari_sam2.model import STARTER_NAME, build_sam2
from napari_sam2.model.hub import packaged_checkpoint
from napari_sam2.train.small_cells import SmallCells


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.mark.slow
def test_tiled_tracking_beats_resizing_and_hands_a_crossing_cell_over():
    model = build_sam2(STARTER_NAME, packaged_checkpoint(STARTER_NAME), device="cpu")
    cells = SmallCells(num_frames=6, side=896, diameter=24, drift=(0.0, 8.0), seed=1)  # 24 px → 14 px resized
    centres = cells.centres[0]
    # a cell just left of the tiles' overlap (tiles start at x = 0 and 384: it overlaps 384 … 512), and three others
    crossing = int(np.argmin(np.abs(centres[:, 1] - 438) + 0.2 * np.abs(centres[:, 0] - 448)))
    picks = [crossing] + [int(np.argmin(np.abs(centres - [y, x]).sum(1))) for y, x in ((150, 150), (700, 200),
                                                                                          (200, 700))]
    scores = {}
    for name, kind in (("tiled", TiledSession), ("resized", Session)):
        session = kind(model, cells, device="cpu")
        for k in picks:
            (y, x), r = centres[k], cells.radii[k]
            session.add_box(0, k + 1, [y - r - 2, x - r - 2, y + r + 2, x + r + 2])
        per_frame, crossing_masks = [], []
        for result in session.propagate():
            truth = cells.labels(result.frame)
            assert result.obj_ids == tuple(k + 1 for k in picks)
            per_frame.append([iou(m, truth == k + 1) for m, k in zip(result.masks, picks, strict=True)])
            crossing_masks.append(result.masks[0])
        scores[name] = np.asarray(per_frame)
        if name == "tiled":
            spans = session.spans(crossing + 1)
            assert len(spans) == 2 and spans[0].tile != spans[1].tile, spans  # handed over, same id
            handed = spans[1].first
            assert spans[0].last + 1 == handed
            # its labels continue across the border: the mask there and on the frames before and after it is
            # one moving cell (it moves 8 px a frame, a third of its diameter)
            for f in (handed, handed + 1):
                assert iou(crossing_masks[f], crossing_masks[f - 1]) > 0.3, f
            x_left = [np.nonzero(m.any(0))[0].min() for m in crossing_masks]
            assert x_left[handed] > x_left[0]  # it keeps moving right
        session.close()
    tiled, resized = scores["tiled"].mean(), scores["resized"].mean()
    assert tiled > resized + 0.15, (tiled, resized)
