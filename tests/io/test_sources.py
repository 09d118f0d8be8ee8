"""open_stack / FrameSource on files and arrays made here: axes, selection, channels, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_sam2.io import FrameSource, StackError, open_stack


def _stack(shape, dtype=np.uint16, seed=0):
    return np.random.default_rng(seed).integers(0, 1000, size=shape).astype(dtype)


def test_numpy_frames_along_t_are_the_array_planes():
    data = _stack((5, 12, 10))
    src = open_stack(data)
    assert isinstance(src, FrameSource)
    assert (len(src), src.shape2d, src.dtype, src.axes) == (5, (12, 10), np.dtype(np.uint16), ("t", "y", "x"))
    assert src.axes_inferred and "inferred" in src.axes_note
    np.testing.assert_array_equal(src[3], data[3])
    np.testing.assert_array_equal(src[-1], data[4])
    assert [f.shape for f in src] == [(12, 10)] * 5
    with pytest.raises(IndexError):
        src[5]


def test_frames_of_a_numpy_source_are_read_only_views():
    data = _stack((3, 8, 8))
    frame = open_stack(data)[1]
    with pytest.raises(ValueError):
        frame[0, 0] = 1
    assert data.flags.writeable


def test_z_frames_at_a_fixed_time_of_a_tzyx_array():
    data = _stack((4, 6, 9, 11))
    src = open_stack(data, axis="z", position={"t": 2})
    assert (len(src), src.frame_axis, src.position, src.full_shape) == (6, "z", {"t": 2}, (4, 6, 9, 11))
    np.testing.assert_array_equal(src[5], data[2, 5])
    assert src.coords(5) == {"t": 2, "z": 5}
    assert (src.label_shape, src.label_axes) == ((4, 6, 9, 11), ("t", "z", "y", "x"))
    by_index = open_stack(data, axis=1, position={0: 2})
    np.testing.assert_array_equal(by_index[4], data[2, 4])


def test_an_unfixed_axis_is_an_error_naming_it():
    with pytest.raises(StackError, match=r"'z' has 6 entries.*position=\{'z'"):
        open_stack(_stack((4, 6, 9, 11)))


def test_axis_names_from_zarr_dimension_names(tmp_path):
    data = _stack((3, 4, 8, 8))
    arr = zarr.create_array(
        tmp_path / "a.zarr",
        shape=data.shape,
        chunks=(1, 1, 8, 8),
        dtype=data.dtype,
        dimension_names=("z", "t", "y", "x"),
    )
    arr[:] = data
    src = open_stack(tmp_path / "a.zarr", axis="t", position={"z": 1})
    assert src.axes == ("z", "t", "y", "x") and not src.axes_inferred
    np.testing.assert_array_equal(src[2], data[1, 2])
    same = open_stack(arr, axis="t", position={"z": 1})  # a zarr array object works as well
    np.testing.assert_array_equal(same[2], data[1, 2])


def test_x_before_y_is_transposed_to_height_width():
    data = _stack((2, 8, 5))  # t, x, y
    src = open_stack(data, axes="txy")
    assert src.shape2d == (5, 8)
    np.testing.assert_array_equal(src[1], data[1].T)


def test_dask_source_reads_lazily():
    da = pytest.importorskip("dask.array")
    data = _stack((6, 8, 8))
    src = open_stack(da.from_array(data, chunks=(1, 8, 8)))
    out = src[4]
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, data[4])


def test_channel_pick_rgb_native_and_composite():
    rgb = _stack((3, 16, 16, 3), dtype=np.uint8)
    src = open_stack(rgb, channel="rgb")  # trailing size-3 axis after two ≥ 8 axes: RGB
    assert src.axes == ("t", "y", "x", "c") and src.dtype == np.uint8
    np.testing.assert_array_equal(src[2], rgb[2])
    green = open_stack(rgb, channel=1)
    np.testing.assert_array_equal(green[2], rgb[2, :, :, 1])

    two = np.zeros((2, 2, 8, 8), np.uint16)  # t, c, y, x: channel 0 bright at the top-left pixel only
    two[:, 0, 0, 0] = 1000
    two[:, 1, 7, 7] = 500
    with pytest.raises(StackError, match="2 channels"):
        open_stack(two, axes="tcyx")
    comp = open_stack(two, axes="tcyx", channel="rgb")
    frame = comp[0]
    assert frame.shape == (8, 8, 3) and frame.dtype == np.float32 and comp.intensity_range() == (0.0, 1.0)
    np.testing.assert_allclose(frame[0, 0], [0.0, 1.0, 0.0])  # channel 0 is green
    np.testing.assert_allclose(frame[7, 7], [1.0, 0.0, 1.0])  # channel 1 is magenta
    np.testing.assert_allclose(frame[3, 3], [0.0, 0.0, 0.0])

    gray = open_stack(_stack((2, 8, 8)), channel="rgb")
    assert gray[0].shape == (8, 8, 3) and np.array_equal(gray[0][..., 2], gray[0][..., 0])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (np.zeros(10), "at least 3 dimensions"),
        (np.zeros((8, 8)), "single 2D image"),
        (np.zeros((2,) * 7 + (8, 8)), "at most 6"),
        (np.zeros((8, 8, 3)), "single RGB image"),
    ],
)
def test_unsupported_dimensionality_is_a_clear_error(data, match):
    with pytest.raises(StackError, match=match):
        open_stack(data)


def test_bad_selection_errors():
    data = _stack((4, 6, 9, 11))
    with pytest.raises(StackError, match="no axis 'q'"):
        open_stack(data, axis="q", position={"z": 0})
    with pytest.raises(StackError, match="cannot run along the 'y'"):
        open_stack(data, axis="y")
    with pytest.raises(StackError, match="outside"):
        open_stack(data, position={"z": 6})
    with pytest.raises(StackError, match="no channel axis"):
        open_stack(_stack((2, 8, 8)), channel=0)


def test_paths_that_are_not_stacks(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    for path, match in [
        (tmp_path / "missing.tif", "does not exist"),
        (tmp_path / "notes.txt", "is not a stack"),
        (tmp_path / "empty", "is not a stack"),
    ]:
        with pytest.raises(StackError, match=match) as info:
            open_stack(path)
        assert str(path) in str(info.value)


def test_zarr_group_with_several_arrays_is_ambiguous(tmp_path):
    group = zarr.open_group(tmp_path / "g.zarr", mode="w")
    group.create_array("a", shape=(2, 8, 8), dtype="u1")
    group.create_array("b", shape=(2, 8, 8), dtype="u1")
    with pytest.raises(StackError, match="2 arrays"):
        open_stack(tmp_path / "g.zarr")
    assert len(open_stack(tmp_path / "g.zarr" / "b")) == 2


def test_garbage_tiff_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.tif"
    path.write_bytes(b"this is not a TIFF file" * 20)
    with pytest.raises(StackError, match="not a readable TIFF") as info:
        open_stack(path)
    assert str(path) in str(info.value)


def test_truncated_tiff_is_a_clear_error(tmp_path):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, _stack((20, 32, 32)))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(StackError, match="truncated|corrupt") as info:
        src = open_stack(path)
        src[19]  # if opening did not notice, reading the missing frame must
    assert str(path) in str(info.value)


def test_imagej_hyperstack_axes_and_pages(tmp_path):
    data = _stack((3, 4, 10, 12))
    tifffile.imwrite(tmp_path / "h.tif", data, imagej=True, metadata={"axes": "TZYX"})
    with open_stack(tmp_path / "h.tif", axis="t", position={"z": 3}) as src:
        assert src.axes == ("t", "z", "y", "x") and not src.axes_inferred and src.kind == "imagej-tiff"
        np.testing.assert_array_equal(src[2], data[2, 3])


def test_folder_of_single_frame_tiffs_in_natural_order(tmp_path):
    frames = _stack((12, 9, 7), dtype=np.uint8)
    for i, frame in enumerate(frames):
        tifffile.imwrite(tmp_path / f"t{i}.tif", frame)  # t2 must come before t10
    src = open_stack(tmp_path)
    assert (len(src), src.shape2d, src.kind, src.axes) == (12, (9, 7), "tiff-sequence", ("t", "y", "x"))
    np.testing.assert_array_equal(src[10], frames[10])
    np.testing.assert_array_equal(src[2], frames[2])


def test_folder_with_a_frame_of_another_shape_fails_on_that_frame(tmp_path):
    tifffile.imwrite(tmp_path / "t0.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(tmp_path / "t1.tif", np.zeros((9, 8), np.uint8))
    src = open_stack(tmp_path)
    assert src[0].shape == (8, 8)
    with pytest.raises(StackError, match="t1.tif"):
        src[1]
