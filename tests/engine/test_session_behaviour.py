"""Session behaviour beyond the reference: batching, lazy reads, bounded memory, resume, early stops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2.engine import Session
from napari_sam2.engine.frames import FrameError
from napari_sam2.engine.prompts import PromptError
from napari_sam2.model import build_sam2
from tests.engine.reference_session import blob_frames, with_objects_present

SIZE = 256


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(3)
    return with_objects_present(build_sam2("sam2.1_hiera_tiny", image_size=SIZE))


@pytest.fixture(scope="module")
def frames():
    return blob_frames(12, size=96)


class CountingFrames:
    """An array-like stack that counts which frames were read."""

    def __init__(self, n: int, h: int, w: int, dtype=np.uint8):
        self.shape, self.dtype, self.reads = (n, h, w), np.dtype(dtype), []

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, i):
        self.reads.append(int(i))
        rng = np.random.default_rng(int(i))
        return rng.integers(0, 200, self.shape[1:]).astype(self.dtype)


def run(session, **kw):
    return {r.frame: r for r in session.propagate(**kw)}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for f in a:
        assert a[f].obj_ids == b[f].obj_ids
        np.testing.assert_allclose(a[f].logits, b[f].logits, rtol=1e-5, atol=1e-4)


def test_a_session_over_10000_frames_reads_only_what_it_needs(model):
    stack = CountingFrames(10_000, 48, 48)
    session = Session(model, stack, device="cpu")
    assert stack.reads == []
    session.add_points(5000, 1, [[20, 20]], [1])
    assert stack.reads == [5000]
    results = list(session.propagate(start=5000, max_frames=2))
    assert [r.frame for r in results] == [5000, 5001, 5002]
    assert sorted(set(stack.reads)) == [5000, 5001, 5002]


def test_uint16_intensity_range_comes_from_a_sample(model):
    stack = CountingFrames(1000, 32, 32, np.uint16)
    session = Session(model, stack, device="cpu")
    session.add_points(10, 1, [[5, 5]], [1])
    assert 10 in stack.reads and len(set(stack.reads)) <= 17  # 16 sampled frames + the frame itself


@pytest.mark.parametrize("cached", [False, True], ids=["no-kv-cache", "kv-cache"])
def test_objects_with_different_memories_are_batched_and_stay_independent(model, frames, cached, monkeypatch):
    together = Session(model, frames, device="cpu", cache_memory_kv=cached)
    together.add_points(0, 1, [[28, 28]], [1])
    together.add_points(3, 2, [[58, 55]], [1])
    together.add_box(3, 3, (20, 60, 45, 85))
    sizes, decoded, attended = [], [], []
    original = together.tracker.run_tracking_groups
    heads, attention = model.run_heads, model.memory_attention

    def spy(groups, frame, upcoming=()):
        for _, plans in groups:
            assert len({p.layout for p in plans}) == 1 and len({p for p in plans}) <= 2
        sizes.append([len(tracks) for tracks, _ in groups])
        return original(groups, frame, upcoming)

    def heads_spy(pix_feat, *args, **kwargs):
        decoded.append(pix_feat.shape[0])
        return heads(pix_feat, *args, **kwargs)

    def attention_spy(method):
        def call(curr, *args, **kwargs):
            attended.append(curr.shape[1])
            return method(curr, *args, **kwargs)
        return call

    monkeypatch.setattr(together.tracker, "run_tracking_groups", spy)
    monkeypatch.setattr(model, "run_heads", heads_spy)
    for name in ("attend_memory", "attend_memory_groups"):
        monkeypatch.setattr(attention, name, attention_spy(getattr(attention, name)))
    both = run(together)
    # objects 2 and 3 share every memory plan; object 1, prompted on another frame, joins their batch once its
    # memories have the same layout (same slots, same number of pointers), attending to its own frames; before
    # that, the two batches are computed together all the same: one decoder pass a frame, and with the key/value
    # cache one memory attention (a cross-attention per batch)
    assert [3] in sizes and ([1, 2] in sizes or [2, 1] in sizes)
    assert decoded == [sum(batches) for batches in sizes]
    if cached:
        assert attended == decoded
    else:
        assert attended == [n for batches in sizes for n in batches]
    monkeypatch.undo()
    for obj_id, prompt in [(1, ("p", 0, [[28, 28]])), (2, ("p", 3, [[58, 55]])), (3, ("b", 3, (20, 60, 45, 85)))]:
        alone = Session(model, frames, device="cpu", cache_memory_kv=cached)
        kind, frame, value = prompt
        alone.add_points(frame, obj_id, value, [1]) if kind == "p" else alone.add_box(frame, obj_id, value)
        single = run(alone, start=0)
        k = both[0].obj_ids.index(obj_id)
        for f, result in single.items():
            np.testing.assert_allclose(both[f].logits[k], result.logits[0], rtol=1e-5, atol=1e-4)


def test_breaking_out_of_propagation_leaves_the_session_consistent(model, frames):
    reference = Session(model, frames, device="cpu")
    reference.add_points(0, 1, [[28, 28]], [1])
    full = run(reference)

    session = Session(model, frames, device="cpu")
    session.add_points(0, 1, [[28, 28]], [1])
    for result in session.propagate():
        if result.frame == 4:
            break
    assert max(session._tracks[1].tracked) == 4

    class Stop(Exception):
        pass

    with pytest.raises(Stop):
        for result in session.propagate():
            if result.frame == 6:
                raise Stop
    assert_same(run(session), full)


def test_resume_from_a_saved_state_equals_an_uninterrupted_run(model, frames, tmp_path):
    reference = Session(model, frames, device="cpu")
    reference.add_points(2, 1, [[28, 28]], [1])
    reference.add_points(2, 2, [[58, 55]], [1])
    full_fw, full_bw = run(reference), run(reference, direction="backward")

    first = Session(model, frames, device="cpu")
    first.add_points(2, 1, [[28, 28]], [1])
    first.add_points(2, 2, [[58, 55]], [1])
    for result in first.propagate():
        if result.frame == 8:
            first.save_state(tmp_path / "state.pt", next_frame=9)
            break
    resumed = Session(model, frames, device="cpu")
    resumed.load_state(tmp_path / "state.pt")
    tail = run(resumed, start=9)
    assert_same(tail, {f: r for f, r in full_fw.items() if f >= 9})
    resumed.save_state(tmp_path / "state.pt", next_frame=2, reverse=True)
    again = Session(model, frames, device="cpu")
    again.load_state(tmp_path / "state.pt")
    assert_same(run(again, start=2, direction="backward"), full_bw)


def test_state_of_another_stack_is_refused(model, frames, tmp_path):
    session = Session(model, frames, device="cpu")
    session.add_points(0, 1, [[28, 28]], [1])
    session.save_state(tmp_path / "s.pt")
    other = Session(model, frames[:5], device="cpu")
    with pytest.raises(ValueError, match="over 12 frames.*over 5 frames"):
        other.load_state(tmp_path / "s.pt")


def test_re_propagation_after_a_correction_reuses_image_features(model, frames):
    session = Session(model, frames, device="cpu")
    session.add_points(0, 1, [[28, 28]], [1])
    run(session)
    encoded = session.features.encoded_frames
    assert encoded == len(frames)
    session.add_points(6, 1, [[40, 30]], [1])
    assert 6 in session._tracks[1].pending_cond  # a correction becomes a prompt (corrections_as_prompts)
    run(session)
    assert session.features.encoded_frames == encoded


def test_results_spill_to_disk_beyond_the_host_budget_and_stay_exact(model, frames, tmp_path):
    roomy = Session(model, frames, device="cpu")
    tight = Session(model, frames, device="cpu", host_budget_bytes=600_000, spill_dir=str(tmp_path))
    for s in (roomy, tight):
        s.add_points(0, 1, [[28, 28]], [1])
        s.add_points(0, 2, [[58, 55]], [1])
    expected = run(roomy)
    got = run(tight)
    assert tight.vault.spilled_bytes > 0
    assert tight.vault.peak_host_bytes <= 600_000 + 300_000  # budget + one item being put
    assert_same(got, expected)
    got_again = run(tight)  # read back from the disk cache
    assert_same(got_again, expected)


def test_lost_patience_stops_tracking_an_absent_object(model, frames):
    session = Session(model, frames, device="cpu")
    session.add_points(0, 1, [[28, 28]], [1])
    head = model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias
    saved = head.detach().clone()
    try:
        with torch.no_grad():
            head -= 100.0  # the object is predicted absent on every tracked frame
        results = list(session.propagate(lost_patience=2))
    finally:
        with torch.no_grad():
            head.copy_(saved)
    scores = [r.object_scores[0] for r in results]
    assert scores[1] < 0 and scores[2] < 0
    assert all(s == -1024.0 for s in scores[3:])
    assert set(session._tracks[1].non_cond) == {1, 2}


def test_bad_input_is_refused_with_a_clear_error(model, frames):
    with pytest.raises(FrameError, match=r"\(N, H, W\) or \(N, H, W, C\)"):
        Session(model, np.zeros((4, 32, 32, 5), np.uint8), device="cpu")
    with pytest.raises(FrameError):
        Session(model, np.zeros((32, 32), np.uint8), device="cpu")
    session = Session(model, frames, device="cpu")
    with pytest.raises(PromptError, match="outside the frame"):
        session.add_points(0, 1, [[200, 5]], [1])
    with pytest.raises(PromptError, match="NaN"):
        session.add_points(0, 1, [[np.nan, 5]], [1])
    with pytest.raises(PromptError, match="no points"):
        session.add_points(0, 1, np.zeros((0, 2)), [])
    with pytest.raises(PromptError, match="2 points but 1 labels"):
        session.add_points(0, 1, [[5, 5], [6, 6]], [1])
    with pytest.raises(PromptError, match="object ids"):
        session.add_points(0, 0, [[5, 5]], [1])
    with pytest.raises(PromptError, match="has no area"):
        session.add_box(0, 1, (10, 10, 10, 20))
    with pytest.raises(IndexError, match="outside the stack"):
        session.add_points(12, 1, [[5, 5]], [1])
    with pytest.raises(RuntimeError, match="no object has prompts"):
        list(session.propagate())
    assert session.obj_ids == ()  # nothing half-made


def test_float_frames_with_nan_and_constant_frames_are_handled(model):
    stack = np.random.default_rng(0).normal(100, 10, (3, 40, 40)).astype(np.float32)
    stack[0, :5] = np.nan
    stack[1] = 7.0
    session = Session(model, stack, device="cpu")
    for t in range(3):
        image = session.preparer.prepare(t)
        assert torch.isfinite(image).all()
    result = session.add_points(1, 1, [[20, 20]], [1])
    assert np.isfinite(result.logits).all()


def test_cached_memory_keys_and_values_give_the_same_results(model, frames):
    """The GPU's default (keys/values projected once per memory) equals the direct computation."""
    direct = Session(model, frames, device="cpu", cache_memory_kv=False)
    cached = Session(model, frames, device="cpu", cache_memory_kv=True)
    for s in (direct, cached):
        s.add_points(0, 1, [[28, 28]], [1])
        s.add_points(4, 2, [[58, 55]], [1])
    expected, got = run(direct), run(cached)
    assert len(cached.tracker.kv_cache) > 0
    assert_same(got, expected)
    for s in (direct, cached):
        s.add_points(7, 1, [[40, 30]], [1])  # a correction reads cached memories too
    assert_same(run(cached, direction="backward", start=11), run(direct, direction="backward", start=11))


