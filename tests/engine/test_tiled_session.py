"""Tiled sessions (tiny random-weight model, 256-px tiles): results in frame coordinates, equality with a plain
session where the frame is one tile, objects moving between tiles keep their id, exact resume."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from napari_sam2.engine import Session
from napari_sam2.engine.persistence import SessionStateError
from napari_sam2.engine.tiled_session import TiledSession, make_session
from napari_sam2.io import LabelStore
from napari_sam2.model import build_sam2
from tests.engine.reference_session import blob_frames

SIZE = 256


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(3)
    return build_sam2("sam2.1_hiera_tiny", image_size=SIZE)


def disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.fixture(scope="module")
def big_frames():
    """5 frames of 400 × 400 uint8 noise with bright discs (4 tiles of 256 px, overlapping by 112)."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 60, (5, 400, 400)).astype(np.uint8)
    for t in range(5):
        for centre in ((100, 100 + 10 * t), (300, 310), (120, 320)):
            frames[t][disc((400, 400), centre, 9)] = 220
    return frames


def test_a_frame_that_fits_one_tile_gives_the_plain_sessions_results(model):
    frames = blob_frames(4, size=96)
    plain, tiled = Session(model, frames, device="cpu"), TiledSession(model, frames, device="cpu")
    assert len(tiled.layout) == 1
    for s in (plain, tiled):
        s.add_points(0, 3, [[30, 40]], [1])
        s.add_box(1, 5, [50, 10, 80, 45])
    expected = {r.frame: r for r in plain.propagate()}
    got = {r.frame: r for r in tiled.propagate()}
    assert expected.keys() == got.keys()
    for f, r in expected.items():
        assert got[f].obj_ids == r.obj_ids == (3, 5)
        np.testing.assert_array_equal(got[f].masks, r.masks)
        np.testing.assert_allclose(got[f].object_scores, r.object_scores, rtol=1e-6)
        inside = got[f].masks
        np.testing.assert_allclose(got[f].logits[inside], r.logits[inside], rtol=1e-6)
    plain.close()
    tiled.close()


