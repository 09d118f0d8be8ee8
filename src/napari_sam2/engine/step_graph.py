"""The steady-state tracking step of a batch of objects, on static buffers, replayed as a CUDA graph.

Once an object has been tracked for a few frames, every frame runs the same work on tensors of the same shapes:
memory attention over the same number of memories, the SAM heads, the memory encoder, hole filling and the
projection of the new memory's attention keys and values. Launched one kernel at a time from Python, that is
~950 launches a frame, and the CPU, not the GPU, sets the pace (../shared/docs/PERFORMANCE.md). Here the step
is captured once per *layout* — (object-count bucket, temporal slots of the spatial memories, number of
pointers) — and replayed: the frame's inputs are copied into the graph's static buffers (the memories' cached
keys and values with one multi-tensor copy), one replay computes everything, and the outputs are copied out.

Only a *full* layout is captured — every recent-memory slot and every pointer present, as on every frame once an
object has been tracked for ``max_obj_ptrs_in_encoder`` frames; the first frames of a pass, where the memory grows
by a frame at a time (and groups of objects prompted on different frames lag each other), run eagerly. On the CPU
(or with ``use_graphs=False``) the same code runs on the same buffers without capture, which is how the tests
compare it with the eager step.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TypeVar

import torch

from napari_sam2.model import FrameFeatures, PointerMemory, SAM2Model
from napari_sam2.model.fused_ops import FusedOps
from napari_sam2.model.memory_kv_cache import MemoryKV, MemoryKVCache, project_memory_bases
from napari_sam2.model.memory_tokens import assemble_memory_tokens, per_object_distances, tokens_per_pointer

from .postprocess import fill_holes

MEMORY_DTYPE = torch.bfloat16  # the reference stores spatial memories in bfloat16, on every device
T = TypeVar("T")
FUSE_MIN_BATCH = 8  # batches from this many objects run memory attention's element-wise chains compiled (CUDA)


def batch_bucket(count: int) -> int:
    """Objects per captured batch: exact up to 4, then a multiple of 8 (fewer captures as objects come and go)."""
    return count if count <= 4 else -(-count // 8) * 8


@dataclass
class StepOutputs:
    """A batch's results: low-resolution logits after hole filling (B, 1, S/4, S/4) float32, object pointers
    (B, C) float32, object-score logits (B,) float32, new spatial memories (B, mem_dim, h, w) bfloat16, and
    per layer the new memories' (keys (B, heads, HW, head_dim), values (B, heads, HW, mem_dim)) for the key/value
    cache, the values one tensor shared by the layers."""

    low_res_masks: torch.Tensor
    obj_ptr: torch.Tensor
    object_score: torch.Tensor
    memory: torch.Tensor
    memory_kv: list[MemoryKV]


def static_features(features: FrameFeatures) -> FrameFeatures:
    """Zeroed buffers shaped like one frame's ``features`` (batch 1), for a graph to read (``fill_features``)."""

    def like(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x[:1])

    return FrameFeatures(vision=like(features.vision), vision_pos=like(features.vision_pos),
                         high_res=(like(features.high_res[0]), like(features.high_res[1])))


def fill_features(static: FrameFeatures, features: FrameFeatures) -> None:
    """Copy a frame's ``features`` (its first batch entry) into ``static_features`` buffers."""
    static.vision.copy_(features.vision[:1])
    static.vision_pos.copy_(features.vision_pos[:1])
    static.high_res[0].copy_(features.high_res[0][:1])
    static.high_res[1].copy_(features.high_res[1][:1])


