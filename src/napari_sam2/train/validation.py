"""Validation during training: one centre click per object on a clip's first frame, tracked through the clip, scored
by J (region IoU) and F (boundary F-measure at a 2-pixel tolerance) per object and frame, averaged (J&F)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .forward import InitialPrompt, final_masks, forward_clips
from .interaction import InteractionRecipe, PromptSchedule, sample_first_click

BOUNDARY_TOLERANCE = 2


@dataclass(frozen=True)
class Scores:
    j: float
    f: float

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2


def _boundary(mask: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool → pixels of the mask with a 4-neighbour outside it."""
    m = mask[:, None].float()
    eroded = -F.max_pool2d(-m, kernel_size=3, stride=1, padding=1)
    return (m - eroded)[:, 0] > 0


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    return F.max_pool2d(mask[:, None].float(), 2 * radius + 1, stride=1, padding=radius)[:, 0] > 0


def j_and_f(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mask J and F: pred, gt (N, H, W) bool → (J (N,), F (N,)); both 1 where both masks are empty."""
    inter = (pred & gt).flatten(1).sum(1).float()
    union = (pred | gt).flatten(1).sum(1).float()
    j = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    pb, gb = _boundary(pred), _boundary(gt)
    precision_hits = (pb & _dilate(gb, BOUNDARY_TOLERANCE)).flatten(1).sum(1).float()
    recall_hits = (gb & _dilate(pb, BOUNDARY_TOLERANCE)).flatten(1).sum(1).float()
    n_pb, n_gb = pb.flatten(1).sum(1).float(), gb.flatten(1).sum(1).float()
    precision = torch.where(n_pb > 0, precision_hits / n_pb.clamp(min=1), (n_gb == 0).float())
    recall = torch.where(n_gb > 0, recall_hits / n_gb.clamp(min=1), (n_pb == 0).float())
    f = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-9),
                    torch.zeros_like(precision))
    return j, f


class CentreClicks:
    """The validation user: one click at each object's centre on the first frame, no corrections."""

    def __init__(self) -> None:
        self._recipe = InteractionRecipe(prob_centre_click=1.0)
        self._generator = torch.Generator()

    def initial(self, frame: int, gt: torch.Tensor) -> InitialPrompt:
        if self._generator.device != gt.device:
            self._generator = torch.Generator(gt.device)
        self._generator.manual_seed(0)
        coords, labels = sample_first_click(gt, self._generator, self._recipe)
        return InitialPrompt(coords, labels)

    def correction(self, frame, gt, pred):  # pragma: no cover - the schedule asks for none
        raise RuntimeError("validation makes no corrections")


@torch.no_grad()
def validate(model, images: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor) -> Scores:
    """J and F of B clips (images (B, T, 3, S, S), masks (B, T, K, S, S) bool, valid (B, K)) from one click each,
    over the frames after the first where the object is present, for valid objects."""
    t_len = images.shape[1]
    schedule = PromptSchedule((0,), True, False, (), 0)
    results = forward_clips(model, images, masks, schedule, CentreClicks())
    low = final_masks(results, t_len)[:, :, 0]  # (T, N, s, s)
    size = masks.shape[-1]
    pred = F.interpolate(low.float(), size=(size, size), mode="bilinear", align_corners=False) > 0
    gt = masks.permute(1, 0, 2, 3, 4).flatten(1, 2)  # (T, N, S, S)
    keep = valid.flatten()[None].expand(t_len, -1) & gt.flatten(2).any(2)
    keep[0] = False  # the prompted frame is not a tracking result
    j, f = j_and_f(pred[keep], gt[keep])
    if j.numel() == 0:
        return Scores(float("nan"), float("nan"))
    return Scores(float(j.mean()), float(f.mean()))
