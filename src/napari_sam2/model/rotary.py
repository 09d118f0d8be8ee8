"""Axial rotary position encoding (RoPE) over a 2D grid of tokens.

Formulas from ``compute_axial_cis`` / ``apply_rotary_enc`` in sam2/modeling/position_encoding.py. Meta rotates
complex numbers; here the same rotation is written with cos/sin in real arithmetic, which agrees with the complex
version to float32 rounding and also runs where complex tensors do not (MPS, half precision, torch.compile).

A head of ``dim`` channels is read as ``dim / 2`` pairs (x₂ᵢ, x₂ᵢ₊₁). The first ``dim / 4`` pairs turn by the token's
column times a frequency, the last ``dim / 4`` by its row times the same frequencies, ωⱼ = θ^(−4j / dim).
"""

from __future__ import annotations

import torch


def compute_axial_rotation(
    dim: int,
    end_x: int,
    end_y: int,
    theta: float = 10000.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """cos and sin of the rotation angles of an ``end_y`` × ``end_x`` grid flattened row by row.

    Returns (end_x · end_y, dim / 2, 2) float32: [..., 0] the cosines, [..., 1] the sines.
    """
    if dim % 4:
        raise ValueError(f"rotary encoding needs a head dim divisible by 4, got {dim}")
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4, device=device)[: dim // 4].float() / dim))
    t = torch.arange(end_x * end_y, dtype=torch.float32, device=device)
    t_x = t % end_x
    t_y = torch.div(t, end_x, rounding_mode="floor")
    angles = torch.cat([torch.outer(t_x, freqs), torch.outer(t_y, freqs)], dim=-1)  # (N, dim / 2)
    return torch.stack([angles.cos(), angles.sin()], dim=-1)


def apply_rotary(x: torch.Tensor, rotation: torch.Tensor, repeat: bool = False) -> torch.Tensor:
    """Rotate the channel pairs of x (..., N, dim) by ``rotation`` (N_grid, dim / 2, 2).

    N must equal N_grid, or with ``repeat`` be a multiple of it: keys made of several memory frames of the same
    grid, each frame rotated like the first (``repeat_freqs_k`` in Meta's ``apply_rotary_enc``).
    Computed in float32 and returned in x's dtype.
    """
    n, n_grid = x.shape[-2], rotation.shape[0]
    if n == 0:
        return x
    if n != n_grid and (not repeat or n % n_grid):
        raise ValueError(f"cannot rotate {n} tokens with a grid of {n_grid} positions (repeat={repeat})")
    x_grid = x if n == n_grid else x.unflatten(-2, (n // n_grid, n_grid))  # frames broadcast against one table
    out = rotate_pairs(x_grid, *pair_tables(rotation))
    return out if n == n_grid else out.flatten(-3, -2)


def pair_tables(rotation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A rotation table (N, D / 2, 2) of cos/sin → (cos_pairs, sin_pairs), each (N, D) float32: c₀ c₀ c₁ c₁ … and
    −s₀ s₀ −s₁ s₁ …, so that a rotation is x · cos_pairs + swap(x) · sin_pairs."""
    cos, sin = rotation.unbind(-1)
    return cos.repeat_interleave(2, dim=-1), torch.stack([-sin, sin], dim=-1).flatten(-2)


def rotate_pairs(x: torch.Tensor, cos_pairs: torch.Tensor, sin_pairs: torch.Tensor) -> torch.Tensor:
    """x (..., N, D) rotated by ``pair_tables`` of its N positions: (x0 + i·x1) · (cos + i·sin) as in Meta's
    complex product, in float32 (four whole-tensor kernels, or one compiled), returned in x's dtype."""
    swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # x₁ x₀ x₃ x₂ …
    return torch.addcmul(x * cos_pairs, swapped, sin_pairs).to(x.dtype)


def rotate_keys(k: torch.Tensor, rotation: torch.Tensor, num_k_exclude_rope: int = 0) -> torch.Tensor:
    """Rotate keys (..., Nk, dim) made of whole grids, leaving the last ``num_k_exclude_rope`` keys (object-pointer
    tokens, which have no grid position) as they are. Returns a new tensor; k is not modified."""
    num_rope = k.shape[-2] - num_k_exclude_rope
    if num_k_exclude_rope == 0:
        return apply_rotary(k, rotation, repeat=True)
    return torch.cat([apply_rotary(k[..., :num_rope, :], rotation, repeat=True), k[..., num_rope:, :]], dim=-2)
