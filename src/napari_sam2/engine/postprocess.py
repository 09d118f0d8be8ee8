"""Post-processing of mask logits: hole filling and resizing to the frame's own resolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F

HOLE_FILL_SCORE = 0.1  # the logit given to filled holes (as in sam2/utils/misc.py)


def fill_holes(mask_logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Fill background holes of at most ``max_area`` pixels in (B, 1, h, w) logits with a small positive score.

    A hole is an 8-connected component of pixels with logit ≤ 0 (``fill_holes_in_mask_scores`` in
    sam2/utils/misc.py, which needs a CUDA extension). Components touching the border count as holes too, as in
    the reference. Runs on the logits' device with a fixed sequence of tensor operations (no host round trip, no
    data-dependent shapes, so it can be part of a CUDA graph):

    every background pixel starts with its own label (its index + 1) and takes the largest label among its
    8 background neighbours, ``max_area`` times. A component of at most ``max_area`` pixels has a geodesic
    diameter below ``max_area``, so it ends with one label throughout. A label whose pixels all have neighbours of
    that same label is then exactly one whole component, and its pixel count is that component's area; a label
    that still borders another label belongs to a component too large to be a hole.
    """
    if max_area <= 0:
        return mask_logits
    b, _, h, w = mask_logits.shape
    n = h * w
    background = mask_logits <= 0
    index = torch.arange(1, n + 1, device=mask_logits.device, dtype=torch.float32).view(1, 1, h, w)
    zero = torch.zeros((), device=mask_logits.device)
    labels = torch.where(background, index, zero)
    for _ in range(max_area):
        labels = torch.where(background, F.max_pool2d(labels, 3, 1, 1), zero)
    far = torch.full((), float(n + 1), device=mask_logits.device)
    largest = torch.where(background, F.max_pool2d(labels, 3, 1, 1), zero)
    smallest = torch.where(background, -F.max_pool2d(-torch.where(background, labels, far), 3, 1, 1), zero)
    borders_other = background & ((largest != labels) | (smallest != labels))
    key = (labels.long() + torch.arange(b, device=mask_logits.device).view(b, 1, 1, 1) * (n + 1)).flatten()
    area = torch.zeros(b * (n + 1), device=mask_logits.device).scatter_add_(0, key, background.flatten().float())
    open_ = torch.zeros(b * (n + 1), device=mask_logits.device).scatter_reduce_(
        0, key, borders_other.flatten().float(), reduce="amax")
    is_hole = background & (area[key] <= max_area).view_as(background) & (open_[key] == 0).view_as(background)
    return torch.where(is_hole, mask_logits.new_full((), HOLE_FILL_SCORE), mask_logits)


def to_frame_resolution(mask_logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 1, h, w) logits → (B, height, width), bilinear as the reference's video-resolution output."""
    if mask_logits.shape[-2:] != (height, width):
        mask_logits = F.interpolate(mask_logits.float(), size=(height, width), mode="bilinear", align_corners=False)
    return mask_logits[:, 0]
