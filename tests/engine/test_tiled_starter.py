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


def test_find_every_cell_tile_by_tile_finds_each_cell_once():
    """Cells inside one tile, in the overlap of two or four tiles, and cut by a tile's border: each found once."""
    from napari_sam2.engine import FindSettings
    from tests.engine.cell_scenes import _disc, render

    side = 400  # tiles of 256 px at 0 and 144 on each axis: they overlap on 144 … 256
    centres = [(60, 60), (200, 200), (250, 60), (60, 250), (340, 330), (330, 150), (150, 340)]
    truth = np.zeros((1, side, side), np.int32)
    for k, centre in enumerate(centres, 1):
        truth[0][_disc(side, centre, 18)] = k
    model = build_sam2(STARTER_NAME, packaged_checkpoint(STARTER_NAME), image_size=256, device="cpu")
    session = TiledSession(model, render(truth), device="cpu")
    assert len(session.layout) == 4
    settings = FindSettings(object_diameter=36, points_per_side=8, pred_iou_threshold=0.6, stability_threshold=0.75)
    ids = session.find_objects(0, settings)
    result = session.result(0)
    assert result.obj_ids == tuple(ids)
    matches = []
    for k in range(len(ids)):
        mask = result.mask(k)
        scores = {c: iou(mask, truth[0] == c) for c in range(1, len(centres) + 1)}
        best = max(scores, key=scores.get)
        matches.append((best, scores[best]))
    assert sorted(c for c, _ in matches) == list(range(1, len(centres) + 1)), matches  # each cell once
    assert min(s for _, s in matches) > 0.6, matches
    assert not (result.masks.sum(0) > 1).any()  # disjoint
    again = session.find_objects(0, settings)  # what is tracked is skipped
    assert again == []
    session.close()
