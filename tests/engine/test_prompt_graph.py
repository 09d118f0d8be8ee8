"""A click's decoder pass on static buffers (what a CUDA graph replays) equals the eager pass.

On the CPU the static-buffer code runs without capture; tests/engine/test_cuda_fast_path.py replays it as a graph.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2.engine import Session
from napari_sam2.model import build_sam2
from tests.engine.reference_session import blob_frames, with_objects_present

SIZE = 256


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(7)
    return with_objects_present(build_sam2("sam2.1_hiera_tiny", image_size=SIZE))


@pytest.fixture(scope="module")
def frames():
    return blob_frames(8, size=96)


def clicks(session: Session) -> list:
    """First clicks, added clicks (with the earlier mask fed back), a box with a click, a negative click, and a
    click on an object after it has been propagated (memory: the eager path)."""
    results = [
        session.add_points(0, 1, [[28, 28]], [1]),
        session.add_points(0, 1, [[30, 40]], [0]),  # adds to the first: 2 points and the earlier logits
        session.add_points(0, 1, [[30, 40], [20, 20], [25, 30]], [0, 1, 1]),
        session.add_box(2, 2, (40, 40, 70, 75), points=[[55, 55]], labels=[1]),
        session.add_points(3, 3, [[40, 70]], [1], clear=True),
        session.add_points(3, 3, [[42, 72]], [1], clear=True),  # same shape again: the same buffers
    ]
    list(session.propagate(start=0, max_frames=3))
    results.append(session.add_points(5, 1, [[30, 30]], [1]))
    return results


def test_clicks_on_static_buffers_equal_the_eager_clicks(model, frames):
    static = Session(model, frames, device="cpu", step_graphs=True)
    eager = Session(model, frames, device="cpu", step_graphs=False)
    ours, plain = clicks(static), clicks(eager)
    graphs = static.tracker.prompt_graphs
    assert graphs is not None and eager.tracker.prompt_graphs is None
    assert len(graphs._shapes) >= 4  # 1 point multimask, 2 and 3 points with logits, box + point: all static
    for a, b in zip(ours, plain, strict=True):
        assert a.obj_ids == b.obj_ids
        np.testing.assert_allclose(a.logits, b.logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(a.masks, b.masks)
    assert sum(int(r.masks.sum()) for r in plain) > 0  # the comparison compares masks


def test_a_shape_reuses_its_buffers_and_a_new_frame_is_read_afresh(model, frames):
    """The same click shape on two frames: the second result is the second frame's, not the first's."""
    static = Session(model, frames, device="cpu", step_graphs=True)
    eager = Session(model, frames, device="cpu", step_graphs=False)
    for session in (static, eager):
        session.add_points(1, 1, [[28, 28]], [1])
    a, b = static.add_points(4, 2, [[60, 50]], [1]), eager.add_points(4, 2, [[60, 50]], [1])
    assert len(static.tracker.prompt_graphs._shapes) == 1
    np.testing.assert_allclose(a.logits, b.logits, rtol=1e-5, atol=1e-5)


def test_a_click_whose_capture_fails_runs_eagerly_with_one_warning(model, frames, monkeypatch):
    """Where capturing the click's pass fails (a driver or kernel that cannot be captured), the click still gives
    its mask — the eager pass's — and later clicks do not try again."""
    from napari_sam2.engine import prompt_graph

    calls = []

    def failing_capture(step):
        calls.append(1)
        raise RuntimeError("operation not permitted when stream is capturing\nmore")

    monkeypatch.setattr(prompt_graph, "capture_graph", failing_capture)
    static = Session(model, frames, device="cpu", step_graphs=True)
    eager = Session(model, frames, device="cpu", step_graphs=False)
    graphs = static.tracker.prompt_graphs
    graphs.use_graphs, graphs.defer = True, None  # capture here too, as on a GPU, right after the click
    with pytest.warns(RuntimeWarning, match="without CUDA graphs"):
        first = static.add_points(0, 1, [[28, 28]], [1])
    second = static.add_points(2, 2, [[50, 50]], [1])
    assert calls == [1] and graphs.use_graphs is False and graphs.captures == 0
    np.testing.assert_allclose(first.logits, eager.add_points(0, 1, [[28, 28]], [1]).logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(second.logits, eager.add_points(2, 2, [[50, 50]], [1]).logits, rtol=1e-5, atol=1e-5)


def test_a_shape_is_captured_after_its_first_click_through_the_deferral(model, frames):
    """The first click of a shape runs uncaptured and hands its capture to ``defer`` (the session's compute queue);
    a capture is queued once per shape."""
    static = Session(model, frames, device="cpu", step_graphs=True)
    graphs = static.tracker.prompt_graphs
    queued = []
    graphs.defer, graphs.use_graphs = queued.append, True
    static.add_points(0, 1, [[28, 28]], [1])
    static.add_points(0, 1, [[30, 30]], [1], clear=True)  # a new shape: the earlier mask goes in with the click
    static.add_points(0, 1, [[32, 30]], [1], clear=True)  # the same shape again: no second capture queued
    assert len(queued) == 2 and graphs.captures == 0
    static.add_points(0, 1, [[30, 40]], [0])  # two points
    assert len(queued) == 3