def capture_graph(step: Callable[[], T]) -> tuple[torch.cuda.CUDAGraph, T]:
    """``step`` (work on static buffers) captured as a CUDA graph, after two warm-up runs on a side stream (kernels
    chosen, attention backends timed (sdpa.py), autocast's weight casts cached outside the graph); its outputs are
    the graph's static outputs, rewritten by each replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="relaxed"):
        outputs = step()
    return graph, outputs


class _Buffers:
    """The static inputs and outputs of one layout, and its graph once captured.

    first: per layer, the (keys, values) of one cached memory (1, heads, HW, head_dim or mem_dim), for shapes and
    dtypes; tables: per layer, the slot encodings of the layout's spatial memories (1, heads, num_spatial · HW,
    head_dim); keys: per layer (batch, heads, num_spatial · HW + pointer_tokens, head_dim); values: one tensor for
    every layer (batch, heads, same tokens, mem_dim), unprojected; dst: the views of keys (layer by layer) then of
    values that receive each object's cached memory (object, memory), for one multi-tensor copy.
    """

    def __init__(self, features: FrameFeatures, first: list[MemoryKV], tables: list[torch.Tensor], *, batch: int,
                 num_spatial: int, num_pointers: int, pointer_tokens: int, channels: int) -> None:
        self.features = static_features(features)
        k0, v0 = first[0]
        heads, grid, device = k0.shape[1], k0.shape[2], k0.device
        self.spatial_tokens = num_spatial * grid
        self.tables = tables
        self.num_pointers = num_pointers
        self.pointers = torch.zeros(num_pointers, batch, channels, device=device)
        self.distances = torch.zeros(num_pointers, batch, device=device)
        tokens = self.spatial_tokens + pointer_tokens
        self.keys = [torch.zeros((batch, heads, tokens, k0.shape[3]), dtype=k0.dtype, device=device) for _ in first]
        self.values = torch.zeros((batch, heads, tokens, v0.shape[3]), dtype=v0.dtype, device=device)

        def views(target: torch.Tensor) -> list[torch.Tensor]:  # object b's memory j, b-major
            return [target[b : b + 1, :, j * grid : (j + 1) * grid] for b in range(batch) for j in range(num_spatial)]

        self.dst = [view for k in self.keys for view in views(k)] + views(self.values)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: StepOutputs | None = None

    def add_slot_encodings(self) -> None:
        """Each object's spatial keys get the slot encodings of their memories (in place: part of the step, so a
        replay adds them once to the keys just copied in). One contiguous, vectorised add per object and layer: a
        single add broadcast over the batch runs strided and unvectorised (16 ms a frame at 100 objects on an
        H200 against ~4 ms of memory traffic)."""
        for keys, table in zip(self.keys, self.tables, strict=True):
            for b in range(keys.shape[0]):
                keys[b, :, : self.spatial_tokens].add_(table[0])


class TrackingGraphs:
    """Runs tracking steps on static buffers per layout, as CUDA graphs where the device allows.

    model / kv_cache: the session's model and its memory key/value cache (required: the graph reads memories as
    cached keys and values); fill_hole_area: as the tracker's. max_graphs: layouts kept at once (least recently
    used dropped, with their device memory). fuse: run memory attention's element-wise chains as ``FusedOps``
    (compiled on CUDA; the same operations in fewer passes) — by default on CUDA for batches of ``FUSE_MIN_BATCH``
    objects or more, where those passes cost more than attention itself; ``True`` for every batch, ``False`` never.
    """

    def __init__(self, model: SAM2Model, kv_cache: MemoryKVCache, *, fill_hole_area: int,
                 use_graphs: bool | None = None, max_graphs: int = 3, fuse: bool | None = None) -> None:
        self.model = model
        self.fuse = fuse
        self._ops: dict[bool, FusedOps] = {}
        self.kv_cache = kv_cache
        self.fill_hole_area = fill_hole_area
        self.use_graphs = use_graphs
        self.max_graphs = max_graphs
        self.eager_first = True  # a layout that is not full runs eagerly (the growing memory of a pass's start)
        self._layouts: OrderedDict[tuple, _Buffers] = OrderedDict()
        self.captures = 0  # how many graphs were captured (for tests and stats)
        self.replays = 0
        self.static_steps = 0  # steps run on static buffers (replayed or not)
        self._ring: list[tuple[torch.Tensor | None, torch.cuda.Event | None]] = [(None, None)] * 4
        self._ring_index = 0

    def run(
        self,
        features: FrameFeatures,
        memories: Sequence[Sequence[tuple[int, Callable[[], torch.Tensor]]]],
        slots: tuple[int, ...],
        pointers: Sequence[PointerMemory],
        memory_pos: torch.Tensor,
        *,
        num_frames: int,
        full: bool = True,
    ) -> StepOutputs | None:
        """One tracking step of B objects, or None where this layout has no buffers yet and is not ``full`` (with
        ``eager_first``): the caller runs its eager step.

        features: the frame's (batch 1); memories: per spatial memory (in slot order), per object
        (vault id, a function giving its features (1, mem_dim, h, w), called only if not cached); slots: their
        temporal slots; pointers: per pointer, (B, C) pointers and per-object distances; memory_pos:
        (1, mem_dim, h, w).
        """
        batch = len(memories[0]) if memories else pointers[0].pointer.shape[0]
        bucket = batch_bucket(batch)
        dtype = features.vision.dtype
        key = (bucket, slots, len(pointers), dtype, tuple(features.vision.shape[-2:]))
        if key not in self._layouts and self.eager_first and not full:
            return None
        feat_hw = tuple(features.vision.shape[-2:])
        cache = self.kv_cache
        bases = [[cache.base(mid, None if mid in cache else get(), memory_pos, feat_hw, dtype) for mid, get in objs]
                 for objs in memories]
        buffers = self._layouts.get(key)
        if buffers is None:
            if not self._fits(bases, len(slots), bucket, len(pointers), features.vision):
                return None  # eager steps: no static copy of every memory's keys and values
            buffers = self._new_buffers(key, features, bases, slots, len(pointers), bucket, feat_hw)
        self._layouts.move_to_end(key)
        self._fill(buffers, features, bases, pointers, batch)
        if buffers.graph is None and self._graphs_on(features.vision):
            self._capture(buffers, memory_pos, num_frames)
            self._fill(buffers, features, bases, pointers, batch)  # the warm-ups added the slot encodings
        self.static_steps += 1
        if buffers.graph is not None:
            buffers.graph.replay()
            self.replays += 1
            out = buffers.outputs
        else:
            out = self._core(buffers, memory_pos, num_frames)
        values = out.memory_kv[0][1][:batch].clone()  # shared by the layers
        return StepOutputs(
            out.low_res_masks[:batch].clone(), out.obj_ptr[:batch].clone(), out.object_score[:batch].clone(),
            out.memory[:batch].clone(), [(k[:batch].clone(), values) for k, _ in out.memory_kv],
        )

    def clear(self) -> None:
        self._layouts.clear()

    # -- internals -----------------------------------------------------------------------------------------
    def fused_ops(self, batch: int, x: torch.Tensor) -> FusedOps | None:
        """The fused element-wise chains a step of ``batch`` objects on features like x runs (CUDA, from
        ``FUSE_MIN_BATCH`` objects, unless ``fuse`` says otherwise), or None."""
        on = x.is_cuda and batch >= FUSE_MIN_BATCH if self.fuse is None else self.fuse
        if not on:
            return None
        if x.is_cuda not in self._ops:
            self._ops[x.is_cuda] = FusedOps(compile=x.is_cuda)
        return self._ops[x.is_cuda]

    def _graphs_on(self, x: torch.Tensor) -> bool:
        return x.device.type == "cuda" if self.use_graphs is None else bool(self.use_graphs and x.is_cuda)

    def _fits(self, bases, num_spatial: int, bucket: int, num_pointers: int, like: torch.Tensor) -> bool:
        """Whether a layout's static buffers (keys and values of every memory, twice over with what the graph
        holds) fit in half of the device's free memory; where they do not, the eager step runs instead."""
        if not like.is_cuda:
            return True
        k, v = bases[0][0][0]
        tokens = num_spatial * k.shape[-2] + self._pointer_token_count(num_pointers)
        channels = len(self.model.memory_attention.layers) * k.shape[-1] + v.shape[-1]
        needed = 2 * bucket * tokens * channels * k.element_size()
        free, _ = torch.cuda.mem_get_info(like.device)
        free += torch.cuda.memory_reserved(like.device) - torch.cuda.memory_allocated(like.device)  # cached blocks
        return needed < free // 2

    def _new_buffers(self, key, features, bases, slots, num_pointers, bucket, feat_hw) -> _Buffers:
        if not bases:
            raise ValueError("a graphed tracking step needs at least one spatial memory")
        first = bases[0][0]
        tables = self.kv_cache.slot_tables(slots, feat_hw, first[0][0].dtype)
        buffers = _Buffers(features, first, tables, batch=bucket, num_spatial=len(slots), num_pointers=num_pointers,
                           pointer_tokens=self._pointer_token_count(num_pointers), channels=self.model.config.d_model)
        self._layouts[key] = buffers
        while len(self._layouts) > self.max_graphs:
            self._layouts.popitem(last=False)
        return buffers

    def _pointer_token_count(self, num_pointers: int) -> int:
        return num_pointers * tokens_per_pointer(self.model.config.d_model, self.model.config.mem_dim)

    def _fill(self, buffers: _Buffers, features: FrameFeatures, bases, pointers: Sequence[PointerMemory],
              batch: int) -> None:
        fill_features(buffers.features, features)
        num_layers, num_spatial, bucket = len(buffers.tables), len(bases), buffers.pointers.shape[1]
        sources = [bases[j][min(b, batch - 1)][layer][0]
                   for layer in range(num_layers) for b in range(bucket) for j in range(num_spatial)]
        sources += [bases[j][min(b, batch - 1)][0][1] for b in range(bucket) for j in range(num_spatial)]
        torch._foreach_copy_(buffers.dst, sources)
        if pointers:
            stacked = torch.stack([p.pointer for p in pointers])  # (P, B, C)
            buffers.pointers[:, :batch].copy_(stacked)
            distances = torch.tensor([per_object_distances(p.frame_distance, batch) for p in pointers],
                                     dtype=torch.float32)
            staged, uploaded = self._staged(distances)
            buffers.distances[:, :batch].copy_(staged, non_blocking=True)
            if uploaded is not None:
                uploaded.record()

    def _staged(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.cuda.Event | None]:
        """``values`` in pinned host memory (a ring of buffers, each reused only once its last upload is done), so
        the upload does not wait for the GPU (an upload from pageable memory synchronises the stream first)."""
        if not torch.cuda.is_available() or not self.kv_cache.maskmem_tpos_enc.is_cuda:
            return values, None
        slot = self._ring_index = (self._ring_index + 1) % len(self._ring)
        buffer, event = self._ring[slot]
        if buffer is None or buffer.shape != values.shape:
            buffer = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
        elif event is not None:
            event.synchronize()
        buffer.copy_(values)
        event = torch.cuda.Event()
        self._ring[slot] = (buffer, event)
        return buffer, event

    def _capture(self, buffers: _Buffers, memory_pos: torch.Tensor, num_frames: int) -> None:
        buffers.graph, buffers.outputs = capture_graph(lambda: self._core(buffers, memory_pos, num_frames))
        self.captures += 1

    def _core(self, buffers: _Buffers, memory_pos: torch.Tensor, num_frames: int) -> StepOutputs:
        """The step on the static buffers (what the graph captures): memory attention, heads, memory encoder,
        hole filling and the new memory's key/value projection."""
        model, cfg = self.model, self.model.config
        batch, static = buffers.pointers.shape[1], buffers.features
        c, h, w = static.vision.shape[1:]

        spatial = buffers.spatial_tokens
        buffers.add_slot_encodings()
        if buffers.num_pointers:
            tokens = assemble_memory_tokens(
                (), [PointerMemory(buffers.pointers[j], 0) for j in range(buffers.num_pointers)],
                maskmem_tpos_enc=model.maskmem_tpos_enc, obj_ptr_tpos_proj=model.obj_ptr_tpos_proj,
                max_pointer_distance=min(num_frames, cfg.max_obj_ptrs_in_encoder) - 1,
                add_tpos_enc_to_obj_ptrs=cfg.add_tpos_enc_to_obj_ptrs,
                proj_tpos_enc_in_obj_ptrs=cfg.proj_tpos_enc_in_obj_ptrs, dtype=static.vision.dtype,
                pointer_distances=buffers.distances,
            )
            ptr, ptr_pos = tokens.memory.transpose(0, 1), tokens.memory_pos.transpose(0, 1)
            for layer, module in enumerate(model.memory_attention.layers):
                attn = module.cross_attn_image
                buffers.keys[layer][:, :, spatial:] = attn.separate_heads(attn.k_proj(ptr + ptr_pos))
            buffers.values[:, :, spatial:] = model.memory_attention.unprojected_values(ptr)
        frame = static.expand(batch)
        curr = frame.vision.flatten(2).permute(2, 0, 1)
        curr_pos = frame.vision_pos.flatten(2).permute(2, 0, 1)
        kv = [(keys, buffers.values) for keys in buffers.keys]
        ops = self.fused_ops(batch, static.vision)
        with nullcontext() if ops is None else ops.running():
            pix = model.memory_attention.attend_memory(curr, curr_pos, kv, (h, w), ops)
            pix = pix.permute(1, 2, 0).reshape(batch, c, h, w)
            step = model.heads_and_memory(frame, pix)
        heads, memory = step.heads, step.memory_features.to(MEMORY_DTYPE)
        rotation = model.memory_attention.rotation((h, w), memory.device)
        new_kv = project_memory_bases(model.memory_attention, memory.to(static.vision.dtype), memory_pos, rotation)
        return StepOutputs(
            fill_holes(heads.low_res_masks.float(), self.fill_hole_area), heads.obj_ptr.float(),
            heads.object_score_logits[:, 0].float(), memory, new_kv,
        )
