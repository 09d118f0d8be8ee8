"""A full disk or a read-only location gives a clear StoreWriteError and loses nothing already stored."""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import resource
import signal

import numpy as np
import pytest

from napari_sam2.io import LabelStore, StoreWriteError, export_tiff
from napari_sam2.io.atomic_store import TEMP_SUFFIX

H = W = 128


@contextlib.contextmanager
def file_size_limit(nbytes: int):
    """Let the kernel refuse (EFBIG) every write that makes a file larger than ``nbytes``: a real write failure."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def _noise(seed: int = 0) -> np.ndarray:
    """Labels 1–4 scattered at random: hardly compressible, their chunk is several KB."""
    return np.random.default_rng(seed).integers(1, 5, size=(H, W), dtype=np.uint32)


@pytest.fixture
def store(tmp_path):
    store = LabelStore.create(tmp_path / "l.zarr", (3, H, W), dimension_names=("t", "y", "x"))
    store.write_result(0, [1], np.ones((1, H, W), np.float32))
    store.add_prompt(1, 0, points=[[3, 4]])
    return store


def _no_temporaries(root: pathlib.Path) -> bool:
    return not [p for p in root.parent.rglob("*") if TEMP_SUFFIX in p.name or p.name.endswith(".partial")]


def test_write_refused_by_the_kernel_keeps_frame_and_provenance(store):
    with file_size_limit(1024), pytest.raises(StoreWriteError) as info:
        store.write_manual(0, _noise())
    message = str(info.value)
    assert str(store.path) in message and "file size limit" in message and "intact" in message
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.EFBIG
    reopened = LabelStore.open(store.path)
    np.testing.assert_array_equal(reopened.read_frame(0), np.ones((H, W)))
    assert reopened.provenance(0) == {1: "propagation"}
    assert len(reopened.prompts()) == 1 and _no_temporaries(store.path)
    reopened.write_manual(0, _noise())  # with space again, the same write works
    np.testing.assert_array_equal(LabelStore.open(store.path).read_frame(0), _noise())


def test_export_refused_by_the_kernel_leaves_no_half_file(store, tmp_path):
    store.write_manual(1, _noise(1))
    target = tmp_path / "out.tif"
    with file_size_limit(4096), pytest.raises(StoreWriteError, match="cannot write the TIFF"):
        export_tiff(store, target)
    assert not target.exists() and _no_temporaries(store.path)


@pytest.fixture
def disk_full(monkeypatch):
    """Every fsync fails with ENOSPC, as on a full disk (data is never made durable, so never renamed in)."""

    def fail(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    return monkeypatch


def test_full_disk_on_frame_prompt_and_object_writes(store, disk_full):
    before = store.read_frame(0).copy()
    with pytest.raises(StoreWriteError, match="disk is full"):
        store.write_manual(0, _noise())
    with pytest.raises(StoreWriteError, match="disk is full"):
        store.add_prompt(1, 2, points=[[1, 1]])
    with pytest.raises(StoreWriteError, match="disk is full"):
        store.add_object(9, name="new")
    assert len(store.prompts()) == 1 and 9 not in store.objects
    disk_full.undo()
    reopened = LabelStore.open(store.path)
    np.testing.assert_array_equal(reopened.read_frame(0), before)
    assert len(reopened.prompts()) == 1 and set(reopened.objects) == {1}
    assert reopened.add_prompt(1, 2, points=[[1, 1]]).seq == 1  # the failed prompt left no gap or leftover
    assert _no_temporaries(store.path)


def test_creating_a_store_on_a_full_disk_leaves_nothing(tmp_path, disk_full):
    with pytest.raises(StoreWriteError, match="disk is full") as info:
        LabelStore.create(tmp_path / "new.zarr", (2, 8, 8), dimension_names=("t", "y", "x"))
    assert str(tmp_path / "new.zarr") in str(info.value)
    assert not (tmp_path / "new.zarr").exists()


def test_creating_a_store_in_a_read_only_location(tmp_path, monkeypatch):
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only)
    with pytest.raises(StoreWriteError, match="read-only") as info:
        LabelStore.create(tmp_path / "ro" / "new.zarr", (2, 8, 8), dimension_names=("t", "y", "x"))
    assert "new.zarr" in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_real_read_only_folder(store, tmp_path):
    before = store.read_frame(0).copy()
    folders = [p for p in [store.path, *store.path.rglob("*")] if p.is_dir()]
    for folder in folders:
        folder.chmod(0o555)
    try:
        with pytest.raises(StoreWriteError, match="read-only|permission"):
            store.write_manual(0, _noise())
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        with pytest.raises(StoreWriteError):
            LabelStore.create(locked / "new.zarr", (2, 8, 8), dimension_names=("t", "y", "x"))
    finally:
        for folder in folders:
            folder.chmod(0o755)
    np.testing.assert_array_equal(LabelStore.open(store.path).read_frame(0), before)
