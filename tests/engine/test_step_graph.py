"""The tracking step on static buffers (what a CUDA graph replays) equals the eager step.

On the CPU the static-buffer code runs without capture; tests/engine/test_cuda_fast_path.py replays it as a graph.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2.engine import Session
from napari_sam2.engine.step_graph import batch_bucket
from napari_sam2.model import build_sam2
from tests.engine.reference_session import blob_frames, with_objects_present

SIZE = 256


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(5)
    model = build_sam2("sam2.1_hiera_tiny", image_size=SIZE)
    with torch.no_grad():
        # initialised at std 0.02, the slots' encodings would hardly matter: make them show
        model.maskmem_tpos_enc.normal_(0.0, 1.0)
    return with_objects_present(model)


@pytest.fixture(scope="module")
def frames():
    return blob_frames(14, size=96)


PROMPTS = [(1, 0, [[28, 28]]), (2, 3, [[58, 55]]), (3, 3, [[40, 70]]), (4, 1, [[70, 30]]), (5, 0, [[20, 60]])]


def track(model, frames, prompts, fuse=None, **kw):
    session = Session(model, frames, device="cpu", **kw)
    if session.tracker.graphs is not None:
        session.tracker.graphs.eager_first = False  # static steps from the first tracked frame on
        session.tracker.graphs.fuse = fuse
    for obj_id, frame, points in prompts:
        session.add_points(frame, obj_id, points, [1])
    results = {r.frame: r for r in session.propagate(start=0)}
    return session, results


def test_static_steps_equal_the_eager_steps_with_objects_prompted_on_different_frames(model, frames):
    """Five objects (a padded batch of 8), prompted on frames 0, 1 and 3: every frame's logits and scores of the
    static-buffer step equal the eager step's, and the static step ran once layouts repeated."""
    static, fast = track(model, frames, PROMPTS, step_graphs=True)
    _, eager = track(model, frames, PROMPTS, step_graphs=False, cache_memory_kv=True)
    _, plain = track(model, frames, PROMPTS, step_graphs=False, cache_memory_kv=False)
    assert static.tracker.graphs.static_steps >= 10
    assert fast.keys() == eager.keys() == plain.keys()
    for f in fast:
        np.testing.assert_allclose(fast[f].logits, eager[f].logits, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(fast[f].object_scores, eager[f].object_scores, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(fast[f].logits, plain[f].logits, rtol=1e-4, atol=1e-3)


def test_the_fusable_chains_of_memory_attention_equal_the_layers_forward(model, frames):
    """Memory attention written as fusable element-wise chains (what CUDA compiles; here run as plain torch) gives
    the eager step's logits on every frame."""
    fused, fast = track(model, frames, PROMPTS, fuse=True, step_graphs=True)
    _, eager = track(model, frames, PROMPTS, step_graphs=False, cache_memory_kv=True)
    assert fused.tracker.graphs.static_steps >= 10 and fused.tracker.graphs._ops  # the chains ran
    for f in fast:
        np.testing.assert_allclose(fast[f].logits, eager[f].logits, rtol=1e-5, atol=1e-4)


def test_eager_frames_of_objects_with_memories_of_different_lengths_run_the_fused_chains(model, frames, monkeypatch):
    """While a pass starts, objects prompted on different frames have memories of different lengths and run eagerly
    in one grouped memory attention: with fused chains on, that attention runs them too (one cross-attention per
    group), and its frames equal the plain eager step's."""
    from napari_sam2.model.memory_attention import MemoryAttention

    grouped_fused = []
    plain_fused = MemoryAttention._attend_fused

    def spy(self, curr, curr_pos, per_layer, sizes, rotation, ops):
        grouped_fused.append(len(sizes))
        return plain_fused(self, curr, curr_pos, per_layer, sizes, rotation, ops)

    monkeypatch.setattr(MemoryAttention, "_attend_fused", spy)
    session = Session(model, frames, device="cpu", step_graphs=True)
    session.tracker.graphs.fuse = True  # eager steps first (the default), then static ones
    for obj_id, frame, points in PROMPTS:
        session.add_points(frame, obj_id, points, [1])
    fused = {r.frame: r for r in session.propagate(start=0)}
    monkeypatch.setattr(MemoryAttention, "_attend_fused", plain_fused)
    _, eager = track(model, frames, PROMPTS, step_graphs=False, cache_memory_kv=True)
    assert grouped_fused and max(grouped_fused) >= 2  # some frame's groups went through the fused chains together
    for f in fused:
        np.testing.assert_allclose(fused[f].logits, eager[f].logits, rtol=1e-5, atol=1e-4)


def test_a_chain_that_fails_to_compile_runs_plain_with_one_warning_each(monkeypatch, caplog):
    from napari_sam2.model import fused_ops

    def broken(fn):
        def call(*args, **kwargs):
            raise RuntimeError("Cannot find a working triton installation")
        return call

    monkeypatch.setattr(fused_ops, "compiled_copy", broken)
    ops = fused_ops.FusedOps(compile=True)
    tgt, delta = torch.randn(2, 16, 8), torch.randn(2, 16, 8)
    norm = (torch.rand(8) + 0.5, torch.randn(8), 1e-6)
    out = ops.add_and_norm(tgt, delta, norm, torch.float32)
    expected = torch.nn.functional.layer_norm(tgt + delta, (8,), norm[0], norm[1], 1e-6)
    torch.testing.assert_close(out[1], expected)
    ops.rotate(torch.randn(2, 1, 16, 8), torch.ones(16, 8), torch.zeros(16, 8))
    ops.add_and_norm(tgt, delta, norm, torch.float32)
    assert ops.failed == {"add_and_norm", "rotate"} and sum("triton" in r.getMessage() for r in caplog.records) == 2


def test_each_object_in_a_static_batch_equals_the_object_tracked_alone(model, frames):
    together = track(model, frames, PROMPTS, step_graphs=True)[1]
    for obj_id, frame, points in PROMPTS[:3]:
        alone = track(model, frames, [(obj_id, frame, points)], step_graphs=True)[1]
        k = together[0].obj_ids.index(obj_id)
        for f, result in alone.items():
            np.testing.assert_allclose(together[f].logits[k], result.logits[0], rtol=1e-5, atol=1e-4)


def test_a_correction_after_propagation_reruns_the_static_step_with_the_new_memory(model, frames):
    """A click on a tracked frame changes the layout (one more conditioning frame); re-propagating still equals
    the eager session, and the memory key/value cache does not serve stale entries."""
    runs = []
    for graphs in (True, False):
        session, _ = track(model, frames, PROMPTS[:2], step_graphs=graphs, cache_memory_kv=True)
        session.add_points(8, 1, [[30, 34]], [0], clear=False)
        runs.append({r.frame: r for r in session.propagate(start=8)})
    for f in runs[0]:
        np.testing.assert_allclose(runs[0][f].logits, runs[1][f].logits, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("count", "bucket"), [(1, 1), (4, 4), (5, 8), (20, 24), (100, 104)])
def test_batch_buckets(count, bucket):
    assert batch_bucket(count) == bucket


def _track_prompted_at(cond_frame: int, tracked_to: int):
    from napari_sam2.engine.state import FrameOutput, ObjectTrack

    output = FrameOutput(pred_masks_id=0, obj_ptr=torch.zeros(1, 1), object_score=torch.zeros(()))
    track = ObjectTrack(1, cond={cond_frame: output})
    track.non_cond = {f: output for f in range(tracked_to) if f != cond_frame}
    return track


def test_only_full_memory_plans_are_graphed_and_lagging_objects_share_one_layout(model):
    """Objects prompted on frames 0 and 3: while their memories grow their layouts differ (and are not full);
    from the frame where both have every recent memory and pointer, they share one full layout (one graph)."""
    from napari_sam2.engine.memory_bank import plan_memory

    cfg = model.config
    early = [plan_memory(_track_prompted_at(c, 10), 10, reverse=False, num_frames=200, config=cfg) for c in (0, 3)]
    assert not any(p.full for p in early)
    late = [plan_memory(_track_prompted_at(c, 40), 40, reverse=False, num_frames=200, config=cfg) for c in (0, 3)]
    assert all(p.full for p in late) and late[0].layout == late[1].layout
    near = plan_memory(_track_prompted_at(3, 17), 17, reverse=False, num_frames=200, config=cfg)
    assert not near.full  # the prompted frame is still one of the last 15: one pointer fewer than later


def test_encoder_blocks_give_a_frame_the_same_features_whichever_frame_asked_first(model, frames):
    """Frames are encoded in aligned blocks (0–3, 4–7, …): a frame's features are bit-identical whether its block
    was encoded for a forward pass from frame 0, a backward pass from the end, or a click on frame 6 — which is
    what keeps a resumed run (that starts mid-block) equal to an uninterrupted one."""
    from napari_sam2.engine.features import FeatureCache
    from napari_sam2.engine.frames import FramePreparer

    def cache():
        return FeatureCache(model, FramePreparer(frames, model.image_size), torch.device("cpu"), batch_size=4)

    with torch.inference_mode():
        forward, backward, clicked = cache(), cache(), cache()
        assert forward.block(6) == [4, 5, 6, 7] and forward.block(13) == [12, 13]
        first = {f: forward.get(f, upcoming=[f + 1]) for f in range(len(frames))}
        last = {f: backward.get(f) for f in reversed(range(len(frames)))}
        mid = clicked.get(6)
        assert clicked.encoded_frames == 4 and 5 in clicked and 8 not in clicked
    for f in range(len(frames)):
        assert torch.equal(first[f].vision, last[f].vision) and torch.equal(first[f].high_res[0], last[f].high_res[0])
    assert torch.equal(mid.vision, first[6].vision)
    assert forward.encoded_frames == backward.encoded_frames == len(frames)


def test_a_feature_budget_smaller_than_a_block_still_returns_the_asked_frame(model, frames):
    """A tile's share of the feature budget can be smaller than one encoder block: the asked frame is kept (its
    block-mates are evicted), for every frame of the block."""
    from napari_sam2.engine.features import FeatureCache
    from napari_sam2.engine.frames import FramePreparer

    with torch.inference_mode():
        for asked in (4, 5, 7):
            cache = FeatureCache(model, FramePreparer(frames, model.image_size), torch.device("cpu"), batch_size=4,
                                 max_bytes=1)
            features = cache.get(asked)
            assert asked in cache and features.vision.shape[0] == 1
