"""Meta's SAM 2 (``sam2==1.1.0``, the ``test`` extra) as the reference for differential tests."""

from __future__ import annotations

import pytest

REFERENCE_MISSING = "the reference implementation sam2==1.1.0 is not installed (bash scripts/setup.sh installs it)"

TINY_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"

# our model name → the reference's Hydra config
REFERENCE_CONFIGS = {
    "sam2_hiera_tiny": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_small": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_base_plus": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_large": "configs/sam2/sam2_hiera_l.yaml",
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


def require_reference():
    """Import the reference package or skip the calling test, saying why."""
    return pytest.importorskip("sam2.build_sam", reason=REFERENCE_MISSING)


def build_reference_predictor(config: str = TINY_CONFIG, image_size: int = 512, seed: int = 0):
    """Meta's ``SAM2VideoPredictor`` on the CPU in float32, random weights drawn with ``seed``."""
    import torch

    build_sam = require_reference()
    torch.manual_seed(seed)
    return build_sam.build_sam2_video_predictor(
        config, None, device="cpu", hydra_overrides_extra=[f"++model.image_size={image_size}"]
    )


def relative_error(ours, theirs) -> float:
    """max |ours − theirs| / max |theirs| (0 for two all-zero tensors)."""
    ours, theirs = ours.detach().double(), theirs.detach().double()
    assert ours.shape == theirs.shape, f"shape {tuple(ours.shape)} != reference {tuple(theirs.shape)}"
    scale = theirs.abs().max().item()
    diff = (ours - theirs).abs().max().item()
    return diff / scale if scale > 0 else diff
