"""The training forward pass over a batch of clips: the inference model's own modules and memory rule.

Every step goes through ``SAM2Model``'s public methods (``encode_image``, ``condition_on_memory``, ``run_heads``,
``mask_as_output``, ``encode_memory``) and the memories each frame attends to are chosen by the engine's memory-bank
rule (``engine.memory_bank.plan_memory``), exactly as the tracking session chooses them; only gradients are kept.
So for the same prompts this pass gives what the session gives (``tests/train/test_forward.py``).

Frames are processed as Meta trains (``SAM2Train.forward_tracking``): the initial conditioning frames first, with
no memory, then every other frame in order; corrective clicks are added one at a time on the frames the schedule
names, each with the previous logits as mask input, and a corrected frame becomes a conditioning frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from napari_sam2.engine.memory_bank import COND, plan_memory
from napari_sam2.engine.state import ObjectTrack
from napari_sam2.engine.tracker import PREV_LOGITS_CLAMP
from napari_sam2.model import FrameFeatures, HeadOutput, PointerMemory, SAM2Model, SpatialMemory

from .interaction import InteractionRecipe, PromptSchedule, sample_box, sample_correction, sample_first_click


@dataclass(frozen=True)
class InitialPrompt:
    """The prompt of N objects on an initial conditioning frame: clicks/box corners (coords (N, P, 2) as (x, y),
    labels (N, P)) or a mask (N, S, S) bool."""

    coords: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    mask: torch.Tensor | None = None


class Prompter(Protocol):
    """Where the prompts of a clip come from: sampled from the ground truth in training, fixed in tests."""

    def initial(self, frame: int, gt: torch.Tensor) -> InitialPrompt: ...

    def correction(self, frame: int, gt: torch.Tensor, pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class SimulatedUser:
    """Prompts sampled from the ground truth as Meta's training does (see ``interaction``)."""

    schedule: PromptSchedule
    generator: torch.Generator
    recipe: InteractionRecipe = field(default_factory=InteractionRecipe)

    def initial(self, frame: int, gt: torch.Tensor) -> InitialPrompt:
        if not self.schedule.use_points:
            return InitialPrompt(mask=gt)
        if self.schedule.use_box:
            coords, labels = sample_box(gt, self.generator, self.recipe)
        else:
            coords, labels = sample_first_click(gt, self.generator, self.recipe)
        return InitialPrompt(coords, labels)

    def correction(self, frame: int, gt: torch.Tensor, pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return sample_correction(gt, pred, self.generator, self.recipe)


@dataclass
class FrameSteps:
    """One frame's predictions for the N objects: ``steps`` every decoder output that is trained (the first
    prediction, then one per corrective click; empty where a mask prompt is taken as the output); ``final`` the
    output kept (its memory is what later frames attend to)."""

    frame: int
    steps: list[HeadOutput]
    final: HeadOutput
    is_cond: bool


@dataclass
class _Memory:
    features: torch.Tensor  # (N, mem_dim, h, w)
    obj_ptr: torch.Tensor  # (N, C)


def _select(features: FrameFeatures, index: torch.Tensor) -> FrameFeatures:
    def pick(x: torch.Tensor) -> torch.Tensor:
        return x.index_select(0, index)

    return FrameFeatures(pick(features.vision), pick(features.vision_pos),
                         (pick(features.high_res[0]), pick(features.high_res[1])))


def forward_clips(
    model: SAM2Model,
    images: torch.Tensor,
    masks: torch.Tensor,
    schedule: PromptSchedule,
    prompter: Prompter,
    *,
    num_frames: int | None = None,
    memory_dtype: torch.dtype | None = None,
) -> list[FrameSteps]:
    """Run B clips with K objects each through the model, in processing order.

    images: (B, T, 3, S, S) normalised model input; masks: (B, T, K, S, S) bool ground truth (read only by the
    prompter); objects are flattened clip-major to N = B·K. num_frames: the stack length the memory encodings assume
    (default T, as in training). memory_dtype: round stored spatial memories to this dtype (the session keeps them
    in bfloat16) — None keeps full precision.
    """
    b, t_len, k = images.shape[0], images.shape[1], masks.shape[2]
    n = b * k
    num_frames = t_len if num_frames is None else num_frames
    features = model.encode_image(images.flatten(0, 1))
    clip_of_object = torch.arange(b, device=images.device).repeat_interleave(k)
    gt = masks.permute(1, 0, 2, 3, 4).reshape(t_len, n, *masks.shape[-2:])
    track = ObjectTrack(obj_id=0)  # frame keys only: which frames are conditioning / tracked, for plan_memory
    memories: dict[int, _Memory] = {}
    memory_pos: torch.Tensor | None = None
    results: list[FrameSteps] = []
    for frame in schedule.processing_order(t_len):
        feats = _select(features, clip_of_object * t_len + frame)
        is_init = frame in schedule.init_cond_frames
        steps: list[HeadOutput] = []
        coords = labels = None
        if is_init:
            prompt = prompter.initial(frame, gt[frame])
            if prompt.mask is not None:
                heads = model.mask_as_output(feats.vision, feats.high_res, prompt.mask[:, None].float())
                pix_feat = None
            else:
                coords, labels = prompt.coords, prompt.labels
                pix_feat = model.condition_on_memory(feats, (), (), num_frames=num_frames)
                heads = model.run_heads(pix_feat, feats.high_res, point_coords=coords, point_labels=labels,
                                        multimask_output=model.use_multimask(True, labels.shape[1]))
                steps.append(heads)
        else:
            plan = plan_memory(track, frame, reverse=False, num_frames=num_frames, config=model.config)
            spatial = [SpatialMemory(memories[f].features, memory_pos, slot) for f, slot, _ in plan.spatial]
            pointers = [PointerMemory(memories[f].obj_ptr, distance) for f, distance, _ in plan.pointers]
            pix_feat = model.condition_on_memory(feats, spatial, pointers, num_frames=num_frames)
            heads = model.run_heads(pix_feat, feats.high_res, multimask_output=model.use_multimask(False, 0))
            steps.append(heads)
        corrected = frame in schedule.frames_to_correct and pix_feat is not None
        if corrected:
            for _ in range(schedule.corrections_per_frame):
                with torch.no_grad():
                    click, click_label = prompter.correction(frame, gt[frame], heads.high_res_masks[:, 0] > 0)
                coords = click if coords is None else torch.cat([coords, click], 1)
                labels = click_label if labels is None else torch.cat([labels, click_label], 1)
                prev = heads.low_res_masks.clamp(-PREV_LOGITS_CLAMP, PREV_LOGITS_CLAMP)
                heads = model.run_heads(pix_feat, feats.high_res, point_coords=coords, point_labels=labels,
                                        mask_inputs=prev, multimask_output=model.use_multimask(is_init,
                                                                                              labels.shape[1]))
                steps.append(heads)
        is_cond = is_init or corrected
        # a prompted frame's memory is encoded from its binarised mask, as the session encodes prompt outputs
        mem, pos = model.encode_memory(feats.vision, heads.high_res_masks, heads.object_score_logits,
                                       is_mask_from_points=is_cond)
        if memory_dtype is not None:
            mem = mem.to(memory_dtype).to(mem.dtype)
        memory_pos = pos[:1] if memory_pos is None else memory_pos
        memories[frame] = _Memory(mem, heads.obj_ptr)
        (track.cond if is_cond else track.non_cond)[frame] = COND  # type: ignore[assignment]
        track.tracked[frame] = False
        results.append(FrameSteps(frame, steps, heads, is_cond))
    return results


def final_masks(results: Sequence[FrameSteps], num_frames: int) -> torch.Tensor:
    """The kept low-resolution logits of every frame in frame order: (T, N, 1, S/4, S/4)."""
    by_frame = {r.frame: r.final.low_res_masks for r in results}
    return torch.stack([by_frame[t] for t in range(num_frames)])