def test_lost_patience_resumes_with_its_absence_counts(model, frames, tmp_path):
    head = model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias
    saved = head.detach().clone()
    try:
        with torch.no_grad():
            head -= 100.0  # absent on every tracked frame: stops after 3 of them
        whole = Session(model, frames, device="cpu")
        whole.add_points(0, 1, [[28, 28]], [1])
        expected = run(whole, lost_patience=3)
        first = Session(model, frames, device="cpu")
        first.add_points(0, 1, [[28, 28]], [1])
        for result in first.propagate(lost_patience=3):
            if result.frame == 1:
                first.save_state(tmp_path / "s.pt", next_frame=2)
                break
        resumed = Session(model, frames, device="cpu")
        resumed.load_state(tmp_path / "s.pt")
        tail = run(resumed, start=2, lost_patience=3)
    finally:
        with torch.no_grad():
            head.copy_(saved)
    scores = [expected[f].object_scores[0] for f in sorted(expected)]
    assert all(s == -1024.0 for s in scores[4:]) and scores[3] != -1024.0
    assert_same(tail, {f: r for f, r in expected.items() if f >= 2})
    # an absent object's logits are NO_OBJ_SCORE whether computed or skipped: the scores tell them apart
    assert [tail[f].object_scores[0] for f in sorted(tail)] == scores[2:]
    # a state saved for another pass carries no counts: that pass starts from zero
    first.save_state(tmp_path / "other.pt", next_frame=2, reverse=True)
    other = Session(model, frames, device="cpu")
    other.load_state(tmp_path / "other.pt")
    assert other.resume_absent_counts is None
