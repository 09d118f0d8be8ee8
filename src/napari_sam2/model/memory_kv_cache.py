"""Keys and values of spatial memories, projected and rotated once per memory instead of once per use.

A tracked frame's memory is read by the next ``num_maskmem - 1`` frames, a prompted frame's by every frame;
the reference recomputes its cross-attention key/value projections and rotary encoding each time (about
two thirds of memory attention's time with 20 objects on an H200, ../shared/docs/PERFORMANCE.md). Between
uses a key changes only by the temporal encoding of the slot the frame sits in, and that enters linearly:
``k_proj(m + p + t_s) = k_proj(m + p) + W_k t_s``, and the rotation is linear too. So each memory's
``R(k_proj(m + p))`` is computed once (per layer) and a constant per-slot table ``R(W_k t_s)`` is added at use.
Values are the memory's own channels, shared by the layers (the value projection follows the attention,
``RoPEAttention.attend_groups``). Equal to the direct computation up to rounding (bfloat16 on the GPU).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .memory_attention import MemoryAttention, MemoryKV
from .rotary import apply_rotary


def project_memory_bases(
    attention: MemoryAttention, memory: torch.Tensor, pos_enc: torch.Tensor, rotation: torch.Tensor
) -> list[MemoryKV]:
    """Per layer, the rotated cross-attention keys of spatial memories, without slot encoding, and their values
    (unprojected, one tensor shared by the layers): memory (B, mem_dim, h, w) in the compute dtype, pos_enc
    (1 or B, mem_dim, h, w) → [(keys (B, heads, HW, head_dim), values (B, heads, HW, mem_dim))] per layer."""
    tokens = memory.flatten(2).transpose(1, 2)  # (B, HW, mem_dim)
    pos = pos_enc.flatten(2).transpose(1, 2).to(tokens.dtype)
    values = attention.unprojected_values(tokens)
    return [(module.cross_attn_image.project_keys(tokens + pos, rotation), values) for module in attention.layers]


class MemoryKVCache:
    """LRU of per-layer (key, value) heads of single-object spatial memories, keyed by the caller's ids."""

    def __init__(self, attention: MemoryAttention, maskmem_tpos_enc: torch.Tensor, max_entries: int = 256):
        self.attention = attention
        self.maskmem_tpos_enc = maskmem_tpos_enc  # (num_maskmem, 1, 1, mem_dim)
        self.max_entries = max_entries
        self._entries: OrderedDict[int, list[MemoryKV]] = OrderedDict()
        self._slot_tables: dict[tuple, list[torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self._slot_tables.clear()

    def memory_kv(
        self,
        spatial: Sequence[tuple[Sequence[int], torch.Tensor, torch.Tensor, int]],
        pointer_tokens: torch.Tensor | None,
        pointer_pos: torch.Tensor | None,
        feat_hw: tuple[int, int],
        *,
        dtype: torch.dtype = torch.float32,
    ) -> list[MemoryKV]:
        """Per layer, keys (B, heads, M, head_dim) and values (B, heads, M, mem_dim; unprojected, the same tensor for
        every layer) of a batch's memory.

        spatial: per memory frame, (one cache id per object, features (B, mem_dim, h, w) as stored, pos_enc
        (1 or B, mem_dim, h, w), temporal slot); pointer_tokens / pointer_pos: (P, B, mem_dim) sequence first, or
        None. Features are cast to ``dtype`` only for memories not yet in the cache.
        """
        rotation = self.attention.rotation(feat_hw, self.maskmem_tpos_enc.device)
        per_layer: list[list[torch.Tensor]] = [[] for _ in self.attention.layers]
        values: list[torch.Tensor] = []  # shared by the layers (unprojected)
        for ids, features, pos_enc, slot in spatial:
            bases = [self._base(key, features, i, pos_enc[:1], rotation, dtype) for i, key in enumerate(ids)]
            tables = self._slot_table(slot, rotation, bases[0][0][0].dtype)
            for layer in range(len(per_layer)):
                keys = torch.cat([b[layer][0] for b in bases]) if len(bases) > 1 else bases[0][layer][0]
                per_layer[layer].append(keys + tables[layer])
            values.append(torch.cat([b[0][1] for b in bases]) if len(bases) > 1 else bases[0][0][1])
        if pointer_tokens is not None:
            tokens, pos = pointer_tokens.transpose(0, 1), pointer_pos.transpose(0, 1)
            for layer, module in enumerate(self.attention.layers):
                attn = module.cross_attn_image
                per_layer[layer].append(attn.separate_heads(attn.k_proj(tokens + pos)))
            values.append(self.attention.unprojected_values(tokens))
        shared = torch.cat(values, dim=-2)
        return [(torch.cat(k, dim=-2), shared) for k in per_layer]

    def __contains__(self, key: int) -> bool:
        return key in self._entries

    def base(self, key: int, features: torch.Tensor, pos_enc: torch.Tensor, feat_hw: tuple[int, int],
             dtype: torch.dtype) -> list[MemoryKV]:
        """Per layer, the cached (rotated key, value) heads (1, heads, HW, head_dim) of one object's memory
        ``features`` (1, mem_dim, h, w) stored under ``key``, computed now if not cached; no slot encoding."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        rotation = self.attention.rotation(feat_hw, self.maskmem_tpos_enc.device)
        return self._base(key, features, 0, pos_enc[:1], rotation, dtype)

    def insert(self, key: int, kv: list[MemoryKV]) -> None:
        """Store the per-layer (key, value) heads of a memory computed elsewhere (``project_memory_bases``)."""
        self._entries[key] = kv
        self._entries.move_to_end(key)
        self._evict()

    def _base(self, key: int, features: torch.Tensor, index: int, pos_enc: torch.Tensor, rotation: torch.Tensor,
              dtype: torch.dtype):
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        memory = features[index : index + 1].to(dtype)
        kv = project_memory_bases(self.attention, memory, pos_enc, rotation)
        self._entries[key] = kv
        self._evict()
        return kv

    def _evict(self) -> None:
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def slot_tables(self, slots: Sequence[int], feat_hw: tuple[int, int], dtype: torch.dtype) -> list[torch.Tensor]:
        """Per layer, the slot encodings of a sequence of spatial memories laid end to end:
        (1, heads, len(slots) · HW, head_dim)."""
        rotation = self.attention.rotation(feat_hw, self.maskmem_tpos_enc.device)
        per_slot = [self._slot_table(slot, rotation, dtype) for slot in slots]
        layers = range(len(self.attention.layers))
        return [torch.cat([tables[layer] for tables in per_slot], dim=-2) for layer in layers]

    def _slot_table(self, slot: int, rotation: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor]:
        """Per layer, R(W_k t_slot) over the grid: (1, heads, HW, head_dim)."""
        key = (slot, rotation.shape[0], dtype)
        if key not in self._slot_tables:
            num_maskmem = self.maskmem_tpos_enc.shape[0]
            tpos = self.maskmem_tpos_enc[num_maskmem - slot - 1].reshape(1, 1, -1).float()
            tables = []
            for module in self.attention.layers:
                attn = module.cross_attn_image
                delta = F.linear(tpos, attn.k_proj.weight.float()).expand(1, rotation.shape[0], -1)
                tables.append(apply_rotary(attn.separate_heads(delta), rotation).to(dtype))
            self._slot_tables[key] = tables
        return self._slot_tables[key]
