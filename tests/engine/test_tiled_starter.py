"""Tiling with real masks (the shipped starter model): small cells in an 896² time-lapse are tracked far better at
native resolution than resized to the model's input; a nucleus crossing into the next tile is handed over with its
id and its mask follows it; every cell is found once by the per-tile search."""

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
def test_tiled_tracking_beats_resizing_small_cells():
    model = build_sam2(STARTER_NAME, packaged_checkpoint(STARTER_NAME), device="cpu")
    cells = SmallCells(num_frames=6, side=896, diameter=24, drift=(0.0, 8.0), seed=1)  # 24 px → 14 px resized
    centres = cells.centres[0]
    picks = [int(np.argmin(np.abs(centres - [y, x]).sum(1))) for y, x in ((448, 440), (150, 150), (700, 200),
                                                                           (200, 700))]
    scores = {}
    for name, kind in (("tiled", TiledSession), ("resized", Session)):
        session = kind(model, cells, device="cpu")
        for k in picks:
            (y, x), r = centres[k], cells.radii[k]
            session.add_box(0, k + 1, [y - r - 2, x - r - 2, y + r + 2, x + r + 2])
        per_frame = []
        for result in session.propagate():
            truth = cells.labels(result.frame)
            assert result.obj_ids == tuple(k + 1 for k in picks)
            per_frame.append([iou(m, truth == k + 1) for m, k in zip(result.masks, picks, strict=True)])
        scores[name] = np.asarray(per_frame).mean()
        session.close()
    assert scores["tiled"] > scores["resized"] + 0.15, scores


def test_a_cell_crossing_into_the_next_tile_is_handed_over_with_its_id():
    """A nucleus moving right across the overlap of two tiles (starter at 256 px: tiles at x = 0 and 144, overlapping
    on 144 … 256) is handed over once, keeps its id, and its mask follows it on every frame, before and after."""
    from tests.engine.cell_scenes import _disc, render

    side, frames, radius = 400, 8, 14
    truth = np.zeros((frames, side, side), np.int32)
    for t in range(frames):
        truth[t][_disc(side, (100, 172 + 8 * t), radius)] = 1
        truth[t][_disc(side, (300, 80), radius)] = 2  # a second nucleus, for the intensity range
    model = build_sam2(STARTER_NAME, packaged_checkpoint(STARTER_NAME), image_size=256, device="cpu")
    session = TiledSession(model, render(truth), device="cpu")
    session.add_box(0, 5, [100 - radius - 2, 172 - radius - 2, 100 + radius + 2, 172 + radius + 2])
    assert session.layout.boxes[session.spans(5)[0].tile] == (0, 0, 256, 256)
    ious = [iou(r.mask(0), truth[r.frame] == 1) for r in session.propagate()]
    spans = session.spans(5)
    assert [s.tile for s in spans] == [0, 1] and spans[0].last + 1 == spans[1].first, spans  # one hand-over
    assert session.layout.boxes[1] == (0, 144, 256, 400)
    assert min(ious) > 0.6, ious  # the same nucleus on every frame, across the border
    session.close()


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
