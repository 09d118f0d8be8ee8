"""The pieces behind review mode and the lineage overrides, without a viewer: the review order and filter, where
objects are (footprints), their crops over time, the "rejected → corrected" rule, and the label edits of merge, split
and end on a real label store."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2._qt.crops import object_crops, outline, sample_frames
from napari_sam2._qt.footprints import FootprintIndex, frame_footprints
from napari_sam2._qt.lineage_edits import end_track, merge_tracks, split_track
from napari_sam2._qt.review import ReviewQueue, mark_corrected
from napari_sam2.io.errors import LabelStoreError
from napari_sam2.io.label_store import LabelStore


def test_review_queue_steps_through_the_listed_objects_and_wraps():
    statuses = {1: "automatic", 4: "rejected", 7: None, 9: "verified"}
    queue = ReviewQueue()
    assert [queue.step(statuses) for _ in range(5)] == [1, 4, 7, 9, 1]
    assert queue.step(statuses, forward=False) == 9
    queue = ReviewQueue("not reviewed yet", current=4)  # the current one need not be listed
    assert queue.step(statuses) == 7 and queue.position(statuses) == (2, 2)
    assert queue.step(statuses) == 1
    queue = ReviewQueue("to correct (rejected)")
    assert queue.step(statuses) == 4 and queue.step(statuses) == 4
    assert ReviewQueue("to correct (rejected)").step({1: "verified"}) is None


def test_footprints_of_known_rectangles():
    labels = np.zeros((20, 30), np.uint32)
    labels[2:6, 3:13] = 5  # 4 × 10
    labels[10:19, 20:21] = 2  # 9 × 1
    found = frame_footprints(labels)
    assert set(found) == {2, 5}
    assert found[5].area == 40 and found[5].box == (2, 3, 6, 13) and found[5].centroid == (3.5, 7.5)
    assert found[2].area == 9 and found[2].box == (10, 20, 19, 21) and found[2].centroid == (14.0, 20.0)
    assert frame_footprints(np.zeros((4, 4), np.uint32)) == {}


def test_crops_follow_the_object_at_one_scale():
    frames = np.zeros((5, 64, 64), np.uint32)
    images = np.zeros((5, 64, 64), np.float32)
    for t in range(5):
        frames[t, 10 + 5 * t : 20 + 5 * t, 30:40] = 3  # a 10 × 10 square moving down
        images[t, 10 + 5 * t : 20 + 5 * t, 30:40] = 1.0
    index = FootprintIndex(_Frames(frames))
    crops = object_crops(index.of_object(3), 3, lambda t: images[t], lambda t: frames[t], count=3, size=32)
    assert [c.frame for c in crops] == [0, 2, 4]
    for crop in crops:  # centred, same size: the square fills the same middle part of every crop
        assert crop.image.shape == crop.mask.shape == (32, 32)
        assert crop.mask[16, 16] and not crop.mask[0, 0] and 0.3 < crop.mask.mean() < 0.5
        assert crop.image[crop.mask].min() == 255 and crop.image[~crop.mask].max() == 0
    assert sample_frames(list(range(10)), 4) == [0, 3, 6, 9]
    ring = outline(np.pad(np.ones((3, 3), bool), 1))
    assert ring.sum() == 8 and not ring[2, 2]


class _Frames:
    def __init__(self, frames):
        self.frames = frames

    def __len__(self):
        return len(self.frames)

    def read_frame(self, t):
        return self.frames[t]


@pytest.fixture
def store(tmp_path):
    """Object 1 on frames 0–3 (left), object 2 on frames 2–3 (right), object 3 on frame 0, statuses set."""
    store = LabelStore.create(tmp_path / "s.zarr", (4, 16, 16), dimension_names=("t", "y", "x"))
    for t in range(4):
        plane = np.zeros((16, 16), np.uint32)
        plane[2:6, 2:6] = 1
        if t >= 2:
            plane[2:6, 10:14] = 2
        if t == 0:
            plane[10:14, 2:6] = 3
        store.write_result(t, list(np.unique(plane[plane > 0])), _logits(plane), source="propagation")
    store.set_object_status(1, "rejected")
    store.set_object_status(2, "verified")
    return store


def _logits(plane):
    ids = [int(i) for i in np.unique(plane[plane > 0])]
    return np.stack([np.where(plane == i, 5.0, -5.0) for i in ids]).astype(np.float32)


def frames_of(store, obj_id):
    return [t for t in range(4) if (store.read_frame(t) == obj_id).any()]


def test_only_rejected_objects_become_corrected(store):
    assert mark_corrected(store, [1, 2, 3, 99]) == [1]
    assert {i: o.status for i, o in store.objects.items()} == {1: "corrected", 2: "verified", 3: None}


def test_split_end_and_merge_edit_exactly_their_pixels_as_hand_edits(store):
    view = store.frame_view()
    assert split_track(view, 1, 2, 7) == [2, 3]
    assert frames_of(store, 1) == [0, 1] and frames_of(store, 7) == [2, 3]
    assert store.provenance(2) == {1: "manual", 2: "propagation", 7: "manual"}
    assert store.objects[7].status == "rejected"  # the split-off part keeps the review status
    assert end_track(view, 7, 3) == [3] and frames_of(store, 7) == [2]
    assert store.provenance(3) == {1: "manual", 2: "propagation", 7: "manual"}
    assert merge_tracks(view, 3, 2) == [2, 3]
    assert frames_of(store, 3) == [0, 2, 3] and frames_of(store, 2) == []
    assert (store.read_frame(3)[2:6, 10:14] == 3).all()
    with pytest.raises(LabelStoreError, match="no object 42"):
        merge_tracks(view, 3, 42)
    with pytest.raises(LabelStoreError, match="already exists"):
        split_track(view, 3, 0, 1)
    with pytest.raises(LabelStoreError, match="nothing to split"):
        split_track(view, 7, 3, 8)


def test_found_masks_mostly_on_stored_objects_are_duplicates():
    from types import SimpleNamespace

    from napari_sam2._qt.auto_driver import covered_in_store

    stored = np.zeros((10, 10), np.uint32)
    stored[0:4, 0:4] = 1  # painted by hand: 16 pixels
    logits = np.full((3, 10, 10), -1.0, np.float32)
    logits[0, 0:4, 0:3] = 1.0  # 12 pixels, all on object 1
    logits[1, 0:4, 2:6] = 1.0  # 16 pixels, 8 on object 1: half is not "mostly"
    logits[2, 6:9, 6:9] = 1.0  # on the background
    result = SimpleNamespace(frame=0, obj_ids=(5, 6, 7), logits=logits)
    assert covered_in_store(result, [5, 6, 7, 8], stored) == [5]
