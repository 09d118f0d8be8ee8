"""open_stack on the real sample data of ../shared/data, checked against tifffile / plain zarr reads."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_sam2.io import LabelStore, StackError, open_stack
from tests.io.helpers import shared


def test_plain_multipage_tiff_time_lapse():
    path = shared("cancer_cell_migration_bian/cancer_cell_migration_crop.tif")
    src = open_stack(path)
    assert (len(src), src.shape2d, src.dtype, src.axes) == (48, (130, 130), np.dtype(np.uint16), ("t", "y", "x"))
    assert src.axes_inferred  # the file says only "pages": the time axis is inferred, and said so
    np.testing.assert_array_equal(src[47], tifffile.imread(path, key=47))
    lo, hi = src.intensity_range()
    whole = tifffile.imread(path)
    assert whole.min() <= lo < hi <= whole.max()


def test_ome_tiff_tzyx_along_z_at_a_time_point():
    path = shared("qcanet_mouse_embryo_3d/derived/embryo_t262_t350_TZYX.ome.tif")
    src = open_stack(path, axis="z", position={"t": 1})
    assert (src.axes, src.axes_inferred, src.kind, len(src)) == (("t", "z", "y", "x"), False, "ome-tiff", 51)
    np.testing.assert_array_equal(src[20], tifffile.imread(path)[1, 20])
    with pytest.raises(StackError, match="'z' has 51 entries"):
        open_stack(path)


def test_ome_zarr_v04_matches_the_ome_tiff():
    zarr_path = shared("qcanet_mouse_embryo_3d/derived/embryo_t262_t350.ome.zarr")
    src = open_stack(zarr_path, axis="t", position={"z": 25})
    assert (src.axes, src.kind, len(src), src.shape2d) == (("t", "z", "y", "x"), "ome-zarr", 2, (120, 122))
    np.testing.assert_array_equal(src[1], zarr.open_array(zarr_path / "0", mode="r")[1, 25])
    tiff = tifffile.imread(shared("qcanet_mouse_embryo_3d/derived/embryo_t262_t350_TZYX.ome.tif"))
    np.testing.assert_array_equal(src[1], tiff[1, 25])


def test_imagej_z_stack():
    path = shared("qcanet_mouse_embryo_3d/images_raw/16_cell_stage.tif")
    src = open_stack(path, axis="z")
    assert (len(src), src.shape2d, src.axes) == (51, (120, 122), ("z", "y", "x"))
    frame = src[30]
    np.testing.assert_array_equal(frame, tifffile.imread(path)[30])
    lo, hi = src.intensity_range()
    assert 92 <= lo < hi <= 1249  # the README's value range of this volume


def test_ctc_folder_of_lzw_tiffs():
    folder = shared("ctc_gowt1_01/01")
    src = open_stack(folder)
    assert (len(src), src.shape2d, src.dtype, src.kind) == (40, (1024, 1024), np.dtype(np.uint8), "tiff-sequence")
    frame = src[39]
    assert 0 <= frame.min() and frame.max() <= 236 and frame.std() > 5  # README: values 0-236
    gt = open_stack(shared("ctc_gowt1_01/01_GT/TRA"))  # man_track000.tif … beside man_track.txt
    assert len(np.unique(gt[0])) - 1 == 23 and len(np.unique(gt[39])) - 1 == 24  # README: 23, then 24 objects


def test_label_store_for_the_real_embryo_matches_its_shape(tmp_path):
    src = open_stack(shared("qcanet_mouse_embryo_3d/derived/embryo_t262_t350.ome.zarr"), axis="z", position={"t": 0})
    store = LabelStore.for_source(tmp_path / "l.zarr", src)
    assert (store.shape, store.dimension_names) == ((2, 51, 120, 122), ("t", "z", "y", "x"))
    view = store.view_for(src)
    truth = tifffile.imread(shared("qcanet_mouse_embryo_3d/derived/8_cell_stage_instances.tif"))
    view.write_manual(25, truth[25])
    np.testing.assert_array_equal(store.frame_view("t", {"z": 25}).read_frame(0), truth[25])
    other = open_stack(shared("cancer_cell_migration_bian/cancer_cell_migration_crop.tif"))
    with pytest.raises(ValueError, match="belongs to another image"):
        store.view_for(other)
