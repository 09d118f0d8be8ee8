"""Memory attention and rotary encoding against Meta's (sam2==1.1.0), with the reference's weights."""

from __future__ import annotations

import copy

import pytest
import torch

from napari_sam2.model.config import get_config
from napari_sam2.model.memory_attention import MemoryAttention, RoPEAttention, build_memory_attention
from napari_sam2.model.rotary import apply_rotary, compute_axial_rotation, rotate_keys
from tests.reference import relative_error, require_reference

TOL = 1e-5


def randomized(module: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """A copy of a reference module whose LayerNorms are not the identity (their init is weight 1, bias 0), so
    that a mix-up of norm1/2/3 or a missing final norm shows."""
    module = copy.deepcopy(module)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name:
                noise = torch.randn(p.shape, generator=gen)
                p.copy_(1 + 0.5 * noise if name.endswith("weight") else 0.2 * noise)
    return module.eval()


@pytest.fixture(scope="module")
def reference_attention(reference_tiny_512):
    return randomized(reference_tiny_512.memory_attention)


def ours_from(reference: torch.nn.Module, image_size: int = 512) -> MemoryAttention:
    ours = build_memory_attention(get_config("sam2.1_hiera_tiny", image_size)).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours


def memory_inputs(side: int, batch: int, num_frames: int, num_ptr_tokens: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    hw, m = side * side, num_frames * side * side + num_ptr_tokens
    return (
        torch.randn(hw, batch, 256, generator=gen),
        torch.randn(hw, batch, 256, generator=gen),
        torch.randn(m, batch, 64, generator=gen),
        torch.randn(m, batch, 64, generator=gen),
    )


def run_reference(reference, curr, curr_pos, memory, memory_pos, num_ptr_tokens):
    # fresh clones: Meta's RoPEAttention caches freqs_cis and writes rotated keys in place
    return reference(
        curr=curr.clone(),
        memory=memory.clone(),
        curr_pos=curr_pos.clone(),
        memory_pos=memory_pos.clone(),
        num_obj_ptr_tokens=num_ptr_tokens,
    )


def test_state_dict_round_trip(reference_tiny_512):
    require_reference()
    reference = reference_tiny_512.memory_attention
    ours = ours_from(reference)
    theirs = {k: v.shape for k, v in reference.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == theirs
    assert "layers.0.cross_attn_image.k_proj.weight" in theirs and "norm.weight" in theirs
    assert theirs["layers.3.cross_attn_image.k_proj.weight"] == (256, 64)
    assert not list(ours.buffers())
    copy.deepcopy(reference).load_state_dict(ours.state_dict(), strict=True)


@pytest.mark.parametrize(
    "batch, num_frames, num_ptr_tokens",
    [(1, 1, 0), (3, 1, 64), (1, 7, 64)],
)
@torch.no_grad()
def test_matches_reference_32(reference_attention, batch, num_frames, num_ptr_tokens):
    inputs = memory_inputs(32, batch, num_frames, num_ptr_tokens)
    ours = ours_from(reference_attention)
    expected = run_reference(reference_attention, *inputs, num_ptr_tokens)
    originals = [t.clone() for t in inputs]
    out = ours(*inputs, num_obj_ptr_tokens=num_ptr_tokens)
    assert out.shape == (1024, batch, 256)
    assert relative_error(out, expected) <= TOL
    assert all(torch.equal(a, b) for a, b in zip(inputs, originals, strict=True)), "inputs were modified"


@torch.no_grad()
def test_pointer_tokens_are_not_rotated(reference_attention):
    """Rotating the pointer tokens too must give a different result, so the comparisons above can fail on it
    (as many pointer tokens as a frame has, so that rotating them as a second frame is possible; a 16 × 16 grid
    to keep it cheap)."""
    inputs = memory_inputs(16, 1, 2, 0)
    expected = run_reference(reference_attention, *inputs, 256)
    ours = ours_from(reference_attention)
    assert relative_error(ours(*inputs, num_obj_ptr_tokens=256), expected) <= TOL
    assert relative_error(ours(*inputs, num_obj_ptr_tokens=0), expected) > 1e-3


@torch.no_grad()
def test_matches_reference_64(reference_attention):
    """The RoPE grid follows the features: 64 × 64 tokens at image_size 1024."""
    inputs = memory_inputs(64, 1, 1, 16)
    ours = ours_from(reference_attention, image_size=1024)
    expected = run_reference(reference_attention, *inputs, 16)
    assert relative_error(ours(*inputs, num_obj_ptr_tokens=16), expected) <= TOL


@torch.no_grad()
def test_project_memory_is_what_forward_uses(reference_attention):
    """Keys/values projected once per memory frame and concatenated equal those of the whole memory."""
    ours = ours_from(reference_attention)
    _, _, memory, memory_pos = memory_inputs(16, 2, 2, 8)
    whole = ours.project_memory(memory, memory_pos, 8, (16, 16))
    parts = [
        ours.project_memory(memory[sl], memory_pos[sl], n, (16, 16))
        for sl, n in ((slice(0, 256), 0), (slice(256, 512), 0), (slice(512, None), 8))
    ]
    for layer, (k, v) in enumerate(whole):
        torch.testing.assert_close(k, torch.cat([p[layer][0] for p in parts], dim=-2))
        torch.testing.assert_close(v, torch.cat([p[layer][1] for p in parts], dim=-2))


@torch.no_grad()
def test_rope_attention_matches_reference(reference_attention):
    """One cross-attention module on its own, several memory frames and excluded keys."""
    require_reference()
    reference = reference_attention.layers[1].cross_attn_image
    ours = RoPEAttention(256, 1, kv_in_dim=64, rope_k_repeat=True)
    ours.load_state_dict(reference.state_dict(), strict=True)
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(2, 256, 256, generator=gen)
    k, v = torch.randn(2, 2, 3 * 256 + 5, 64, generator=gen).unbind(0)
    expected = reference(q.clone(), k.clone(), v.clone(), num_k_exclude_rope=5)
    assert relative_error(ours(q, k, v, num_k_exclude_rope=5), expected) <= TOL


@torch.no_grad()
@pytest.mark.parametrize("after", [True, False], ids=["projected after (CUDA)", "projected before (CPU)"])
@pytest.mark.parametrize("heads", [1, 2])
def test_values_projected_after_attention_equal_values_projected_before(reference_attention, heads, after,
                                                                        monkeypatch):
    """Memory attention keeps values unprojected and applies v_proj after the softmax on CUDA, before it elsewhere:
    both equal to the module's plain path (and, with one head, to Meta's module) for several memory frames and
    unrotated pointer tokens."""
    from napari_sam2.model import memory_attention

    monkeypatch.setattr(memory_attention, "projects_values_after_attention", lambda q: after)
    reference = reference_attention.layers[2].cross_attn_image
    ours = RoPEAttention(256, heads, kv_in_dim=64, rope_k_repeat=True)
    if heads == 1:
        ours.load_state_dict(reference.state_dict(), strict=True)
    gen = torch.Generator().manual_seed(4)
    q = torch.randn(2, 256, 256, generator=gen)
    k, v = torch.randn(2, 2, 2 * 256 + 4, 64, generator=gen).unbind(0)
    rotation = ours.rotation((16, 16), q.device)
    values = ours.unprojected_values(v)
    assert values.shape == (2, heads, 2 * 256 + 4, 64)
    deferred = ours.attend_groups(ours.project_queries(q, rotation), [(ours.project_keys(k, rotation, 4), values)],
                                  [q.shape[0]])
    assert relative_error(deferred, ours(q, k, v, num_k_exclude_rope=4)) <= TOL
    if heads == 1:
        require_reference()
        expected = reference(q.clone(), k.clone(), v.clone(), num_k_exclude_rope=4)
        assert relative_error(deferred, expected) <= TOL


def test_unprojected_values_take_the_dtype_of_the_keys_under_autocast():
    """Under bf16 autocast the keys are bf16 (k_proj's output); the values must be too, not the fp32 of the frame
    features they come from: the step graph copies keys and values into its buffers in one multi-tensor copy,
    which falls back to one copy per tensor (thousands a frame) when the dtypes differ, and attention would cast
    fp32 values on every call."""
    attn = RoPEAttention(256, 1, kv_in_dim=64, rope_k_repeat=True)
    v = torch.randn(2, 16, 64)
    assert attn.unprojected_values(v).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert attn.unprojected_values(v).dtype == attn.k_proj(v).dtype == torch.bfloat16


@pytest.mark.parametrize("side", [32, 64])
def test_rotary_matches_complex_reference(side):
    """The cos/sin formulation against Meta's complex one, to 1e-6 relative."""
    require_reference()
    from sam2.modeling.position_encoding import apply_rotary_enc, compute_axial_cis

    gen = torch.Generator().manual_seed(side)
    rotation = compute_axial_rotation(128, side, side)
    cis = compute_axial_cis(128, side, side)
    assert relative_error(rotation[..., 0], cis.real) <= 1e-6
    assert relative_error(rotation[..., 1], cis.imag) <= 1e-6
    n = side * side
    q = torch.randn(2, 2, n, 128, generator=gen)
    k = torch.randn(2, 2, 3 * n + 7, 128, generator=gen)
    expected_q, expected_k = apply_rotary_enc(q.clone(), k[:, :, : 3 * n].clone(), cis, repeat_freqs_k=True)
    assert relative_error(apply_rotary(q, rotation), expected_q) <= 1e-6
    rotated = rotate_keys(k, rotation, num_k_exclude_rope=7)
    assert relative_error(rotated[:, :, : 3 * n], expected_k) <= 1e-6
    assert torch.equal(rotated[:, :, 3 * n :], k[:, :, 3 * n :])


def test_rotary_rejects_partial_frames():
    rotation = compute_axial_rotation(64, 4, 4)
    with pytest.raises(ValueError):
        apply_rotary(torch.zeros(1, 1, 17, 64), rotation, repeat=True)
    with pytest.raises(ValueError):
        apply_rotary(torch.zeros(1, 1, 32, 64), rotation, repeat=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_linear_relu_in_the_epilogue_equals_linear_then_relu(dtype):
    from napari_sam2.model.memory_attention import linear_relu

    torch.manual_seed(0)
    linear = torch.nn.Linear(32, 96)
    x = torch.randn(3, 50, 32).to(dtype)
    expected = torch.relu(torch.nn.functional.linear(x, linear.weight.to(dtype), linear.bias.to(dtype)))
    got = linear_relu(x, linear)
    assert got.shape == (3, 50, 96) and got.dtype == dtype
    assert (got == 0).sum() > 1000  # the ReLU clipped something
    tolerance = 1e-6 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("fused", [False, True])
@torch.no_grad()
def test_a_frame_shared_by_its_objects_runs_the_first_self_attention_once(reference_attention, fused):
    """The current frame expanded over 3 objects (batch stride 0, as a session passes it): the first layer's
    self-attention sees one row, and every object's result is still Meta's for its own memory."""
    from napari_sam2.model.fused_ops import FusedOps

    curr, curr_pos, memory, memory_pos = memory_inputs(32, 3, 2, 16)
    curr, curr_pos = curr[:, :1].expand(-1, 3, -1), curr_pos[:, :1].expand(-1, 3, -1)
    expected = run_reference(reference_attention, curr.contiguous(), curr_pos.contiguous(), memory, memory_pos, 16)
    ours = ours_from(reference_attention)
    seen: list[int] = []
    hooks = [layer.self_attn.q_proj.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
             for layer in ours.layers]
    kv = ours.project_memory(memory, memory_pos, 16, (32, 32))
    out = ours.attend_memory(curr, curr_pos, kv, (32, 32), FusedOps(compile=False) if fused else None)
    for hook in hooks:
        hook.remove()
    assert seen == [1, 3, 3, 3]
    assert out.shape == (1024, 3, 256)
    assert relative_error(out, expected) <= TOL
    # the objects' memories differ, so their results do
    assert (out[:, 0] - out[:, 1]).abs().mean() > 1e-2
