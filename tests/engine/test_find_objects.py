"""Automatic masklets: the grid of point prompts, the filters, mask NMS and skipping what tracked objects cover —
on frames whose cells are known; and re-detection while tracking everything (a cell that enters mid-stack)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_sam2.engine import AutoTrackSettings, FindSettings, Session, track_all
from napari_sam2.engine.find_objects import Candidate, crop_boxes, grid_points, make_disjoint, mask_nms
from napari_sam2.model import STARTER_NAME, build_sam2
from napari_sam2.model.hub import packaged_checkpoint
from tests.engine.cell_scenes import _disc, cells_scene, render

SIDE = 128
CELLS = [(28, 30), (30, 95), (70, 60), (100, 25), (100, 100)]
FIND = FindSettings(object_diameter=22, points_per_side=8, pred_iou_threshold=0.6, stability_threshold=0.75)


@pytest.fixture(scope="module")
def starter():
    return build_sam2(STARTER_NAME, packaged_checkpoint(STARTER_NAME), image_size=256)


@pytest.fixture(scope="module")
def five_cells():
    labels = np.zeros((1, SIDE, SIDE), np.int32)
    for k, centre in enumerate(CELLS, 1):
        labels[0][_disc(SIDE, centre, 11)] = k
    return render(labels), labels[0]


def _best_iou(mask: np.ndarray, truth: np.ndarray) -> tuple[int, float]:
    scores = {int(k): float((mask & (truth == k)).sum() / (mask | (truth == k)).sum()) for k in np.unique(truth) if k}
    best = max(scores, key=scores.get)
    return best, scores[best]


def test_grid_is_spaced_by_half_a_diameter_and_centred():
    points = grid_points(0, 0, 100, 60, 10.0)
    assert points.shape == (10 * 6, 2)
    np.testing.assert_allclose(np.unique(points[:, 0]), np.arange(10) * 10 + 4.5)
    np.testing.assert_allclose(np.unique(points[:, 1]), np.arange(6) * 10 + 4.5)
    assert FindSettings(object_diameter=30).spacing(500, 500) == 15
    assert FindSettings(points_per_side=32).spacing(256, 128) == 8


def test_crop_layers_cover_the_frame_with_overlap():
    boxes = crop_boxes(100, 80, 1, overlap=10)
    assert boxes[0] == (0, 0, 100, 80) and len(boxes) == 5
    covered = np.zeros((100, 80), int)
    for y0, x0, y1, x1 in boxes[1:]:
        covered[y0:y1, x0:x1] += 1
    assert covered.min() == 1 and covered[45:55, 35:45].min() == 4, "crops overlap by the diameter at the centre"


def test_mask_nms_removes_duplicates_by_mask_not_by_box():
    full = np.zeros((20, 20), bool)
    full[2:12, 2:12] = True
    near_copy = full.copy()
    near_copy[11, 2:12] = False
    ell_a = np.zeros((20, 20), bool)
    ell_a[0:20, 0:3] = True
    ell_a[17:20, 0:20] = True  # an L along the left and bottom edges
    ell_b = np.zeros((20, 20), bool)
    ell_b[0:3, 0:20] = True
    ell_b[0:20, 17:20] = True  # an L along the top and right: the same box, no shared... except corners
    cands = [Candidate((0, 0, 20, 20), m, s) for m, s in ((full, 0.9), (near_copy, 0.8), (ell_a, 0.7), (ell_b, 0.6))]
    kept = mask_nms(cands, 0.5)
    assert [c.score for c in kept] == [0.9, 0.7, 0.6], "the near copy goes; the two Ls share a box but not a mask"


def test_fragments_of_a_better_mask_are_dropped_when_made_disjoint():
    big = np.zeros((20, 20), bool)
    big[2:14, 2:14] = True
    part = np.zeros((20, 20), bool)
    part[8:16, 8:16] = True  # 36 of its 64 pixels inside the big one
    other = np.zeros((20, 20), bool)
    other[15:20, 0:6] = True
    masks = make_disjoint([Candidate((0, 0, 20, 20), m, s) for m, s in ((big, 0.9), (part, 0.8), (other, 0.7))],
                          20, 20, min_area=4)
    assert len(masks) == 2 and masks[0].sum() == 144 and masks[1].sum() == 30


def test_finds_each_known_cell_once_and_skips_what_is_tracked(starter, five_cells):
    frames, truth = five_cells
    session = Session(starter, frames, device="cpu")
    new = session.find_objects(0, FIND)
    masks = session.result(0).masks
    matches = [_best_iou(m, truth) for m in masks]
    assert sorted(k for k, _ in matches) == [1, 2, 3, 4, 5], matches
    ious = [iou for _, iou in matches]  # the starter at 256 px draws one of these cells a little small
    assert min(ious) > 0.6 and np.median(ious) > 0.85, matches
    assert new == [1, 2, 3, 4, 5]
    session.close()
    # the same frame with cell 3 already tracked: the four others are found, with new ids after it
    session = Session(starter, frames, device="cpu")
    session.add_mask(0, 9, truth == 3)
    new = session.find_objects(0, FIND)
    assert new == [10, 11, 12, 13]
    found = sorted(_best_iou(m, truth)[0] for m in session.result(0).masks[1:])
    assert found == [1, 2, 4, 5]
    session.close()


def test_area_range_filters_out_cells_of_the_wrong_size(starter, five_cells):
    frames, _ = five_cells
    session = Session(starter, frames, device="cpu")
    disc = np.pi * 11**2
    assert session.find_objects(0, dataclasses.replace(FIND, max_area=int(disc / 3))) == []
    assert session.find_objects(0, dataclasses.replace(FIND, min_area=int(disc * 3))) == []
    session.close()


@pytest.mark.slow
def test_re_detection_adds_a_cell_that_enters_mid_stack(starter):
    scene = cells_scene(7, enter_at=3)
    session = Session(starter, scene.frames, device="cpu")
    steps = list(track_all(session, AutoTrackSettings(find=FIND, redetect_every=3, divisions=None)))
    assert [s.result.frame for s in steps] == list(range(7))
    assert len(steps[0].new_objects) == 2 and steps[3].new_objects and not any(
        s.new_objects for s in steps if s.result.frame not in (0, 3))
    (entering,) = steps[3].new_objects
    for step in steps[3:]:
        mask = step.result.masks[step.result.obj_ids.index(entering)]
        cell, iou = _best_iou(mask, scene.labels[step.result.frame])
        assert cell == 3 and iou > 0.75, (step.result.frame, cell, iou)
    assert entering not in steps[2].result.obj_ids
    session.close()


def test_thresholds_left_unset_follow_the_model():
    """The starter's IoU head predicts 0.3–0.5 for good nucleus masks: unset thresholds take its own defaults,
    Meta's models keep 0.6 / 0.75; thresholds that are set are kept."""
    from napari_sam2.engine.find_objects import default_thresholds

    assert default_thresholds("starter") == (0.3, 0.6)
    assert default_thresholds("sam2.1_hiera_tiny") == (0.6, 0.75)
    assert FindSettings().pred_iou_threshold is None and FindSettings(pred_iou_threshold=0.8).pred_iou_threshold == 0.8