def test_prompts_land_in_the_tile_that_holds_them_and_results_are_in_frame_pixels(model, big_frames):
    session = TiledSession(model, big_frames, device="cpu")
    assert len(session.layout) == 4
    mask = disc((400, 400), (300, 310), 9)
    result = session.add_mask(0, 4, mask)
    (span,) = session.spans(4)
    assert session.layout.boxes[span.tile] == (144, 144, 400, 400)  # the bottom-right tile
    assert session.active_tiles == (span.tile,)  # no other tile holds a session
    # the same prompt in a plain session over that tile's crop: the same mask, shifted by the tile's corner
    crop = Session(model, big_frames[:, 144:, 144:], device="cpu")
    alone = crop.add_mask(0, 1, mask[144:, 144:]).masks[0]
    assert iou(alone, mask[144:, 144:]) > 0.8
    expected = np.zeros((400, 400), bool)
    expected[144:, 144:] = alone
    np.testing.assert_array_equal(result.mask(0), expected)
    np.testing.assert_array_equal(result.masks[0], expected)
    ys, xs = np.nonzero(expected)
    assert tuple(result.boxes[0]) == (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
    crop.close()
    session.add_points(0, 9, [[120, 320]], [1])
    assert session.layout.boxes[session.spans(9)[0].tile] == (0, 144, 256, 400)
    assert session.result(0).obj_ids == (4, 9)
    session.remove_object(4)
    assert session.obj_ids == (9,) and len(session.active_tiles) == 1
    session.close()


def test_an_object_moved_to_another_tile_keeps_its_id_and_its_labels_continue(model, big_frames, tmp_path):
    session = TiledSession(model, big_frames, device="cpu")
    first = disc((400, 400), (100, 100), 9)
    later = disc((400, 400), (300, 310), 9)  # outside the first tile: the object moves there from frame 3
    session.add_mask(0, 7, first)
    session.add_mask(3, 7, later)
    spans = session.spans(7)
    assert [(s.first, s.last) for s in spans] == [(0, 2), (3, 4)]
    assert spans[0].tile != spans[1].tile
    store = LabelStore.create(tmp_path / "labels.zarr", shape=(5, 400, 400), dimension_names=("t", "y", "x"))
    view = store.frame_view()
    results = list(session.propagate())
    assert [r.frame for r in results] == list(range(5))
    for r in results:
        assert r.obj_ids == (7,)
        view.write_frame_result(r)
    assert iou(store.read_frame(0) == 7, first) > 0.8  # the prompts, in their places
    assert iou(store.read_frame(3) == 7, later) > 0.8
    for f in (1, 2, 4):  # whatever the random weights draw comes from the tile of the span
        tile = next(s.tile for s in spans if s.first <= f <= s.last)
        y0, x0, y1, x1 = session.layout.boxes[tile]
        labels = store.read_frame(f) == 7
        assert not labels[:y0].any() and not labels[y1:].any() and not labels[:, :x0].any()
        assert not labels[:, x1:].any()
    session.close()


def test_a_resumed_tiled_run_equals_an_uninterrupted_one(model, big_frames):
    def prompted():
        s = TiledSession(model, big_frames, device="cpu")
        s.add_mask(0, 1, disc((400, 400), (100, 100), 9))
        s.add_mask(2, 1, disc((400, 400), (300, 120), 9))  # a move to another tile on frame 2
        return s

    whole = prompted()
    expected = {r.frame: r.masks for r in whole.propagate()}
    first = prompted()
    state = io.BytesIO()
    for r in first.propagate():
        if r.frame == 2:
            first.save_state(state, next_frame=3)
            break
    first.close()
    resumed = TiledSession(model, big_frames, device="cpu")
    state.seek(0)
    resumed.load_state(state)
    assert [(s.tile, s.first, s.last) for s in resumed.spans(1)] == [(s.tile, s.first, s.last)
                                                                     for s in whole.spans(1)]
    got = {r.frame: r.masks for r in resumed.propagate(start=3)}
    for f in range(3, 5):
        np.testing.assert_array_equal(got[f], expected[f])
    state.seek(0)
    other = TiledSession(model, big_frames, device="cpu", overlap=32)
    with pytest.raises(SessionStateError, match="tiles"):
        other.load_state(state)
    for s in (whole, resumed, other):
        s.close()


def test_make_session_tiles_by_the_rule(model, big_frames):
    assert isinstance(make_session(model, big_frames, tiling="auto", object_diameter=8, device="cpu"), TiledSession)
    assert isinstance(make_session(model, big_frames, tiling="auto", object_diameter=60, device="cpu"), Session)
    assert isinstance(make_session(model, big_frames, tiling="off", device="cpu"), Session)


def test_a_pass_against_the_direction_of_a_hand_over_seeds_the_span_it_enters(model, big_frames):
    """An object moved to another tile on frame 3 (its span there made forward, prompted on frame 3); a backward
    pass from frame 4 leaves that span at frame 3 and enters the first one at frame 2, whose only prompt is on frame 0:
    the mask of frame 3 becomes its prompt on frame 2, so it is tracked on from where the object was."""
    session = TiledSession(model, big_frames, device="cpu")
    session.add_mask(0, 7, disc((400, 400), (100, 100), 9))
    session.add_mask(3, 7, disc((400, 400), (248, 248), 9))  # across the first tile's border: moved
    first, second = session.spans(7)
    assert first.tile != second.tile
    assert session._tiles[first.tile].prompted_frames(first.local) == [0]
    results = {r.frame: r for r in session.propagate(start=4, direction="backward")}
    assert sorted(results) == [0, 1, 2, 3, 4]
    assert [(s.tile, s.first, s.last) for s in session.spans(7)] == [(first.tile, 0, 2), (second.tile, 3, 4)]
    assert session.prompted_frames(7) == [0, 2, 3]  # seeded on frame 2
    y0, x0, y1, x1 = session.layout.boxes[first.tile]
    seeded = results[2].mask(0)
    assert iou(seeded, results[3].mask(0)) > 0.5  # the object where it was on frame 3, clipped to its first tile
    assert not seeded[y1:].any() and not seeded[:, x1:].any()
    session.close()
