"""AdamW as Meta trains SAM 2: weight decay except on biases, norms and embeddings, layer-wise learning-rate decay on
the image encoder's trunk, linear warm-up then a cosine schedule down to a tenth of the start."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

NO_DECAY_NAMES = ("pos_embed", "no_mem_embed", "no_mem_pos_enc", "no_obj_ptr", "no_obj_embed_spatial",
                  "maskmem_tpos_enc", "embeddings", "_embed.weight", "mask_tokens", "iou_token", "obj_score_token")


@dataclass(frozen=True)
class OptimiserSettings:
    """lr: the heads' learning rate; vision_lr: the image encoder's (the trunk's last block; earlier blocks get
    ``layer_decay`` per block less); warmup_steps, then cosine to ``final_lr_fraction`` × lr at ``total_steps``."""

    lr: float
    vision_lr: float
    total_steps: int
    weight_decay: float = 0.1
    layer_decay: float = 0.9
    warmup_steps: int = 0
    final_lr_fraction: float = 0.1
    clip_grad_norm: float = 0.1


def _decays(name: str, param: nn.Parameter) -> bool:
    if param.ndim <= 1 or name.endswith(".bias"):
        return False  # biases, LayerNorm and GroupNorm weights, learned scalars
    return not any(key in name for key in NO_DECAY_NAMES)


def _trunk_depth(name: str, num_blocks: int) -> int:
    """0 for the patch and position embeddings, i + 1 for trunk block i, num_blocks + 1 elsewhere (the neck)."""
    parts = name.split(".")
    if "blocks" in parts:
        return int(parts[parts.index("blocks") + 1]) + 1
    if name.startswith("image_encoder.trunk."):
        return 0
    return num_blocks + 1


def parameter_groups(model: nn.Module, settings: OptimiserSettings) -> list[dict]:
    """Parameter groups with their own ``lr`` and ``weight_decay`` (and ``lr_scale`` kept for the scheduler)."""
    num_blocks = len(model.image_encoder.trunk.blocks)
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("image_encoder."):
            depth = _trunk_depth(name, num_blocks)
            lr = settings.vision_lr * settings.layer_decay ** (num_blocks + 1 - depth)
        else:
            lr = settings.lr
        decay = settings.weight_decay if _decays(name, param) else 0.0
        groups.setdefault((lr, decay), []).append(param)
    return [{"params": params, "lr": lr, "initial_lr": lr, "weight_decay": decay}
            for (lr, decay), params in sorted(groups.items(), key=lambda kv: kv[0], reverse=True)]


def lr_factor(step: int, settings: OptimiserSettings) -> float:
    """The schedule's multiplier of every group's initial learning rate at ``step`` (0-based)."""
    if settings.warmup_steps and step < settings.warmup_steps:
        return (step + 1) / settings.warmup_steps
    span = max(1, settings.total_steps - settings.warmup_steps)
    progress = min(1.0, (step - settings.warmup_steps) / span)
    low = settings.final_lr_fraction
    return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimiser(model: nn.Module, settings: OptimiserSettings):
    """(AdamW, LambdaLR) for ``model``; both have ``state_dict`` for exact resumes."""
    fused = next(model.parameters()).device.type == "cuda"
    optimiser = torch.optim.AdamW(parameter_groups(model, settings), betas=(0.9, 0.999), fused=fused)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: lr_factor(step, settings))
    return optimiser, scheduler
