"""SAM 2's training losses (Meta's ``MultiStepMultiMasksAndIous``): focal ×20 + dice ×1 on masks, L1 on the
predicted IoU ×1 for every candidate, object-score BCE ×1.

With several candidate masks, the mask losses go through the candidate with the lowest focal + dice loss. Mask and
IoU losses count only where the object is present in the ground truth; the object-score loss counts always. Each
loss is summed over objects and divided by the number of objects (of the whole batch), then summed over frames and
correction steps by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0


@dataclass(frozen=True)
class LossWeights:
    mask: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    object_score: float = 1.0


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sigmoid focal loss per mask: logits, target (N, M, H, W) → (N, M), mean over pixels."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    alpha_t = FOCAL_ALPHA * target + (1 - FOCAL_ALPHA) * (1 - target)
    return (alpha_t * ce * (1 - p_t) ** FOCAL_GAMMA).flatten(2).mean(-1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − soft Dice per mask: logits, target (N, M, H, W) → (N, M)."""
    prob = logits.sigmoid().flatten(2)
    target = target.flatten(2)
    return 1 - (2 * (prob * target).sum(-1) + 1) / (prob.sum(-1) + target.sum(-1) + 1)


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of the binarised masks (logit > 0) with the target: (N, M, H, W) → (N, M); 1 where both are empty."""
    pred = (logits > 0).flatten(2)
    gt = target.flatten(2) > 0.5
    inter = (pred & gt).sum(-1).float()
    union = (pred | gt).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


@dataclass
class StepLoss:
    """Weighted loss terms of one prediction step, already divided by the batch's number of objects."""

    mask: torch.Tensor
    dice: torch.Tensor
    iou: torch.Tensor
    object_score: torch.Tensor

    def total(self, weights: LossWeights) -> torch.Tensor:
        return (weights.mask * self.mask + weights.dice * self.dice + weights.iou * self.iou
                + weights.object_score * self.object_score)

    def __add__(self, other: StepLoss) -> StepLoss:
        return StepLoss(self.mask + other.mask, self.dice + other.dice, self.iou + other.iou,
                        self.object_score + other.object_score)


def step_loss(
    multimask_logits: torch.Tensor,
    predicted_ious: torch.Tensor,
    object_score_logits: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    num_objects: float,
    weights: LossWeights,
) -> StepLoss:
    """The loss of one step for N objects.

    multimask_logits: (N, M, S, S) candidate mask logits; predicted_ious: (N, M); object_score_logits: (N, 1);
    target: (N, S, S) bool ground truth; valid: (N,) bool, False for padding objects (they count nowhere).
    """
    target_f = target[:, None].float().expand_as(multimask_logits)
    logits = multimask_logits.float()
    focal = focal_loss(logits, target_f)
    dice = dice_loss(logits, target_f)
    best = torch.argmin(weights.mask * focal + weights.dice * dice, dim=1, keepdim=True)
    focal, dice = focal.gather(1, best)[:, 0], dice.gather(1, best)[:, 0]
    actual_iou = mask_iou(logits, target_f)
    iou = (predicted_ious.float() - actual_iou).abs().mean(1)
    present = target.flatten(1).any(1).float()
    score = F.binary_cross_entropy_with_logits(object_score_logits.float()[:, 0], present, reduction="none")
    keep = valid.float()
    scale = 1.0 / max(num_objects, 1.0)
    return StepLoss(
        mask=(focal * present * keep).sum() * scale,
        dice=(dice * present * keep).sum() * scale,
        iou=(iou * present * keep).sum() * scale,
        object_score=(score * keep).sum() * scale,
    )
