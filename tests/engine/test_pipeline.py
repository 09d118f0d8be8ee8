"""Propagation that computes frame t + 1 while the caller reads frame t gives the same results as computing on demand,
and never lets that early frame leak into the session when the caller changes something or stops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2.engine import Session
from napari_sam2.model import build_sam2
from tests.engine.reference_session import blob_frames, with_objects_present

PROMPTS = [(1, 0, [[28, 28]]), (2, 2, [[58, 55]]), (3, 0, [[40, 70]])]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(11)
    return with_objects_present(build_sam2("sam2.1_hiera_tiny", image_size=256))


@pytest.fixture(scope="module")
def frames():
    return blob_frames(10, size=96)


def session_with_prompts(model, frames, pipeline: bool) -> Session:
    session = Session(model, frames, device="cpu", pipeline=pipeline)
    for obj_id, frame, points in PROMPTS:
        session.add_points(frame, obj_id, points, [1])
    return session


def test_pipelined_propagation_equals_propagation_on_demand(model, frames):
    piped = {r.frame: r for r in session_with_prompts(model, frames, True).propagate(direction="both")}
    plain = {r.frame: r for r in session_with_prompts(model, frames, False).propagate(direction="both")}
    assert piped.keys() == plain.keys() == set(range(10))
    for f in plain:
        np.testing.assert_array_equal(piped[f].logits, plain[f].logits)
        np.testing.assert_array_equal(piped[f].object_scores, plain[f].object_scores)


def test_a_correction_between_frames_is_seen_by_the_next_frame(model, frames):
    """After frame 4 is read, a negative click on frame 5 (which was already computing ahead) must shape frame 5
    and everything after it exactly as a session without computing ahead."""
    def run(pipeline: bool) -> dict[int, np.ndarray]:
        session = session_with_prompts(model, frames, pipeline)
        out = {}
        for result in session.propagate(start=0):
            out[result.frame] = result.logits
            if result.frame == 4:
                session.add_points(5, 1, [[31, 30], [20, 20]], [1, 0])
        return out, session

    piped, session = run(True)
    plain, _ = run(False)
    assert piped.keys() == plain.keys()
    for f in plain:
        np.testing.assert_array_equal(piped[f], plain[f])
    assert 5 in session.prompted_frames(1)


def test_stopping_early_leaves_no_later_frame_touched(model, frames):
    session = session_with_prompts(model, frames, True)
    for result in session.propagate(start=0):
        if result.frame == 3:
            break
    later = session.result(4)
    assert (later.object_scores <= -1000).all()  # nothing tracked there: the frame computed ahead was dropped
    assert session._ahead is None
    before = session.result(3)
    assert (before.object_scores > -1000).all()
