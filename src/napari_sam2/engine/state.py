"""The session's state, one owner per piece: prompts and per-frame outputs of each object.

Mirrors what Meta's video predictor keeps in its ``inference_state`` dict of dicts
(sam2/sam2_video_predictor.py), as small typed classes: an object's conditioning (prompted) frames,
its tracked frames, and the outputs of prompts not yet consolidated into its memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class PointPrompt:
    """Clicks (and box corners) of one object on one frame, in model-input pixels.

    coords: (1, P, 2) float32 as (x, y); labels: (1, P) int32 (1 positive, 0 negative, 2/3 box corners).
    """

    coords: torch.Tensor
    labels: torch.Tensor

    def extended(self, other: PointPrompt) -> PointPrompt:
        return PointPrompt(torch.cat([self.coords, other.coords], 1), torch.cat([self.labels, other.labels], 1))


@dataclass
class FrameOutput:
    """One object's result on one frame (the reference's compact per-frame output).

    pred_masks_id: vault id of the (1, 1, S/4, S/4) float32 low-resolution logits (after hole filling);
    memory_id: vault id of the (1, mem_dim, h, w) bfloat16 spatial memory, None until encoded;
    obj_ptr: (1, C) float32 and object_score: 0-d float32, the object-score logit (> 0: visible), both on the
    compute device (a few bytes each; reading them on the host would stall the GPU every frame).
    """

    pred_masks_id: int
    obj_ptr: torch.Tensor
    object_score: torch.Tensor
    memory_id: int | None = None


@dataclass
class ObjectTrack:
    """Everything the session knows about one object."""

    obj_id: int
    points: dict[int, PointPrompt] = field(default_factory=dict)
    masks: dict[int, torch.Tensor] = field(default_factory=dict)  # frame → (1, 1, S, S) {0, 1} float32
    cond: dict[int, FrameOutput] = field(default_factory=dict)  # conditioning (prompted) frames
    non_cond: dict[int, FrameOutput] = field(default_factory=dict)  # tracked frames
    pending_cond: dict[int, FrameOutput] = field(default_factory=dict)  # prompt outputs not yet in memory
    pending_non_cond: dict[int, FrameOutput] = field(default_factory=dict)
    tracked: dict[int, bool] = field(default_factory=dict)  # frame → tracked backwards?

    def pending(self, is_cond: bool) -> dict[int, FrameOutput]:
        return self.pending_cond if is_cond else self.pending_non_cond

    def output_for_display(self, frame: int, is_cond: bool) -> FrameOutput | None:
        """What the object shows on a frame right after a prompt (``_consolidate_temp_output_across_obj``)."""
        return self.pending(is_cond).get(frame) or self.cond.get(frame) or self.non_cond.get(frame)

    def latest_output(self, frame: int) -> FrameOutput | None:
        """The newest output on a frame: a pending prompt first, then the consolidated ones."""
        for store in (self.pending_cond, self.pending_non_cond, self.cond, self.non_cond):
            if frame in store:
                return store[frame]
        return None

    def prompted_frames(self) -> list[int]:
        return sorted(set(self.points) | set(self.masks))

    def all_outputs(self):
        for store in (self.cond, self.non_cond, self.pending_cond, self.pending_non_cond):
            yield from store.values()
