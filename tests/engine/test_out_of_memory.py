"""Running out of device memory on a frame: the session gives up its device caches (step buffers, prompt graphs,
memory keys/values, half the feature cache) and goes on, equal to a session that never had them; then computes
fewer objects together; where one object alone does not fit it stops with one line naming the frame, and every
earlier frame is kept. The fault is injected at
the frame's computation (``Tracker.run_tracking_groups``, where a GPU runs out), on the CPU build of torch."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from napari_sam2.engine import Session
from napari_sam2.engine.device import DeviceMemoryError
from napari_sam2.model import build_sam2
from tests.engine.reference_session import blob_frames, with_objects_present

PROMPTS = [(1, 0, [[28, 28]]), (2, 2, [[58, 55]]), (3, 0, [[40, 70]])]
FAULT_FRAME = 5


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(11)
    return with_objects_present(build_sam2("sam2.1_hiera_tiny", image_size=256))


@pytest.fixture(scope="module")
def frames():
    return blob_frames(10, size=96)


def new_session(model, frames, *, caches: bool, pipeline: bool = True) -> Session:
    """With caches: the static step buffers and the key/value cache the GPU uses (uncaptured on the CPU)."""
    session = Session(model, frames, device="cpu", step_graphs=caches, cache_memory_kv=caches, pipeline=pipeline)
    for obj_id, frame, points in PROMPTS:
        session.add_points(frame, obj_id, points, [1])
    return session


def fail_on(session: Session, frame: int, times: int) -> list[int]:
    """Make computing ``frame`` raise CUDA's out-of-memory error ``times`` times (a float for always); returns
    the frames whose computation was attempted, in order."""
    real = session.tracker.run_tracking_groups
    attempts: list[int] = []

    def run(groups, at, upcoming=()):
        attempts.append(at)
        if at == frame and attempts.count(at) <= times:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(groups, at, upcoming)

    session.tracker.run_tracking_groups = run
    return attempts


@pytest.mark.parametrize("pipeline", [False, True])
def test_out_of_memory_once_continues_without_the_caches(model, frames, caplog, pipeline):
    plain = {r.frame: r for r in new_session(model, frames, caches=False).propagate(start=0)}
    session = new_session(model, frames, caches=True, pipeline=pipeline)
    assert session.tracker.kv_cache is not None and session.tracker.graphs is not None
    attempts = fail_on(session, FAULT_FRAME, times=1)
    with caplog.at_level(logging.WARNING, logger="napari_sam2.engine.session"):
        got = {r.frame: r for r in session.propagate(start=0)}
    assert got.keys() == plain.keys() == set(range(10))
    assert attempts.count(FAULT_FRAME) == 2  # failed, then computed again once
    assert session.lean and not session.pipeline
    assert session.tracker.graphs is None and session.tracker.kv_cache is None
    assert session.tracker.prompt_graphs is None
    assert [r.getMessage() for r in caplog.records] == [
        f"out of CPU memory on frame {FAULT_FRAME} with 3 objects: continuing without the step graphs and the "
        "memories' key/value cache (slower)"]
    for f in plain:  # the cached keys and the static buffers compute the same up to rounding
        np.testing.assert_allclose(got[f].logits, plain[f].logits, atol=2e-3, rtol=0)
        np.testing.assert_array_equal(got[f].masks, plain[f].masks)
    # what the session stored is what it yielded, and later work runs lean (a click, another pass)
    np.testing.assert_allclose(session.result(7).logits, got[7].logits, atol=1e-6)
    session.add_points(6, 1, [[30, 31]], [1])
    again = {r.frame: r for r in session.propagate(start=6)}
    assert set(again) == set(range(6, 10)) and session.tracker.kv_cache is None


def test_out_of_memory_without_caches_stops_with_one_line_and_keeps_earlier_frames(model, frames):
    session = new_session(model, frames, caches=True)
    fail_on(session, FAULT_FRAME, times=float("inf"))
    seen = []
    with pytest.raises(DeviceMemoryError) as caught:
        for result in session.propagate(start=0):
            seen.append(result.frame)
    message = str(caught.value)
    assert "\n" not in message and f"frame {FAULT_FRAME} with 3 objects" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert seen == list(range(FAULT_FRAME))
    plain = {r.frame: r for r in new_session(model, frames, caches=False).propagate(start=0,
                                                                                  max_frames=FAULT_FRAME - 1)}
    for f in range(FAULT_FRAME):  # the frames before the fault stay in the session as they were yielded
        np.testing.assert_allclose(session.result(f).logits, plain[f].logits, atol=2e-3, rtol=0)


def test_other_errors_are_not_taken_for_out_of_memory(model, frames):
    session = new_session(model, frames, caches=True)

    def broken(groups, at, upcoming=()):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    session.tracker.run_tracking_groups = broken
    with pytest.raises(RuntimeError, match="illegal memory access"):
        list(session.propagate(start=0))
    assert not session.lean and session.tracker.kv_cache is not None


def test_a_frame_that_fits_only_one_object_at_a_time_is_computed_in_passes_of_one(model, frames, caplog):
    plain = {r.frame: r for r in new_session(model, frames, caches=False).propagate(start=0)}
    session = new_session(model, frames, caches=True)
    real = session.tracker.run_tracking_groups
    together = []

    def run(groups, at, upcoming=()):
        count = sum(len(tracks) for tracks, _ in groups)
        if at >= FAULT_FRAME and count > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        together.append((at, count))
        return real(groups, at, upcoming)

    session.tracker.run_tracking_groups = run
    with caplog.at_level(logging.WARNING, logger="napari_sam2.engine.session"):
        got = {r.frame: r for r in session.propagate(start=0)}
    assert got.keys() == plain.keys() == set(range(10))
    assert session.lean and session.objects_per_pass == 1
    assert [count for at, count in together if at == FAULT_FRAME] == [1, 1, 1]  # 3 objects, none prompted there
    assert [r.getMessage() for r in caplog.records][1:] == [
        f"out of CPU memory on frame {FAULT_FRAME}: computing 1 object at a time (slower)"]
    assert all(count == 1 for at, count in together if at >= FAULT_FRAME)
    for f in plain:
        np.testing.assert_allclose(got[f].logits, plain[f].logits, atol=2e-3, rtol=0)
        np.testing.assert_array_equal(got[f].masks, plain[f].masks)


def test_the_outputs_of_a_frames_earlier_passes_are_dropped_when_a_later_pass_runs_out(model, frames):
    """Two objects per pass (as after an earlier halving): on the fault frame the pass of 2 succeeds, the pass of 1
    runs out; the 2 outputs already computed are dropped from the session's store, and the frame is computed again
    one object at a time."""
    session = new_session(model, frames, caches=False)
    session.lean, session.objects_per_pass = True, 2
    real = session.tracker.run_tracking_groups
    calls = []

    def run(groups, at, upcoming=()):
        count = sum(len(tracks) for tracks, _ in groups)
        calls.append((at, count))
        if at == FAULT_FRAME and calls.count((at, 1)) == 1 and count == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(groups, at, upcoming)

    session.tracker.run_tracking_groups = run
    discarded = []
    discard = session.tracker.discard
    session.tracker.discard = lambda output: (discarded.append((len(calls), output)), discard(output))
    got = {r.frame: r for r in session.propagate(start=0)}
    assert [count for at, count in calls if at == FAULT_FRAME] == [2, 1, 1, 1, 1]
    dropped = [output for _, output in discarded if output is not None]
    assert len(dropped) == 2 and all(output.pred_masks_id not in session.vault._host for output in dropped)
    assert session.objects_per_pass == 1
    plain = {r.frame: r for r in new_session(model, frames, caches=False).propagate(start=0)}
    for f in plain:
        np.testing.assert_allclose(got[f].logits, plain[f].logits, atol=2e-3, rtol=0)
