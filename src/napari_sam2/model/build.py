"""``build_sam2``: a SAM 2 model by name, with random weights or a Meta checkpoint file."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

from .checkpoint import load_checkpoint_into, state_dict_mismatch
from .config import MODEL_NAMES, get_config
from .sam2 import SAM2Model


def build_sam2(
    name: str,
    checkpoint: str | Path | None = None,
    *,
    device: str | torch.device = "cpu",
    image_size: int | None = None,
) -> SAM2Model:
    """Build SAM 2 model ``name`` (one of ``MODEL_NAMES``) in eval mode.

    ``checkpoint=None`` gives random initialisation (never a download: see ``fetch_checkpoint``); a path
    loads Meta's checkpoint file with strict key matching and raises ``CheckpointError`` naming the expected
    model and the first mismatching keys. ``image_size`` overrides the input resolution (default 1024;
    a multiple of 32 — 512 and 256 work with the same weights).
    """
    config = get_config(name, image_size)
    model = SAM2Model(config)
    if checkpoint is not None:
        load_checkpoint_into(model, checkpoint, name, guess=guess_model_name)
    return model.to(device).eval()


@cache
def _signature(name: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return SAM2Model(get_config(name)).state_dict()


def guess_model_name(state: dict[str, torch.Tensor]) -> str | None:
    """The model whose keys and shapes a state dict has exactly, if any (cheap: built on the meta device)."""
    for name in MODEL_NAMES:
        if not state_dict_mismatch(_signature(name), state):
            return name
    return None
