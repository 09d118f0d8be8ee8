"""Running the model for the session: one object's prompt, or a batch of objects on one frame.

This is where per-frame outputs are made and stored (the reference's ``_run_single_frame_inference``
and ``_run_memory_encoder`` in sam2/sam2_video_predictor.py), with two differences: every object that
needs a frame is computed in one batched forward pass (objects whose memories differ in number share it, with one
cross-attention per memory length), and outputs go to a :class:`TensorVault` instead of staying on the device.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from napari_sam2.model import FrameFeatures, PointerMemory, SAM2Model, SpatialMemory, TrackStepOutput

from .features import FeatureCache
from .memory_bank import MemoryPlan
from .postprocess import fill_holes
from .prompt_graph import PromptGraphs
from .state import FrameOutput, ObjectTrack, PointPrompt
from .step_graph import MEMORY_DTYPE, TrackingGraphs
from .vault import TensorVault

PREV_LOGITS_CLAMP = 32.0


class Tracker:
    """Computes and stores :class:`FrameOutput` s; owns no prompts and no per-object bookkeeping."""

    def __init__(
        self,
        model: SAM2Model,
        features: FeatureCache,
        vault: TensorVault,
        *,
        num_frames: int,
        fill_hole_area: int,
        cache_memory_kv: bool = False,
        step_graphs: bool = False,
    ) -> None:
        self.model = model
        self.features = features
        self.vault = vault
        self.num_frames = num_frames
        self.fill_hole_area = fill_hole_area
        self._memory_pos: torch.Tensor | None = None  # the same for every frame and object
        self.kv_cache = model.new_kv_cache() if cache_memory_kv or step_graphs else None
        self.graphs = (TrackingGraphs(model, self.kv_cache, fill_hole_area=fill_hole_area)
                       if step_graphs else None)
        self.prompt_graphs = PromptGraphs(model, fill_hole_area=fill_hole_area) if step_graphs else None

    def go_lean(self) -> None:
        """Give up what costs device memory beyond one frame's step — the static step buffers and their graphs,
        the prompt graphs, the memories' cached keys and values — and compute as
        ``Session(step_graphs=False, cache_memory_kv=False)`` does from now on (equal up to rounding)."""
        if self.graphs is not None:
            self.graphs.clear()
        if self.prompt_graphs is not None:
            self.prompt_graphs.clear()
        if self.kv_cache is not None:
            self.kv_cache.clear()
        self.graphs = self.prompt_graphs = self.kv_cache = None

    @property
    def device(self) -> torch.device:
        return self.features.device

    # -- prompts (one object, no memory encoding: that waits until propagation) ----------------------------
    def run_prompt(
        self,
        track: ObjectTrack,
        frame: int,
        *,
        is_first_prompt: bool,
        reverse: bool,
        plan: MemoryPlan | None,
        points: PointPrompt | None = None,
        mask: torch.Tensor | None = None,
        prev_logits: torch.Tensor | None = None,
    ) -> FrameOutput:
        """One object's output for its prompts on ``frame``; ``plan`` is None on a first prompt."""
        features = self.features.get(frame)
        if self.prompt_graphs is not None and plan is None and mask is None and points is not None:
            multimask = self.model.use_multimask(is_first_prompt, points.labels.shape[1])
            # clicks go from the host straight into the graph's buffers
            out = self.prompt_graphs.run(features, points.coords, points.labels,
                                         None if prev_logits is None else prev_logits.to(self.device),
                                         multimask=multimask)
            return self._store_outputs(out.low_res_masks, out.object_score, out.obj_ptr)[0]
        spatial, pointers, ids = self._memories([track], [plan]) if plan is not None and mask is None else ((), (), ())
        step = self.model.track_step(
            features,
            spatial=spatial,
            pointers=pointers,
            kv_cache=self.kv_cache,
            memory_ids=ids,
            num_frames=self.num_frames,
            is_first_prompt=is_first_prompt,
            point_coords=None if points is None else points.coords.to(self.device),
            point_labels=None if points is None else points.labels.to(self.device),
            mask=None if mask is None else mask.to(self.device),
            prev_mask_logits=None if prev_logits is None else prev_logits.to(self.device),
            encode_memory=False,
        )
        return self._store(step)[0]

    def encode_memory(self, frame: int, outputs: Sequence[FrameOutput]) -> None:
        """Encode the spatial memory of prompt outputs on one frame, in one batch (``_run_memory_encoder``:
        from the stored low-resolution logits, upsampled, binarised as masks from clicks)."""
        features = self.features.get(frame).expand(len(outputs))
        low = torch.cat([self.vault.get(o.pred_masks_id, self.device) for o in outputs])
        high = F.interpolate(low, size=(self.model.image_size,) * 2, mode="bilinear", align_corners=False)
        scores = torch.stack([o.object_score for o in outputs]).float().reshape(-1, 1).to(self.device)
        memory, pos = self.model.encode_memory(features.vision, high, scores, is_mask_from_points=True)
        self._remember_memory_pos(pos)
        for i, output in enumerate(outputs):
            output.memory_id = self.vault.put(memory[i : i + 1].to(MEMORY_DTYPE))

    # -- propagation ---------------------------------------------------------------------------------------
    def run_tracking_groups(
        self,
        groups: Sequence[tuple[Sequence[ObjectTrack], Sequence[MemoryPlan]]],
        frame: int,
        upcoming: Sequence[int] = (),
    ) -> list[list[FrameOutput]]:
        """Track every object on ``frame``: ``groups`` of (tracks, plans), the plans of a group of one ``layout``
        (memories of one shape). A group whose step runs on static buffers (a CUDA graph) runs alone; the others
        share one pass: memory attention with one cross-attention per group (with the key/value cache; without
        it, memory attention group by group), then the SAM heads and the memory encoder — so objects prompted on
        different frames, whose memories differ in number while a pass starts, are computed together. Returns
        each group's new outputs, in order."""
        if not groups:
            return []
        features = self.features.get(frame, upcoming)
        results: list[list[FrameOutput] | None] = [None] * len(groups)
        eager = []
        for index, (tracks, plans) in enumerate(groups):
            outputs = self._run_static(tracks, features, plans) if self.graphs is not None else None
            if outputs is None:
                eager.append(index)
            results[index] = outputs
        if eager:
            memories = [self._memories(*groups[index]) for index in eager]
            total = sum(len(groups[index][0]) for index in eager)
            # the step graphs' fused chains (CUDA, many objects); with step graphs the memories' keys are cached
            ops = self.graphs.fused_ops(total, features.vision) if self.graphs is not None else None
            with nullcontext() if ops is None else ops.running():
                if len(eager) > 1 and self.kv_cache is not None and all(s or p for s, p, _ in memories):
                    pix_feat = self.model.condition_on_memory_groups(
                        features.expand(total), memories, num_frames=self.num_frames, kv_cache=self.kv_cache,
                        ops=ops)
                else:
                    parts = [self.model.condition_on_memory(
                        features.expand(len(groups[index][0])), spatial, pointers, num_frames=self.num_frames,
                        kv_cache=self.kv_cache, memory_ids=ids, ops=ops)
                        for index, (spatial, pointers, ids) in zip(eager, memories, strict=True)]
                    pix_feat = parts[0] if len(parts) == 1 else torch.cat(parts)
                outputs = self._heads_and_memory(features, pix_feat)
            start = 0
            for index in eager:
                count = len(groups[index][0])
                results[index], start = outputs[start : start + count], start + count
        return results

    def _heads_and_memory(self, features: FrameFeatures, pix_feat: torch.Tensor) -> list[FrameOutput]:
        """``SAM2Model.heads_and_memory`` of a batch's memory-conditioned features (B, C, h, w), stored."""
        step = self.model.heads_and_memory(features.expand(pix_feat.shape[0]), pix_feat)
        self._remember_memory_pos(step.memory_pos_enc)
        return self._store(step)

    def logits(self, output: FrameOutput) -> torch.Tensor:
        """(1, 1, S/4, S/4) float32 low-resolution logits of an output, on the compute device."""
        return self.vault.get(output.pred_masks_id, self.device)

    def prev_logits(self, output: FrameOutput) -> torch.Tensor:
        """An output's logits as the mask input of corrective clicks (clamped to ±32 as the reference)."""
        return torch.clamp(self.logits(output), -PREV_LOGITS_CLAMP, PREV_LOGITS_CLAMP)

    def discard(self, output: FrameOutput | None) -> None:
        if output is not None:
            self.vault.discard(output.pred_masks_id)
            self.vault.discard(output.memory_id)

    # -- internals -----------------------------------------------------------------------------------------
    def _memories(
        self, tracks: Sequence[ObjectTrack], plans: Sequence[MemoryPlan], *, spatial: bool = True
    ) -> tuple[list[SpatialMemory], list[PointerMemory], list[tuple[int, ...]]]:
        """The memories of a batch of tracks, memory j of each object from its own plan (same layout);
        ``spatial=False`` leaves out the spatial memories (their features are not read)."""
        if len({plan.layout for plan in plans}) != 1:
            raise ValueError("a batch of objects needs memory plans of one layout")
        chosen = plans[0].spatial if spatial else ()
        spatial, ids = [], []
        for j, (_, slot, _) in enumerate(chosen):
            outs = [plan.lookup(t, *plan.spatial[j][::2]) for t, plan in zip(tracks, plans, strict=True)]
            ids.append(tuple(o.memory_id for o in outs))
            feats = torch.cat([self.vault.get(o.memory_id, self.device) for o in outs])
            spatial.append(SpatialMemory(feats, self._memory_pos, slot))
        pointers = []
        for j in range(len(plans[0].pointers)):
            picks = [(plan.lookup(t, plan.pointers[j][0], plan.pointers[j][2]), plan.pointers[j][1])
                     for t, plan in zip(tracks, plans, strict=True)]
            distances = tuple(d for _, d in picks)
            pointer = torch.cat([o.obj_ptr for o, _ in picks]).to(self.device)
            pointers.append(PointerMemory(pointer, distances[0] if len(set(distances)) == 1 else distances))
        return spatial, pointers, ids

    def _run_static(
        self, tracks: Sequence[ObjectTrack], features: FrameFeatures, plans: Sequence[MemoryPlan]
    ) -> list[FrameOutput] | None:
        """The step through ``TrackingGraphs`` (static buffers, a CUDA graph on the GPU); None where it does not
        apply (no spatial memory yet, or a layout met for the first time: then the eager step runs)."""
        if not plans[0].spatial or self._memory_pos is None:
            return None
        memories = []
        for j in range(len(plans[0].spatial)):
            per_object = []
            for track, plan in zip(tracks, plans, strict=True):
                frame, _, store = plan.spatial[j]
                memory_id = plan.lookup(track, frame, store).memory_id
                per_object.append((memory_id, functools.partial(self.vault.get, memory_id, self.device)))
            memories.append(per_object)
        _, pointers, _ = self._memories(tracks, plans, spatial=False)
        slots, _ = plans[0].layout
        step = self.graphs.run(features, memories, slots, pointers, self._memory_pos, num_frames=self.num_frames,
                               full=all(plan.full for plan in plans))
        if step is None:
            return None
        outputs = []
        for i in range(len(tracks)):
            memory_id = self.vault.put(step.memory[i : i + 1])
            self.kv_cache.insert(memory_id, [(k[i : i + 1], v[i : i + 1]) for k, v in step.memory_kv])
            outputs.append(FrameOutput(pred_masks_id=self.vault.put(step.low_res_masks[i : i + 1]),
                                       obj_ptr=step.obj_ptr[i : i + 1], object_score=step.object_score[i],
                                       memory_id=memory_id))
        return outputs

    def _remember_memory_pos(self, pos: torch.Tensor | None) -> None:
        if self._memory_pos is None and pos is not None:
            self._memory_pos = pos[:1].clone()

    def _store(self, step: TrackStepOutput) -> list[FrameOutput]:
        """Hole-fill and store a batch's outputs; pointers and scores stay on the device (no sync)."""
        heads = step.heads
        memories = None if step.memory_features is None else step.memory_features.to(MEMORY_DTYPE)
        return self._store_outputs(fill_holes(heads.low_res_masks.float(), self.fill_hole_area),
                                   heads.object_score_logits[:, 0].float(), heads.obj_ptr.float(), memories)

    def _store_outputs(self, preds: torch.Tensor, scores: torch.Tensor, pointers: torch.Tensor,
                       memories: torch.Tensor | None = None) -> list[FrameOutput]:
        """Store a batch's hole-filled logits (B, 1, S/4, S/4), scores (B,), pointers (B, C) float32 and, if
        encoded, memories (B, mem_dim, h, w) in ``MEMORY_DTYPE``."""
        return [
            FrameOutput(
                pred_masks_id=self.vault.put(preds[i : i + 1]),
                obj_ptr=pointers[i : i + 1].clone(),
                object_score=scores[i].clone(),
                memory_id=None if memories is None else self.vault.put(memories[i : i + 1]),
            )
            for i in range(len(scores))
        ]
