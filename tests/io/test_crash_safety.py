"""Crash safety: a writer killed with SIGKILL at random moments leaves every frame whole (old or new content,
provenance matching the pixels), every acknowledged prompt and object present, and a store that opens."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_sam2.io import AtomicLocalStore, LabelStore, StoreWriteError
from napari_sam2.io.atomic_store import TEMP_SUFFIX, atomic_write_bytes
from tests.io.crash_writer import N_FRAMES, H, W, pattern, result_logits

WRITER = Path(__file__).with_name("crash_writer.py")
ROUNDS = 5
REPO = Path(__file__).resolve().parents[2]


def _initial_store(path: Path) -> LabelStore:
    store = LabelStore.create(path, (N_FRAMES, H, W), dimension_names=("t", "y", "x"))
    for frame in range(N_FRAMES):  # "old" content: write k = 0
        if frame % 2 == 0:
            store.write_manual(frame, pattern(frame, 0))
        else:
            store.write_result(frame, *result_logits(frame, 0))
    return store


def _wait_for(log: Path, text: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if log.exists() and text in log.read_text():
            return
        time.sleep(0.01)
    raise AssertionError(f"the writer never logged {text!r}")


def _check_store(
    path: Path, allowed: dict[int, set[int]], acked_prompts: set[int], maybe_prompts: set[int], acked_objects: set[int]
) -> None:
    store = LabelStore.open(path)  # must open, and recovers what the killed writer left behind
    for frame in range(N_FRAMES):
        content = store.read_frame(frame)
        k = int(content.min()) // 10
        np.testing.assert_array_equal(content, pattern(frame, k), err_msg=f"frame {frame} is not whole")
        assert k in allowed[frame], f"frame {frame} holds write {k}, expected one of {allowed[frame]}"
        expected = "manual" if frame % 2 == 0 else "propagation"
        provenance = store.provenance(frame)
        assert all(provenance.get(10 * k + j) == expected for j in (1, 2, 3)), (frame, k, provenance)
    prompts = {p.obj_id // 10 for p in store.prompts()}
    assert acked_prompts <= prompts, f"acknowledged prompts lost: {sorted(acked_prompts - prompts)}"
    assert prompts <= acked_prompts | maybe_prompts
    assert acked_objects <= set(store.objects), sorted(acked_objects - set(store.objects))
    assert not list(path.rglob(f"*{TEMP_SUFFIX}")), "temporary files were not cleaned up"
    assert zarr.open_group(path, mode="r")["labels"].shape == (N_FRAMES, H, W)


def test_kill_9_at_random_moments_never_corrupts_the_store(tmp_path):
    path = tmp_path / "store.zarr"
    _initial_store(path)
    allowed = {f: {0} for f in range(N_FRAMES)}
    acked_prompts: set[int] = set()
    maybe_prompts: set[int] = set()
    acked_objects = {10 * 0 + j for j in (1, 2, 3)}
    rng = np.random.default_rng(20260101)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    writes_per_round = []
    for round_ in range(ROUNDS):
        log = tmp_path / f"round{round_}.log"
        child = subprocess.Popen(
            [sys.executable, str(WRITER), str(path), str(log), str(round_), str(100_000 * (round_ + 1))], env=env
        )
        try:
            _wait_for(log, "ready")
            time.sleep(rng.uniform(0.05, 0.6))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        assert child.returncode == -signal.SIGKILL
        pending = None
        done = 0
        for line in log.read_text().splitlines():
            words = line.split()
            if words[:2] == ["begin", "frame"]:
                pending = (int(words[2]), int(words[3]))
            elif words[:2] == ["done", "frame"]:
                frame, k = int(words[2]), int(words[3])
                allowed[frame] = {k}
                acked_objects |= {10 * k + j for j in (1, 2, 3)}
                pending, done = None, done + 1
            elif words[:2] == ["begin", "prompt"]:
                maybe_prompts.add(int(words[2]))
            elif words[:2] == ["done", "prompt"]:
                acked_prompts.add(int(words[2]))
        if pending is not None:  # cut mid-write: either content is acceptable
            allowed[pending[0]].add(pending[1])
        writes_per_round.append(done)
        _check_store(path, allowed, acked_prompts, maybe_prompts, acked_objects)
    print(f"frame writes acknowledged per round before SIGKILL: {writes_per_round}")
    assert sum(writes_per_round) >= ROUNDS, f"the writer hardly wrote anything: {writes_per_round}"


def test_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "doc.json"
    atomic_write_bytes(target, b"old")

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_atomic_store_never_exposes_a_chunk_that_was_not_completely_written(tmp_path, monkeypatch):
    store = AtomicLocalStore(tmp_path / "a.zarr")
    arr = zarr.create_array(store, shape=(2, 64, 64), chunks=(1, 64, 64), dtype="u4", fill_value=0)
    arr[0] = 7

    def die_before_rename(fd):  # the new chunk's bytes are in the temporary file; the process fails right here
        raise OSError(errno.EIO, "simulated failure before the rename")

    monkeypatch.setattr(os, "fsync", die_before_rename)
    with pytest.raises(OSError):
        arr[0] = np.random.default_rng(0).integers(0, 2**31, size=(64, 64), dtype=np.uint32)
    monkeypatch.undo()
    assert (zarr.open_array(tmp_path / "a.zarr", mode="r")[0] == 7).all()
    assert not list((tmp_path / "a.zarr").rglob(f"*{TEMP_SUFFIX}"))


def test_dying_between_provenance_record_and_chunk_keeps_provenance_true_to_the_pixels(tmp_path, monkeypatch):
    """The window the random kills rarely hit: the frame's record is written, its chunk is not."""
    path = tmp_path / "store.zarr"
    store = LabelStore.create(path, (2, 4, 4), dimension_names=("t", "y", "x"))
    store.write_result(0, [1], np.ones((1, 4, 4), np.float32))
    original_set = AtomicLocalStore.set

    async def die_on_chunks(self, key, value):
        if key.startswith("labels/c/"):
            raise OSError(errno.EIO, "process killed here")
        return await original_set(self, key, value)

    monkeypatch.setattr(AtomicLocalStore, "set", die_on_chunks)
    with pytest.raises(StoreWriteError):
        store.write_manual(0, np.full((4, 4), 2, np.uint32))
    monkeypatch.undo()
    reopened = LabelStore.open(path)
    np.testing.assert_array_equal(reopened.read_frame(0), np.ones((4, 4)))
    assert reopened.provenance(0) == {1: "propagation"}  # not "manual" for pixels that were never written
    reopened.write_manual(0, np.full((4, 4), 2, np.uint32))
    assert LabelStore.open(path).provenance(0) == {1: "manual", 2: "manual"}
