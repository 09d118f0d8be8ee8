"""Which frames a propagation pass yields: its start frame first, in both directions, frame 0 included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2.engine import Session
from napari_sam2.model import build_sam2
from tests.engine.reference_session import blob_frames


@pytest.fixture(scope="module")
def session():
    torch.manual_seed(3)
    session = Session(build_sam2("sam2.1_hiera_tiny", image_size=256), blob_frames(3, size=64), device="cpu")
    session.prompt_logits = session.add_points(0, 1, [[20, 20]], [1]).logits[0]
    session.add_points(2, 2, [[40, 40]], [1])
    yield session
    session.close()


def test_a_backward_pass_from_frame_zero_yields_frame_zero(session):
    results = list(session.propagate(start=0, direction="backward"))
    assert [r.frame for r in results] == [0]
    assert results[0].obj_ids == (1, 2)
    np.testing.assert_array_equal(results[0].logits[0], session.prompt_logits, "object 1's prompt result")
    assert session._tracks[2].tracked[0] is True, "object 2, not prompted on frame 0, was computed backwards there"


@pytest.mark.parametrize("direction, start, frames", [("backward", 1, [1, 0]), ("both", 0, [0, 1, 2, 0])])
def test_every_pass_starts_at_its_start_frame(session, direction, start, frames):
    assert [r.frame for r in session.propagate(start=start, direction=direction)] == frames
