"""Simulated interaction, as Meta trains SAM 2: which frames are prompted, with what, and corrective clicks.

Per training step (shared by every object of the batch, as in Meta's ``SAM2Train.prepare_prompt_inputs``): 1–2
initial conditioning frames (the clip's first frame, plus a random other one); their prompt is the ground-truth mask
(p = 0.5) or, otherwise, a box (p = 0.5) or one click; with clicks or boxes, 1–2 frames (always the first) receive
7 corrective clicks, one at a time, each sampled uniformly from the error region of the current prediction (from the
ground truth with p = 0.1); every corrected frame becomes a conditioning frame.

Clicks are (x, y) in model-input pixels, as ``SAM2Model.run_heads`` takes them (a pixel's index, like the engine's
conversion from frame pixels at frame size = model size).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

POSITIVE, NEGATIVE, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT = 1, 0, 2, 3


@dataclass(frozen=True)
class InteractionRecipe:
    """Probabilities and counts of the simulated interaction (Meta's SAM 2.1 training values by default)."""

    prob_points: float = 0.5  # clicks or a box rather than the mask on initial conditioning frames
    prob_box: float = 0.5  # among those, a box rather than a click
    max_init_cond_frames: int = 2
    max_frames_to_correct: int = 2
    corrections_per_frame: int = 7
    prob_click_from_gt: float = 0.1
    prob_centre_click: float = 0.5  # first click at the object's centre (as users click) rather than anywhere in it
    box_noise: float = 0.1  # box corners jittered by this fraction of the box side ...
    box_noise_max: float = 20.0  # ... at most this many pixels


@dataclass(frozen=True)
class PromptSchedule:
    """One step's interaction: ``init_cond_frames`` (first is 0) get an initial prompt and no memory; the prompt is
    a mask unless ``use_points``; ``use_box`` makes it a box; ``frames_to_correct`` get corrective clicks."""

    init_cond_frames: tuple[int, ...]
    use_points: bool
    use_box: bool
    frames_to_correct: tuple[int, ...]
    corrections_per_frame: int

    def processing_order(self, num_frames: int) -> list[int]:
        """Initial conditioning frames first, then every other frame in order (``SAM2Train.forward_tracking``)."""
        return [*self.init_cond_frames, *(t for t in range(num_frames) if t not in self.init_cond_frames)]


def sample_schedule(num_frames: int, rng: np.random.Generator, recipe: InteractionRecipe) -> PromptSchedule:
    """A random interaction for a clip of ``num_frames`` frames."""
    num_init = int(rng.integers(1, min(recipe.max_init_cond_frames, num_frames) + 1))
    others = rng.permutation(np.arange(1, num_frames))[: num_init - 1]
    init = (0, *sorted(int(t) for t in others))
    use_points = bool(rng.random() < recipe.prob_points)
    use_box = use_points and bool(rng.random() < recipe.prob_box)
    correct: tuple[int, ...] = ()
    if use_points and recipe.corrections_per_frame > 0:
        count = int(rng.integers(num_init, max(num_init, recipe.max_frames_to_correct) + 1))
        rest = [t for t in range(num_frames) if t not in init]
        extra = rng.permutation(np.array(rest, dtype=int))[: count - num_init] if rest else []
        correct = (*init, *sorted(int(t) for t in extra))
    return PromptSchedule(init, use_points, use_box, correct, recipe.corrections_per_frame)


def _flat_choice(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(N, H, W) non-negative weights → (N,) flat index of one pixel per row, uniform among the largest weights."""
    scores = torch.rand(weights.shape, generator=generator, device=weights.device) * weights.float()
    return scores.flatten(1).argmax(1)


def _to_xy(flat: torch.Tensor, width: int) -> torch.Tensor:
    return torch.stack([flat % width, flat // width], dim=-1).float()


def sample_first_click(
    gt: torch.Tensor, generator: torch.Generator, recipe: InteractionRecipe
) -> tuple[torch.Tensor, torch.Tensor]:
    """One positive click per object: gt (N, H, W) bool → coords (N, 1, 2) (x, y), labels (N, 1) int32.

    With ``prob_centre_click`` the pixel of the mask nearest its centroid, else a uniform pixel of the mask; an
    empty mask gets a negative click anywhere (the object is absent there).
    """
    n, h, w = gt.shape
    uniform = _flat_choice(gt, generator)
    ys = torch.arange(h, device=gt.device, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, device=gt.device, dtype=torch.float32).view(1, 1, w)
    area = gt.flatten(1).sum(1).clamp(min=1).float()
    cy = (gt * ys).flatten(1).sum(1) / area
    cx = (gt * xs).flatten(1).sum(1) / area
    dist = (ys - cy.view(n, 1, 1)) ** 2 + (xs - cx.view(n, 1, 1)) ** 2
    centre = torch.where(gt, dist, torch.inf).flatten(1).argmin(1)
    use_centre = torch.rand(n, generator=generator, device=gt.device) < recipe.prob_centre_click
    flat = torch.where(use_centre, centre, uniform)
    present = gt.flatten(1).any(1)
    labels = torch.where(present, POSITIVE, NEGATIVE).to(torch.int32)
    return _to_xy(flat, w)[:, None], labels[:, None]


def sample_box(
    gt: torch.Tensor, generator: torch.Generator, recipe: InteractionRecipe
) -> tuple[torch.Tensor, torch.Tensor]:
    """The noisy bounding box of each mask: gt (N, H, W) bool → corners (N, 2, 2) (x, y), labels (N, 2) of 2, 3.

    An empty mask gets the whole frame as its box (rare: clips start where their objects are present)."""
    n, h, w = gt.shape
    rows, cols = gt.any(2), gt.any(1)
    iy = torch.arange(h, device=gt.device)
    ix = torch.arange(w, device=gt.device)
    y0 = torch.where(rows, iy, h).min(1).values.clamp(max=h - 1)
    y1 = torch.where(rows, iy, -1).max(1).values.clamp(min=0)
    x0 = torch.where(cols, ix, w).min(1).values.clamp(max=w - 1)
    x1 = torch.where(cols, ix, -1).max(1).values.clamp(min=0)
    empty = ~rows.any(1)
    y0, x0 = torch.where(empty, 0, y0), torch.where(empty, 0, x0)
    y1, x1 = torch.where(empty, h - 1, y1), torch.where(empty, w - 1, x1)
    box = torch.stack([x0, y0, x1, y1], 1).float()
    side = torch.stack([x1 - x0, y1 - y0, x1 - x0, y1 - y0], 1).float()
    bound = (side * recipe.box_noise).clamp(max=recipe.box_noise_max)
    noise = torch.randn(box.shape, generator=generator, device=gt.device) * bound
    box = box + noise
    box[:, 0::2] = box[:, 0::2].clamp(0, w - 1)
    box[:, 1::2] = box[:, 1::2].clamp(0, h - 1)
    corners = torch.stack([torch.minimum(box[:, :2], box[:, 2:]), torch.maximum(box[:, :2], box[:, 2:])], 1)
    labels = torch.tensor([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], dtype=torch.int32, device=gt.device).expand(n, 2)
    return corners, labels.clone()


def sample_correction(
    gt: torch.Tensor, pred: torch.Tensor, generator: torch.Generator, recipe: InteractionRecipe
) -> tuple[torch.Tensor, torch.Tensor]:
    """One corrective click per object: gt, pred (N, H, W) bool → coords (N, 1, 2) (x, y), labels (N, 1).

    Uniform over the error region (missed pixels give a positive click, false ones a negative click); with
    ``prob_click_from_gt``, or where there is no error, a uniform positive click inside the ground truth (a
    negative one anywhere if the object is absent)."""
    n, h, w = gt.shape
    errors = gt ^ pred
    from_gt = torch.rand(n, generator=generator, device=gt.device) < recipe.prob_click_from_gt
    from_gt |= ~errors.flatten(1).any(1)
    region = torch.where(from_gt.view(n, 1, 1), gt, errors)
    region = torch.where(region.flatten(1).any(1).view(n, 1, 1), region, torch.ones_like(region))
    flat = _flat_choice(region, generator)
    labels = gt.flatten(1).gather(1, flat[:, None]).to(torch.int32)  # inside the object → positive
    return _to_xy(flat, w)[:, None], labels
