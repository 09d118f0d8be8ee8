"""Turning a selection from the memory bank into the token sequence memory attention reads.

Which memories a frame attends to is the engine's rule (its memory bank); this module only lays the chosen
ones out the way ``SAM2Base._prepare_memory_conditioned_features`` (sam2/modeling/sam2_base.py) does:
spatial memories first, each with its temporal position embedding, then object pointers split into
``C / mem_dim`` tokens with a sine encoding of their signed frame distance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .common import sine_encoding_1d


@dataclass(frozen=True)
class SpatialMemory:
    """One frame's spatial memory for a batch of B objects.

    features: (B, mem_dim, h, w); pos_enc: (B or 1, mem_dim, h, w).
    temporal_slot: 0 for a conditioning (prompted) frame, 1..num_maskmem-1 for the recent frames, where
    ``num_maskmem - slot`` is how many frames before the current one it lies (the reference's ``t_pos``).
    """

    features: torch.Tensor
    pos_enc: torch.Tensor
    temporal_slot: int


@dataclass(frozen=True)
class PointerMemory:
    """One frame's object pointer for B objects: pointer (B, C); ``frame_distance`` is the signed distance
    (current − that frame, negated when tracking backwards) used for its temporal encoding: one for all objects,
    or one per object (a tuple of B) when the objects' pointers come from different frames."""

    pointer: torch.Tensor
    frame_distance: int | tuple[int, ...]


@dataclass(frozen=True)
class MemoryTokens:
    """memory (M, B, mem_dim) and memory_pos (M, B, mem_dim), sequence first; the last
    ``num_pointer_tokens`` of the M tokens are object-pointer tokens (no rotary encoding)."""

    memory: torch.Tensor
    memory_pos: torch.Tensor
    num_pointer_tokens: int


def assemble_memory_tokens(
    spatial: Sequence[SpatialMemory],
    pointers: Sequence[PointerMemory],
    *,
    maskmem_tpos_enc: torch.Tensor,
    obj_ptr_tpos_proj: torch.nn.Module,
    max_pointer_distance: int,
    add_tpos_enc_to_obj_ptrs: bool,
    proj_tpos_enc_in_obj_ptrs: bool,
    dtype: torch.dtype | None = None,
    pointer_distances: torch.Tensor | None = None,
) -> MemoryTokens:
    """Concatenate spatial memories and object pointers into memory-attention tokens.

    maskmem_tpos_enc: (num_maskmem, 1, 1, mem_dim); slot s receives ``maskmem_tpos_enc[num_maskmem - s - 1]``.
    max_pointer_distance: ``min(num_frames, max_obj_ptrs_in_encoder) - 1``, the normaliser of pointer
    distances. Memories stored at lower precision are promoted to ``dtype`` (default: the pointers' dtype,
    else float32), as ``torch.cat``'s type promotion does in the reference.
    """
    if not spatial and not pointers:
        raise ValueError("a memory-conditioned frame needs at least one memory or object pointer")
    num_maskmem, mem_dim = maskmem_tpos_enc.shape[0], maskmem_tpos_enc.shape[-1]
    if dtype is None:
        dtype = pointers[0].pointer.dtype if pointers else torch.float32
    tokens, positions = [], []
    for mem in spatial:
        batch = mem.features.shape[0]
        tokens.append(mem.features.flatten(2).permute(2, 0, 1).to(dtype))
        pos = mem.pos_enc.flatten(2).permute(2, 0, 1).to(dtype)
        pos = pos + maskmem_tpos_enc[num_maskmem - mem.temporal_slot - 1].to(dtype)
        positions.append(pos.expand(-1, batch, -1))
    num_pointer_tokens = 0
    if pointers:
        ptrs = torch.stack([p.pointer for p in pointers], dim=0).to(dtype)  # (P, B, C)
        num_ptrs, batch, channels = ptrs.shape
        if add_tpos_enc_to_obj_ptrs:
            distances = pointer_distances
            if distances is None:
                per_object = any(isinstance(p.frame_distance, tuple) for p in pointers)
                values = tuple(per_object_distances(p.frame_distance, batch) if per_object else p.frame_distance
                               for p in pointers)
                distances = _distances(values, ptrs.device)  # (P,) or (P, B)
            pos = pointer_position_encoding(distances, obj_ptr_tpos_proj, max_pointer_distance=max_pointer_distance,
                                            dim=channels if proj_tpos_enc_in_obj_ptrs else mem_dim, dtype=dtype)
            pos = pos.unsqueeze(1) if pos.ndim == 2 else pos
            pos = pos.expand(-1, batch, mem_dim)
        else:
            pos = ptrs.new_zeros(num_ptrs, batch, mem_dim)
        split = tokens_per_pointer(channels, mem_dim)
        if split > 1:
            ptrs = ptrs.reshape(num_ptrs, batch, split, mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
            pos = pos.repeat_interleave(split, dim=0)
        tokens.append(ptrs)
        positions.append(pos)
        num_pointer_tokens = ptrs.shape[0]
    return MemoryTokens(torch.cat(tokens, dim=0), torch.cat(positions, dim=0), num_pointer_tokens)


def tokens_per_pointer(channels: int, mem_dim: int) -> int:
    """How many memory tokens one object pointer of ``channels`` becomes: split into ``mem_dim``-wide pieces where the
    memory is narrower (SAM 2: 256 → 4 tokens of 64), else one."""
    return channels // mem_dim if mem_dim < channels else 1


def pointer_position_encoding(
    distances: torch.Tensor, obj_ptr_tpos_proj: torch.nn.Module, *, max_pointer_distance: int, dim: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Temporal encoding of object pointers from their frame distances (any shape, e.g. (P,) or (P, B)) →
    (..., mem_dim): a sine encoding of the distance normalised by ``max_pointer_distance``, projected."""
    pos = sine_encoding_1d(distances / max(max_pointer_distance, 1), dim=dim)
    return obj_ptr_tpos_proj(pos.to(dtype))


def per_object_distances(distance: int | tuple[int, ...], batch: int) -> tuple[int, ...]:
    """A pointer's frame distance for each of ``batch`` objects (one shared distance repeated)."""
    if isinstance(distance, tuple):
        if len(distance) != batch:
            raise ValueError(f"{len(distance)} pointer distances for {batch} objects")
        return distance
    return (distance,) * batch


_distance_cache: dict[tuple, torch.Tensor] = {}


def _distances(values: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The pointer distances as a tensor on ``device``, made once per distinct tuple (no upload per frame)."""
    key = (values, device)
    if key not in _distance_cache:
        if len(_distance_cache) > 4096:
            _distance_cache.clear()
        _distance_cache[key] = torch.tensor(values, device=device)
    return _distance_cache[key]
