"""Training data in: linking per-frame labels by overlap, and every loader on small files written here (a Cell
Tracking Challenge folder, TIFF / zarr / .npz pairs along t and z, an OME-Zarr with labels/, label stores with and
without review statuses), with one-line errors naming the path."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_sam2.io import LabelStore, export_ome_zarr
from napari_sam2.train import (
    LabeledStack,
    TrainingDataError,
    link_by_overlap,
    load_ctc,
    load_label_store,
    load_ome_zarr,
    load_pair,
    open_training_data,
)


def _box(frame: np.ndarray, value: int, rows: tuple[int, int], cols: tuple[int, int]) -> None:
    frame[rows[0] : rows[1], cols[0] : cols[1]] = value


# ------------------------------------------------------------------------------------------- link_by_overlap
def test_linking_follows_the_best_overlap_and_starts_new_tracks():
    labels = np.zeros((2, 20, 20), np.uint16)
    _box(labels[0], 5, (2, 7), (2, 7))  # A
    _box(labels[0], 7, (10, 13), (2, 5))  # D
    _box(labels[0], 9, (2, 7), (12, 17))  # B
    _box(labels[1], 2, (2, 7), (3, 8))  # A moved one column right: IoU 20/30
    _box(labels[1], 1, (3, 8), (12, 17))  # B moved one row down: IoU 20/30
    _box(labels[1], 4, (10, 13), (4, 7))  # D jumped: overlaps 3 of 9 pixels, IoU 3/15 = 0.2, too little
    _box(labels[1], 3, (15, 18), (15, 18))  # a newcomer
    linked = link_by_overlap(labels)
    assert linked.dtype == np.int32
    # frame 0: tracks numbered in order of the ids 5, 7, 9
    expected0 = np.zeros((20, 20), np.int32)
    _box(expected0, 1, (2, 7), (2, 7))
    _box(expected0, 2, (10, 13), (2, 5))
    _box(expected0, 3, (2, 7), (12, 17))
    # frame 1: A keeps 1, B keeps 3, the newcomer (id 3) and the jumped D (id 4) start tracks 4 and 5
    expected1 = np.zeros((20, 20), np.int32)
    _box(expected1, 1, (2, 7), (3, 8))
    _box(expected1, 3, (3, 8), (12, 17))
    _box(expected1, 5, (10, 13), (4, 7))
    _box(expected1, 4, (15, 18), (15, 18))
    np.testing.assert_array_equal(linked[0], expected0)
    np.testing.assert_array_equal(linked[1], expected1)


def test_two_objects_competing_for_one_the_higher_overlap_wins():
    labels = np.zeros((2, 10, 20), np.uint8)
    _box(labels[0], 1, (0, 10), (0, 8))  # 80 px
    _box(labels[0], 2, (0, 10), (10, 14))  # 40 px
    _box(labels[1], 1, (0, 10), (0, 12))  # covers all of 1 (IoU 80/120) and half of 2 (IoU 20/140)
    linked = link_by_overlap(labels)
    assert set(np.unique(linked[1])) == {0, 1}


# ------------------------------------------------------------------------------------------- CTC
def _ctc_frame(t: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    image = np.full((size, size), 10, np.uint16)
    labels = np.zeros((size, size), np.uint16)
    _box(labels, 7, (2, 6), (2 + t, 6 + t))
    _box(labels, 9, (9, 13), (9, 13))
    image[labels > 0] = 200
    return image, labels


def _write_ctc(root, frames=range(4), tra=range(4), seg=(1,), seg_ids=None):
    (root / "01").mkdir(parents=True)
    (root / "01_GT" / "TRA").mkdir(parents=True)
    (root / "01_GT" / "SEG").mkdir(parents=True)
    for t in frames:
        image, labels = _ctc_frame(t)
        tifffile.imwrite(root / "01" / f"t{t:03d}.tif", image)
        if t in tra:
            tifffile.imwrite(root / "01_GT" / "TRA" / f"man_track{t:03d}.tif", labels)
        if t in seg:
            relabelled = labels.copy() if seg_ids is None else np.select([labels == 7, labels == 9], seg_ids[t], 0)
            tifffile.imwrite(root / "01_GT" / "SEG" / f"man_seg{t:03d}.tif", relabelled.astype(np.uint16))


def test_ctc_uses_tracking_markers_when_segmentation_is_partial(tmp_path):
    _write_ctc(tmp_path / "ds", tra=(0, 1, 3))  # frame 2 has no marker: two runs of frames
    stacks = load_ctc(tmp_path / "ds")
    assert [len(s) for s in stacks] == [2, 1]
    first = stacks[0]
    assert first.frames.dtype == np.uint16 and first.labels.dtype == np.int32
    assert set(np.unique(first.labels)) == {0, 7, 9}  # TRA ids are track ids: kept as they are
    np.testing.assert_array_equal(first.labels[1], _ctc_frame(1)[1])
    np.testing.assert_array_equal(stacks[1].frames[0], _ctc_frame(3)[0])
    assert load_ctc(tmp_path / "ds" / "01")[0].name == first.name  # the sequence folder itself works too


def test_ctc_prefers_full_segmentation_and_links_its_ids(tmp_path):
    swapped = {0: (1, 2), 1: (2, 1), 2: (1, 2), 3: (2, 1)}  # SEG ids change meaning from frame to frame
    _write_ctc(tmp_path / "ds", seg=range(4), seg_ids=swapped)
    (stack,) = load_ctc(tmp_path / "ds")
    moving = [int(stack.labels[t][3, 3 + t]) for t in range(4)]
    still = [int(stack.labels[t][10, 10]) for t in range(4)]
    assert len(set(moving)) == 1 and len(set(still)) == 1 and moving[0] != still[0]


def test_ctc_errors_name_the_folder(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(TrainingDataError, match="plain.*not a Cell Tracking Challenge folder"):
        load_ctc(tmp_path / "plain")
    with pytest.raises(TrainingDataError, match="missing.*does not exist"):
        load_ctc(tmp_path / "missing")


# ------------------------------------------------------------------------------------------- pairs
def _volume(t_count: int = 0, z: int = 5, size: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """A (Z, Y, X) — or (T, Z, Y, X) — uint16 image of one box per volume, and its labels."""
    shape = ((t_count,) if t_count else ()) + (z, size, size)
    image = np.full(shape, 100, np.uint16)
    labels = np.zeros(shape, np.uint16)
    labels[..., 1:4, 2:6, 2:6] = 3
    labels[..., 2:5, 7:10, 7:10] = 4
    image[labels > 0] = 900
    return image, labels


def test_tiff_pair_of_a_volume_runs_along_z(tmp_path):
    image, labels = _volume()
    tifffile.imwrite(tmp_path / "img.tif", image, imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "lab.tif", labels, imagej=True, metadata={"axes": "ZYX"})
    (stack,) = load_pair(tmp_path / "img.tif", tmp_path / "lab.tif")
    assert stack.frames.shape == (5, 12, 12) and stack.frames.dtype == np.uint16
    np.testing.assert_array_equal(stack.labels, labels)
    assert "along z" in stack.name


def test_tiff_pair_of_a_time_lapse_of_volumes_gives_one_stack_per_time_point(tmp_path):
    image, labels = _volume(t_count=2)
    labels[1][labels[1] == 4] = 8
    tifffile.imwrite(tmp_path / "img.tif", image, imagej=True, metadata={"axes": "TZYX"})
    tifffile.imwrite(tmp_path / "lab.tif", labels, imagej=True, metadata={"axes": "TZYX"})
    stacks = load_pair(tmp_path / "img.tif", tmp_path / "lab.tif")
    assert [s.frames.shape for s in stacks] == [(5, 12, 12), (5, 12, 12)]
    assert set(np.unique(stacks[1].labels)) == {0, 3, 8}
    along_t = load_pair(tmp_path / "img.tif", tmp_path / "lab.tif", axis="t")
    assert len(along_t) == 5 and along_t[0].frames.shape == (2, 12, 12)


def test_zarr_and_npz_pairs(tmp_path):
    image, labels = _volume()
    for name, data in (("img.zarr", image), ("lab.zarr", labels)):
        zarr.create_array(store=tmp_path / name, data=data, dimension_names=("t", "y", "x"))
    (from_zarr,) = load_pair(tmp_path / "img.zarr", tmp_path / "lab.zarr")
    assert "along t" in from_zarr.name
    np.testing.assert_array_equal(from_zarr.frames, image)
    np.savez(tmp_path / "both.npz", images=image, labels=labels)
    (from_npz,) = open_training_data([tmp_path / "both.npz"])
    np.testing.assert_array_equal(from_npz.labels, labels)
    (from_string,) = open_training_data([f"{tmp_path / 'img.zarr'}:{tmp_path / 'lab.zarr'}"])
    np.testing.assert_array_equal(from_string.labels, labels)


def test_pair_errors_name_the_path(tmp_path):
    image, labels = _volume()
    tifffile.imwrite(tmp_path / "img.tif", image, photometric="minisblack")
    tifffile.imwrite(tmp_path / "short.tif", labels[:3], photometric="minisblack")
    tifffile.imwrite(tmp_path / "float.tif", labels.astype(np.float32), photometric="minisblack")
    with pytest.raises(TrainingDataError, match=r"short\.tif has shape \(3, 12, 12\)"):
        load_pair(tmp_path / "img.tif", tmp_path / "short.tif")
    with pytest.raises(TrainingDataError, match=r"float\.tif holds float32 values: labels must be integers"):
        load_pair(tmp_path / "img.tif", tmp_path / "float.tif")
    with pytest.raises(TrainingDataError, match="nothing.tif does not exist"):
        load_pair(tmp_path / "nothing.tif", tmp_path / "short.tif")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(TrainingDataError, match="notes.txt is not training data"):
        open_training_data([tmp_path / "notes.txt"])


# ------------------------------------------------------------------------------------------- label stores, OME-Zarr
def _movie_with_store(tmp_path, statuses: dict[int, str] | None):
    """movie.tif (5 frames) and movie.sam2.zarr with frames 0–2 painted (objects 1, 2, 3), frames 3–4 never."""
    frames = np.full((5, 16, 16), 20, np.uint8)
    store = LabelStore.create(tmp_path / "movie.sam2.zarr", (5, 16, 16), dimension_names=("t", "y", "x"))
    for t in range(3):
        painted = np.zeros((16, 16), np.uint32)
        _box(painted, 1, (1, 5), (1 + t, 5 + t))
        _box(painted, 2, (8, 12), (1, 5))
        _box(painted, 3, (8, 12), (9, 13))
        store.write_manual(t, painted)
        frames[t][painted > 0] = 200
    for obj_id, status in (statuses or {}).items():
        store.set_object_status(obj_id, status)
    tifffile.imwrite(tmp_path / "movie.tif", frames, photometric="minisblack")
    return tmp_path / "movie.tif", tmp_path / "movie.sam2.zarr", frames


def test_label_store_trains_on_verified_and_corrected_objects_of_labelled_frames(tmp_path):
    image, store, frames = _movie_with_store(tmp_path, {1: "verified", 2: "rejected", 3: "corrected"})
    (stack,) = load_label_store(store, image)
    assert stack.object_ids == (1, 3)
    assert len(stack) == 3  # frames 3 and 4 were never labelled
    np.testing.assert_array_equal(stack.frames, frames[:3])
    assert stack.labels[2][2, 4] == 1
    # found from the store alone (image beside it), from the image alone (store beside it), or as a pair
    for entry in (store, image, f"{image}:{store}"):
        (found,) = open_training_data([entry])
        assert found.object_ids == (1, 3) and len(found) == 3


def test_label_store_without_statuses_trains_on_every_object(tmp_path):
    image, store, _ = _movie_with_store(tmp_path, None)
    (stack,) = load_label_store(store, image)
    assert stack.object_ids is None
    assert set(np.unique(stack.labels)) == {0, 1, 2, 3}


def test_label_store_trains_on_objects_without_status_but_not_on_unreviewed_masklets(tmp_path):
    image, store, _ = _movie_with_store(tmp_path, {1: "rejected", 2: "automatic"})
    (stack,) = load_label_store(store, image)
    assert stack.object_ids == (3,)  # object 3 has no status: drawn or prompted, not an automatic masklet


def test_label_store_with_nothing_verified_says_so(tmp_path):
    image, store, _ = _movie_with_store(tmp_path, {1: "rejected", 2: "automatic", 3: "automatic"})
    with pytest.raises(TrainingDataError, match="movie.sam2.zarr holds only unreviewed or rejected masklets"):
        load_label_store(store, image)


def test_label_store_and_image_of_different_shapes(tmp_path):
    _, store, _ = _movie_with_store(tmp_path, None)
    tifffile.imwrite(tmp_path / "other.tif", np.zeros((4, 16, 16), np.uint8), photometric="minisblack")
    with pytest.raises(TrainingDataError, match="movie.sam2.zarr has shape"):
        load_label_store(store, tmp_path / "other.tif")


def test_ome_zarr_with_labels(tmp_path):
    image, store_path, _ = _movie_with_store(tmp_path, None)
    store = LabelStore.open(store_path)
    ome = export_ome_zarr(image, store, tmp_path / "movie.ome.zarr", name="cells")
    (stack,) = load_ome_zarr(ome)
    np.testing.assert_array_equal(stack.labels[:3], np.stack([store.read_frame(t) for t in range(3)]))
    (found,) = open_training_data([ome])
    assert found.frames.shape == (5, 16, 16)
    with pytest.raises(TrainingDataError, match="no label image 'nuclei'"):
        load_ome_zarr(ome, label_name="nuclei")


def test_labeled_stack_checks_its_arrays():
    with pytest.raises(TrainingDataError, match="labels .* do not match frames"):
        LabeledStack(np.zeros((2, 4, 4)), np.zeros((2, 4, 5), np.int32), "bad")
    with pytest.raises(TrainingDataError, match="must be integers"):
        LabeledStack(np.zeros((2, 4, 4)), np.zeros((2, 4, 4), np.float32), "bad")
    stack = LabeledStack(np.zeros((2, 4, 4, 3), np.uint8), np.zeros((2, 4, 4), np.uint16), "rgb", (3, 1))
    assert stack.labels.dtype == np.int32 and stack.object_ids == (1, 3)
