"""Post-processing of mask logits: hole filling and resizing to the frame's own resolution."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

HOLE_FILL_SCORE = 0.1  # the logit given to filled holes (as in sam2/utils/misc.py)
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def fill_holes(mask_logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Fill background holes of at most ``max_area`` pixels in (B, 1, h, w) logits with a small positive score.

    A hole is an 8-connected component of pixels with logit ≤ 0 (``fill_holes_in_mask_scores`` in
    sam2/utils/misc.py, which needs a CUDA extension; this works on every device). Components touching the
    border count as holes too, as in the reference. Runs on the low-resolution logits, so it is cheap.
    """
    if max_area <= 0:
        return mask_logits
    background = (mask_logits <= 0).cpu().numpy()
    is_hole = np.zeros_like(background)
    for b in range(background.shape[0]):
        labels, count = ndimage.label(background[b, 0], structure=_EIGHT_CONNECTED)
        if count == 0:
            continue
        areas = np.bincount(labels.ravel(), minlength=count + 1)
        small = areas <= max_area
        small[0] = False
        is_hole[b, 0] = small[labels]
    if not is_hole.any():
        return mask_logits
    hole = torch.from_numpy(is_hole).to(mask_logits.device)
    return torch.where(hole, torch.as_tensor(HOLE_FILL_SCORE, dtype=mask_logits.dtype), mask_logits)


def to_frame_resolution(mask_logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 1, h, w) logits → (B, height, width), bilinear as the reference's video-resolution output."""
    if mask_logits.shape[-2:] != (height, width):
        mask_logits = F.interpolate(mask_logits.float(), size=(height, width), mode="bilinear", align_corners=False)
    return mask_logits[:, 0]
