"""LabelStore: the merge rule ("user edits win", highest score), provenance, views along any axis, objects and
prompts that survive reopening, removal, plain-zarr compatibility and clear errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import zarr

from napari_sam2.io import LabelStore, LabelStoreError, open_stack


def _row_store(tmp_path, n_frames=3):
    """A store of 1×4-pixel frames: small enough to write every expected pixel by hand."""
    return LabelStore.create(tmp_path / "l.zarr", (n_frames, 1, 4), dimension_names=("t", "y", "x"))


def _logits(*rows):
    return np.asarray(rows, dtype=np.float32)[:, None, :]  # (K, 1, 4)


def test_highest_positive_logit_wins_each_pixel(tmp_path):
    store = _row_store(tmp_path)
    out = store.write_result(0, [1, 2], _logits([2, 2, -1, -1], [-1, 3, 1, -1]))
    np.testing.assert_array_equal(out, [[1, 2, 2, 0]])
    np.testing.assert_array_equal(store.read_frame(0), [[1, 2, 2, 0]])
    assert store.provenance(0) == {1: "propagation", 2: "propagation"}


def test_nan_logits_claim_nothing(tmp_path):
    store = _row_store(tmp_path)
    out = store.write_result(0, [1, 2], _logits([np.nan, 1, np.nan, -1], [2, np.nan, np.nan, -1]))
    np.testing.assert_array_equal(out, [[2, 1, 0, 0]])


def test_a_result_replaces_the_previous_pixels_of_the_objects_it_carries(tmp_path):
    store = _row_store(tmp_path)
    store.write_result(0, [1], _logits([1, 1, -1, -1]))
    np.testing.assert_array_equal(store.write_result(0, [1], _logits([-1, -1, 1, 1])), [[0, 0, 1, 1]])


def test_objects_not_carried_keep_unclaimed_pixels_and_lose_claimed_ones(tmp_path):
    store = _row_store(tmp_path)
    store.write_result(0, [2], _logits([-1, -1, 1, 1]))
    np.testing.assert_array_equal(store.write_result(0, [1], _logits([-1, 1, 1, -1])), [[0, 1, 1, 2]])
    assert store.provenance(0) == {1: "propagation", 2: "propagation"}


def test_propagation_never_overwrites_hand_painted_pixels_of_another_object(tmp_path):
    store = _row_store(tmp_path)
    store.write_manual(0, np.array([[2, 2, 0, 0]]))
    out = store.write_result(0, [1], _logits([5, 5, 5, 5]))
    np.testing.assert_array_equal(out, [[2, 2, 1, 1]])
    assert store.provenance(0) == {1: "propagation", 2: "manual"}


def test_propagation_of_a_hand_painted_object_keeps_the_painting(tmp_path):
    store = _row_store(tmp_path)
    store.write_manual(0, np.array([[2, 2, 0, 0]]))
    np.testing.assert_array_equal(store.write_result(0, [2], _logits([-1, -1, 5, 5])), [[2, 2, 0, 0]])
    assert store.provenance(0) == {2: "manual"}


def test_a_prompt_result_replaces_the_painting_of_its_object_only(tmp_path):
    store = _row_store(tmp_path)
    store.write_manual(0, np.array([[2, 2, 3, 0]]))
    out = store.write_result(0, [2], _logits([-1, 5, 5, 5]), source="prompt")
    np.testing.assert_array_equal(out, [[0, 2, 3, 2]])  # object 3's painted pixel stays
    assert store.provenance(0) == {2: "prompt", 3: "manual"}


def test_manual_write_marks_changed_objects_including_erased_ones(tmp_path):
    store = _row_store(tmp_path)
    store.write_result(0, [1, 3, 4], _logits([1, -1, -1, -1], [-1, 1, -1, -1], [-1, -1, 1, -1]))
    np.testing.assert_array_equal(store.read_frame(0), [[1, 3, 4, 0]])
    store.write_manual(0, np.array([[1, 1, 4, 0]]))  # object 1 painted over object 3; object 4 untouched
    assert store.provenance(0) == {1: "manual", 3: "manual", 4: "propagation"}
    out = store.write_result(0, [3], _logits([-1, 5, -1, 5]))  # propagation must not bring back what was erased
    np.testing.assert_array_equal(out, [[1, 1, 4, 0]])


def test_write_manual_with_explicit_objects(tmp_path):
    store = _row_store(tmp_path)
    store.write_manual(1, np.array([[5, 0, 6, 0]]), obj_ids=[5])
    assert store.provenance(1) == {5: "manual"}
    assert set(store.objects) == {5, 6}  # every painted id is registered as an object


def test_views_along_z_and_t_share_planes_provenance_and_prompts(tmp_path):
    store = LabelStore.create(tmp_path / "l.zarr", (2, 3, 4, 5), dimension_names=("t", "z", "y", "x"))
    along_z = store.frame_view(axis="z", position={"t": 1})
    along_t = store.frame_view(axis="t", position={"z": 2})
    assert (len(along_z), len(along_t), along_z.coords(2)) == (3, 2, {"t": 1, "z": 2})
    logits = np.full((1, 4, 5), -1.0, np.float32)
    logits[0, 1:3, 1:4] = 1.0
    along_z.write_result(2, [9], logits)
    expected = np.zeros((4, 5), np.uint32)
    expected[1:3, 1:4] = 9
    np.testing.assert_array_equal(along_t.read_frame(1), expected)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "l.zarr" / "labels", mode="r")[1, 2], expected)
    assert along_t.provenance(1) == {9: "propagation"}
    along_z.add_prompt(9, 2, points=[[1.5, 2.0]], labels=[1])
    (seen,) = along_t.prompts(9)
    assert (seen.axis, seen.frame, seen.coords) == ("t", 1, {"t": 1, "z": 2})
    assert store.frame_view(axis="t", position={"z": 0}).prompts() == []
    with pytest.raises(LabelStoreError, match="say which one"):
        store.read_frame(0)
    with pytest.raises(LabelStoreError, match="'z' has 3 entries"):
        store.frame_view(axis="t")


def test_session_survives_reopening_and_continues(tmp_path):
    path = tmp_path / "l.zarr"
    store = LabelStore.create(path, (4, 6, 6), dimension_names=("t", "y", "x"))
    store.add_object(1, name="nucleus A", colour=(1.0, 0.0, 0.0))
    store.add_object(2, colour="#00FF00")
    mask = np.zeros((6, 6), bool)
    mask[2:4, 1:5] = True
    p1 = store.add_prompt(1, 0, points=[[1, 2], [3, 4]], labels=[1, 0])
    p2 = store.add_prompt(2, 3, box=(0, 0, 2, 3))
    p3 = store.add_prompt(2, 1, mask=mask)
    logits = np.where(mask, 3.0, -3.0)[None].astype(np.float32)
    store.write_result(1, [2], logits, source="prompt")
    store.write_manual(2, mask.astype(np.uint8))

    again = LabelStore.open(path)
    assert again.objects[1].name == "nucleus A" and again.objects[1].colour == "#ff0000"
    assert again.objects[2].colour == "#00ff00"
    assert again.prompts() == [p1, p2, p3]
    np.testing.assert_array_equal(again.prompts(2)[1].mask, mask)
    np.testing.assert_array_equal(again.prompts(1)[0].points, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(again.prompts(1)[0].labels, [1, 0])
    assert again.prompts(2)[0].box == (0.0, 0.0, 2.0, 3.0)
    assert again.provenance(1) == {2: "prompt"} and again.provenance(2) == {1: "manual"}
    np.testing.assert_array_equal(again.read_frame(1), np.where(mask, 2, 0))
    p4 = again.add_prompt(1, 3, points=[[0, 0]])
    assert p4.seq > p3.seq
    again.rename_object(1, "nucleus B")
    assert LabelStore.open(path).objects[1].name == "nucleus B"


def test_remove_object_clears_pixels_prompts_and_provenance(tmp_path):
    path = tmp_path / "l.zarr"
    store = LabelStore.create(path, (3, 1, 4), dimension_names=("t", "y", "x"))
    store.write_result(0, [1, 2], _logits([1, 1, -1, -1], [-1, -1, 1, 1]))
    store.write_manual(2, np.array([[1, 0, 2, 2]]))
    store.add_prompt(1, 0, points=[[0, 0]])
    store.add_prompt(2, 0, points=[[0, 3]])
    store.remove_object(1)
    for reader in (store, LabelStore.open(path)):
        np.testing.assert_array_equal(reader.read_frame(0), [[0, 0, 2, 2]])
        np.testing.assert_array_equal(reader.read_frame(2), [[0, 0, 2, 2]])
        assert set(reader.objects) == {2} and [p.obj_id for p in reader.prompts()] == [2]
        assert 1 not in reader.provenance(0) and 1 not in reader.provenance(2)


def test_an_interrupted_removal_is_finished_on_open(tmp_path):
    path = tmp_path / "l.zarr"
    store = LabelStore.create(path, (2, 1, 4), dimension_names=("t", "y", "x"))
    store.write_result(1, [4, 5], _logits([1, -1, -1, -1], [-1, 1, -1, -1]))
    # what remove_object records before touching any pixel, as if the process died right after
    store._records.save_object(store.objects[4], removed=True)
    reopened = LabelStore.open(path)
    np.testing.assert_array_equal(reopened.read_frame(1), [[0, 5, 0, 0]])
    assert set(reopened.objects) == {5}


def test_plain_zarr_sees_the_labels_and_a_clean_hierarchy(tmp_path):
    path = tmp_path / "l.zarr"
    store = LabelStore.create(path, (5, 2, 12, 10), dimension_names=("t", "z", "y", "x"))
    store.frame_view("z", {"t": 0}).add_prompt(3, 1, mask=np.ones((12, 10), bool))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zarr warns about anything in the tree that is not zarr
        group = zarr.open_group(path, mode="r")
        members = dict(group.members(max_depth=None))
    labels = group["labels"]
    assert (labels.shape, labels.dtype, labels.chunks) == ((5, 2, 12, 10), np.uint32, (1, 1, 12, 10))
    assert labels.metadata.dimension_names == ("t", "z", "y", "x")
    assert "labels" in members


def test_store_for_a_source_and_mismatch_errors(tmp_path):
    image = np.zeros((6, 16, 12), np.uint16)
    src = open_stack(image)
    store = LabelStore.for_source(tmp_path / "l.zarr", src)
    assert (store.shape, store.dimension_names) == ((6, 16, 12), ("t", "y", "x"))
    view = store.view_for(src)
    assert (len(view), view.axis) == (6, "t")
    other = open_stack(np.zeros((6, 32, 32), np.uint16))
    with pytest.raises(LabelStoreError, match=r"\(6, 16, 12\).*\(6, 32, 32\)") as info:
        LabelStore.for_source(tmp_path / "l.zarr", other)
    assert str(tmp_path / "l.zarr") in str(info.value)
    volume = open_stack(np.zeros((2, 3, 16, 12)), axis="z", position={"t": 1})
    store4 = LabelStore.for_source(tmp_path / "v.zarr", volume)
    view4 = store4.view_for(volume)
    assert (view4.axis, view4.position, len(view4)) == ("z", {"t": 1}, 3)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s: s.write_result(0, [1], np.zeros((2, 1, 4), np.float32)), "do not fit"),
        (lambda s: s.write_result(0, [0], np.zeros((1, 1, 4), np.float32)), "0 is background"),
        (lambda s: s.write_result(0, [1, 1], np.zeros((2, 1, 4), np.float32)), "not distinct"),
        (lambda s: s.write_result(0, [1], np.zeros((1, 1, 4)), source="guess"), "source must be"),
        (lambda s: s.write_manual(0, np.zeros((2, 4), np.int32)), "does not fit"),
        (lambda s: s.write_manual(0, np.zeros((1, 4), np.float32)), "integers"),
        (lambda s: s.write_manual(0, np.full((1, 4), -1)), "0.."),
        (lambda s: s.add_prompt(1, 0, points=[[0, 0]], labels=[2]), "1 \\(positive\\) or 0"),
        (lambda s: s.add_prompt(1, 0), "needs points, a box or a mask"),
        (lambda s: s.add_prompt(1, 0, mask=np.ones((3, 3))), "does not fit"),
        (lambda s: s.rename_object(42, "x"), "no object 42"),
    ],
)
def test_bad_input_is_rejected_and_nothing_changes(tmp_path, call, match):
    store = _row_store(tmp_path)
    store.write_result(0, [7], _logits([1, 1, 1, 1]))
    with pytest.raises(LabelStoreError, match=match):
        call(store)
    np.testing.assert_array_equal(store.read_frame(0), [[7, 7, 7, 7]])
    assert store.prompts() == [] and set(store.objects) == {7}


def test_opening_what_is_not_a_store(tmp_path):
    with pytest.raises(LabelStoreError, match="does not exist"):
        LabelStore.open(tmp_path / "missing.zarr")
    zarr.open_group(tmp_path / "plain.zarr", mode="w")
    with pytest.raises(LabelStoreError, match="not a napari-sam2 label store"):
        LabelStore.open(tmp_path / "plain.zarr")
    _row_store(tmp_path)
    with pytest.raises(LabelStoreError, match="already exists"):
        _row_store(tmp_path)


def test_read_only_store_refuses_writes(tmp_path):
    _row_store(tmp_path).write_result(0, [1], _logits([1, 1, -1, -1]))
    store = LabelStore.open(tmp_path / "l.zarr", read_only=True)
    np.testing.assert_array_equal(store.read_frame(0), [[1, 1, 0, 0]])
    with pytest.raises(LabelStoreError, match="read-only"):
        store.write_result(0, [1], _logits([1, 1, 1, 1]))
