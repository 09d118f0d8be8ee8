"""The starter model's data from ../shared/data: the three open stacks, their training frames only (never the
held-out frames, never the Cell Tracking Challenge sets), labels linked over frames."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam2.train import ClipSampler, load_ome_zarr, open_starter_data
from napari_sam2.train.splits import OPEN_SPLITS
from tests.io.helpers import SHARED_DATA, shared


@pytest.fixture(scope="module")
def starter():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"sample data {SHARED_DATA} not found (see shared/data/README.md)")
    return {s.name: s for s in open_starter_data(SHARED_DATA)}


def test_the_three_open_stacks_and_nothing_else(starter):
    assert set(starter) == {"cancer_cell_migration", "c2c12", "qcanet_embryo_8cell"}
    assert not any("ctc" in name or "gowt1" in name or "psc" in name for name in starter)


def test_only_training_frames(starter):
    cancer = tifffile.imread(shared("cancer_cell_migration_bian/cancer_cell_migration_crop.tif"))
    c2c12 = np.load(shared("c2c12_laptrack/data_small.npz"))["images"]
    embryo = tifffile.imread(shared("qcanet_mouse_embryo_3d/images_raw/8_cell_stage.tif"))
    for name, full in (("cancer_cell_migration", cancer), ("c2c12", c2c12), ("qcanet_embryo_8cell", embryo)):
        end = OPEN_SPLITS[name].train_end
        stack = starter[name]
        assert len(stack) == end
        np.testing.assert_array_equal(stack.frames, full[:end])
        held_out = full[end:]
        assert not any(np.array_equal(frame, other) for frame in stack.frames for other in held_out)
        assert stack.frames.base is None or stack.frames.base.shape[0] == end  # no view into held-out frames


def test_per_frame_labels_are_linked_into_tracks(starter):
    c2c12 = starter["c2c12"]
    raw = np.load(shared("c2c12_laptrack/data_small.npz"))["labels"][: len(c2c12)]
    # the same objects, one id per track: each linked id covers one raw object per frame
    for t in range(len(c2c12)):
        assert (c2c12.labels[t] > 0).sum() == (raw[t] > 0).sum()
        for track in np.unique(c2c12.labels[t])[1:]:
            assert len(np.unique(raw[t][c2c12.labels[t] == track])) == 1
    cancer = starter["cancer_cell_migration"]
    kept = [len(set(np.unique(cancer.labels[t])) & set(np.unique(cancer.labels[t + 1])) - {0}) for t in range(5)]
    assert min(kept) >= 5  # slow nuclei: most tracks continue from frame to frame
    embryo = starter["qcanet_embryo_8cell"]
    assert set(np.unique(embryo.labels)) == set(range(9))  # 8 nuclei, ids of the 3D volume


def test_clips_can_be_cut_from_the_starter_data(starter):
    sampler = ClipSampler(list(starter.values()), clip_len=8, crop_size=96, seed=0)
    names = {sampler.clip(i).source.split(" frames")[0] for i in range(12)}
    assert names == set(starter)


def test_the_ome_zarr_volumes_along_z():
    stacks = load_ome_zarr(shared("qcanet_mouse_embryo_3d/derived/embryo_t262_t350.ome.zarr"))
    assert [s.frames.shape for s in stacks] == [(51, 120, 122), (51, 120, 122)]
    assert [len(np.unique(s.labels)) - 1 for s in stacks] == [8, 16]
