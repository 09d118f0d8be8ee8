"""The division rule on label sequences with known splits: a mask that falls into two parts, a mask that shrinks
while a new cell appears against it, and what is not a division (a leak onto a distant cell, a fresh track)."""

from __future__ import annotations

import json

import numpy as np

from napari_sam2.engine.divisions import (
    Division,
    DivisionDetector,
    DivisionRule,
    detect_divisions,
    divisions_from_labels,
)
from tests.engine.cell_scenes import _disc, cells_scene

SIDE = 64


def _sequence(frames: list[dict[int, list[tuple[float, float, float]]]]) -> np.ndarray:
    """Label frames from {id: [(y, x, radius) discs]}."""
    out = np.zeros((len(frames), SIDE, SIDE), np.int32)
    for t, cells in enumerate(frames):
        for obj, discs in cells.items():
            for y, x, r in discs:
                out[t][_disc(SIDE, (y, x), r)] = obj
    return out


def test_a_mask_in_two_parts_on_two_frames_in_a_row_is_a_division():
    one = [(30, 30, 8)]
    two = [(22, 30, 6), (38, 30, 6)]  # 4 px apart: neighbours, not a distant cell
    labels = _sequence([{1: one}] * 4 + [{1: two}] * 3)
    divisions, relabelled = detect_divisions(labels)
    assert divisions == [Division(5, 1, (2, 3))]  # seen split on frames 4 and 5: recognised on 5
    assert not (relabelled[5:] == 1).any(), "the parent ends before its daughters begin"
    assert (relabelled[4] == 1).sum() == (labels[4] == 1).sum(), "frames before the recognition stay the parent's"
    assert set(np.unique(relabelled[5])) == {0, 2, 3}
    assert (relabelled[5] == 2).sum() == (relabelled[5] == 3).sum() == (labels[5] == 1).sum() // 2


def test_one_frame_in_two_parts_is_not_a_division():
    labels = _sequence([{1: [(30, 30, 8)]}] * 4 + [{1: [(22, 30, 6), (38, 30, 6)]}] + [{1: [(30, 30, 8)]}] * 2)
    assert detect_divisions(labels)[0] == []


def test_a_mask_that_shrinks_while_a_new_cell_appears_against_it_is_a_division():
    frames = [{1: [(30, 30, 9)]}] * 5 + [{1: [(23, 30, 6)], 2: [(37, 30, 6)]}] * 2
    divisions, relabelled = detect_divisions(_sequence(frames))
    assert divisions == [Division(5, 1, (3, 2))]  # the parent's current mask becomes daughter 3, the new cell is 2
    assert not (relabelled[5:] == 1).any() and (relabelled[6] == 3).any()


def test_shrinking_alone_or_a_new_cell_far_away_is_no_division():
    shrink_only = [{1: [(30, 30, 9)]}] * 5 + [{1: [(30, 30, 6)]}] * 2
    assert detect_divisions(_sequence(shrink_only))[0] == []
    far = [{1: [(30, 30, 9)]}] * 5 + [{1: [(30, 30, 6)], 2: [(8, 8, 5)]}] * 2
    assert detect_divisions(_sequence(far))[0] == []


def test_a_leak_onto_a_distant_cell_is_not_a_split():
    labels = _sequence([{1: [(20, 20, 7)]}] * 4 + [{1: [(20, 20, 7), (48, 50, 7)]}] * 3)
    assert detect_divisions(labels)[0] == []


def test_a_fresh_track_does_not_divide_at_once():
    rule = DivisionRule(min_track_age=3)
    labels = _sequence([{1: [(30, 30, 8)]}, {1: [(22, 30, 6), (38, 30, 6)]}, {1: [(22, 30, 6), (38, 30, 6)]}])
    assert detect_divisions(labels, rule)[0] == []


def test_detector_state_saved_midway_continues_exactly():
    frames = [{1: [(30, 30, 9)], 4: [(10, 50, 5)]}] * 5 + [{1: [(23, 30, 6)], 2: [(37, 30, 6)], 4: [(10, 50, 5)]}]
    labels = _sequence(frames)

    def observe(detector, t):
        ids = [int(i) for i in np.unique(labels[t]) if i]
        born = {2} if t == 5 else set()
        return detector.observe(t, ids, np.stack([labels[t] == i for i in ids]), born)

    whole = DivisionDetector()
    events = [e for t in range(6) for e in observe(whole, t)]
    first = DivisionDetector()
    for t in range(3):
        observe(first, t)
    resumed = DivisionDetector(state=json.loads(json.dumps(first.state())))
    later = [e for t in range(3, 6) for e in observe(resumed, t)]
    assert [(e.frame, e.parent, e.partner) for e in later] == [(e.frame, e.parent, e.partner) for e in events]
    assert [(e.frame, e.parent, e.rule) for e in events] == [(5, 1, "shrink")]
    assert resumed.state() == whole.state()


def test_resolved_divisions_are_read_off_ground_truth_labels():
    scene = cells_scene(8, enter_at=2, divide_at=4)
    assert divisions_from_labels(scene.labels) == [Division(4, 1, (4, 5))]  # the cell entering at 2 is no daughter
