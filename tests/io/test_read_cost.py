"""Cost guarantees: opening a 2,000-frame stack and reading frame 1,999 touches only that frame's chunk (zarr), that
page's bytes (TIFF) or that block (dask); writing one label frame costs one chunk write."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr
from zarr.storage import LocalStore

from napari_sam2.io import AtomicLocalStore, LabelStore, open_stack
from tests.io.helpers import chunk_keys

N, H, W = 2000, 8, 8


def _frames() -> np.ndarray:
    """2,000 distinct 8×8 uint8 frames (128 KB in all)."""
    base = np.arange(N * H * W, dtype=np.uint32).reshape(N, H, W)
    return ((base * 7 + base // 64) % 251).astype(np.uint8)


@pytest.fixture
def store_reads(monkeypatch):
    """Every key read through any zarr LocalStore (and subclasses) from now on."""
    keys: list[str] = []
    original_get = LocalStore.get

    async def counting_get(self, key, prototype=None, byte_range=None):
        keys.append(key)
        return await original_get(self, key, prototype, byte_range)

    async def counting_partial(self, prototype, key_ranges):
        key_ranges = list(key_ranges)
        keys.extend(k for k, _ in key_ranges)
        return [await original_get(self, k, prototype, r) for k, r in key_ranges]

    monkeypatch.setattr(LocalStore, "get", counting_get)
    monkeypatch.setattr(LocalStore, "get_partial_values", counting_partial)
    return keys


@pytest.fixture(scope="module")
def ome_zarr_2000(tmp_path_factory):
    """An OME-Zarr 0.5 image of 2,000 frames, written with plain zarr: array ``0`` with one chunk per frame."""
    root = tmp_path_factory.mktemp("read_cost") / "img.ome.zarr"
    data = _frames()
    group = zarr.open_group(root, mode="w")
    arr = group.create_array("0", shape=data.shape, chunks=(1, H, W), dtype="u1", dimension_names=("t", "y", "x"))
    arr[:] = data
    axes = [{"name": "t", "type": "time"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    datasets = [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1]}]}]
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}
    return root, data


def test_zarr_open_and_read_last_frame_touches_one_chunk(ome_zarr_2000, store_reads):
    root, data = ome_zarr_2000
    store_reads.clear()
    src = open_stack(root / "0")  # the plain zarr array
    np.testing.assert_array_equal(src[1999], data[1999])
    assert store_reads == ["zarr.json", "c/1999/0/0"]  # the array's metadata, then the one chunk


def test_ome_zarr_open_and_read_last_frame_touches_one_chunk(ome_zarr_2000, store_reads):
    root, data = ome_zarr_2000
    store_reads.clear()
    src = open_stack(root)
    np.testing.assert_array_equal(src[1999], data[1999])
    assert chunk_keys(store_reads) == ["0/c/1999/0/0"], store_reads


def test_tiff_read_of_one_page_reads_only_its_bytes(tmp_path, monkeypatch):
    data = _frames()
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, data)
    with tifffile.TiffFile(path) as tif:  # where tifffile itself says page 1999 lies
        page = tif.pages[1999]
        expected = (page.dataoffsets[0], page.databytecounts[0])
    src = open_stack(path)
    reads: list[tuple[int, int]] = []
    original_read, original_readinto = tifffile.FileHandle.read, tifffile.FileHandle.readinto

    def read(self, size=-1):
        offset = self.tell()
        out = original_read(self, size)
        reads.append((offset, len(out)))
        return out

    def readinto(self, buffer):
        offset = self.tell()
        n = original_readinto(self, buffer)
        reads.append((offset, n))
        return n

    monkeypatch.setattr(tifffile.FileHandle, "read", read)
    monkeypatch.setattr(tifffile.FileHandle, "readinto", readinto)
    frame = src[1999]
    np.testing.assert_array_equal(frame, data[1999])
    assert reads == [expected] and expected[1] == H * W
    src.close()


_DASK_READS: list = []  # module level: dask may copy the array object, but not this list


class _RecordingArray:
    """An array-like that records the first index of every read (for dask.array.from_array)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim

    def __getitem__(self, key):
        _DASK_READS.append(key[0])
        return self.data[key]


def test_dask_read_computes_only_the_frames_block():
    da = pytest.importorskip("dask.array")
    data = _frames()
    src = open_stack(da.from_array(_RecordingArray(data), chunks=(1, H, W)))
    _DASK_READS.clear()
    np.testing.assert_array_equal(src[1999], data[1999])
    assert _DASK_READS == [1999]


def test_label_store_frame_write_is_one_chunk_write_and_read_one_chunk(tmp_path, monkeypatch, store_reads):
    store = LabelStore.create(tmp_path / "l.zarr", (N, H, W), dimension_names=("t", "y", "x"))
    written: list[str] = []
    original_set = AtomicLocalStore.set

    async def counting_set(self, key, value):
        written.append(key)
        return await original_set(self, key, value)

    monkeypatch.setattr(AtomicLocalStore, "set", counting_set)
    logits = np.where(np.arange(H * W).reshape(1, H, W) % 2 == 0, 1.0, -1.0).astype(np.float32)
    store.write_result(1999, [5], logits)
    assert written == ["labels/c/1999/0/0"]
    written.clear()
    store.write_result(1999, [5], -logits)  # an update: again one chunk write
    assert written == ["labels/c/1999/0/0"]
    store_reads.clear()
    reopened = LabelStore.open(tmp_path / "l.zarr", read_only=True)
    frame = reopened.read_frame(1999)
    assert store_reads == ["zarr.json", "labels/zarr.json", "labels/c/1999/0/0"]  # open + read: 3 gets
    np.testing.assert_array_equal(frame, np.where(logits[0] < 0, 5, 0))
