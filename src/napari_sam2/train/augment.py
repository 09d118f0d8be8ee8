"""Augmenting a batch of clips on its device: the same transform on every frame of a clip, independent across clips.

Geometry (one affine map per clip, through ``affine_grid``/``grid_sample``: bilinear for images, nearest for masks):
horizontal and vertical flips, rot90, and with some probability a rotation (≤ 25°), a shear (≤ 20°) and a shift.
Intensity (per clip): gamma, contrast and brightness, Gaussian blur of random sigma, Gaussian noise (drawn anew for
every pixel of every frame). Then the model input as inference prepares it (``engine.frames.FramePreparer``):
grey replicated to 3 channels, ImageNet mean and std.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from napari_sam2.engine.frames import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class AugmentSettings:
    """Probabilities and ranges of each augmentation (Meta's SAM 2.1 recipe: flips, rotation ≤ 25°, shear ≤ 20°,
    colour jitter; microscopy adds vertical flips, rot90, gamma, blur and noise)."""

    flip_prob: float = 0.5  # each of horizontal and vertical
    rot90: bool = True
    affine_prob: float = 0.5
    max_rotation_deg: float = 25.0
    max_shear_deg: float = 20.0
    max_shift: float = 0.1  # fraction of the side
    gamma_prob: float = 0.5
    gamma_range: tuple[float, float] = (0.6, 1.6)
    contrast_prob: float = 0.5
    contrast_range: tuple[float, float] = (0.7, 1.3)
    max_brightness: float = 0.1
    blur_prob: float = 0.25
    blur_sigma: tuple[float, float] = (0.4, 1.5)
    noise_prob: float = 0.3
    noise_sigma: tuple[float, float] = (0.01, 0.08)


DEFAULT_AUGMENT = AugmentSettings()


class _Draws:
    """Random numbers from ``generator`` (on its own device), delivered on ``device``."""

    def __init__(self, generator: torch.Generator, device: torch.device, batch: int) -> None:
        self.generator, self.device, self.batch = generator, device, batch

    def uniform(self, low: float, high: float) -> torch.Tensor:
        """(B,) uniform in [low, high)."""
        u = torch.rand(self.batch, generator=self.generator, device=self.generator.device)
        return (low + (high - low) * u).to(self.device)

    def chance(self, p: float) -> torch.Tensor:
        """(B,) bool, each True with probability ``p``."""
        return self.uniform(0.0, 1.0) < p

    def normal(self, *shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.generator.device).to(self.device)


def _affine(draw: _Draws, s: AugmentSettings) -> torch.Tensor:
    """(B, 2, 3) maps from output to input coordinates (normalised, x then y): flips, rot90, rotation, shear, shift."""
    flip_x = torch.where(draw.chance(s.flip_prob), -1.0, 1.0)
    flip_y = torch.where(draw.chance(s.flip_prob), -1.0, 1.0)
    quarter = torch.floor(draw.uniform(0, 4)) if s.rot90 else torch.zeros(draw.batch, device=draw.device)
    on = draw.chance(s.affine_prob).float()
    angle = quarter * (math.pi / 2) + on * draw.uniform(-1, 1) * math.radians(s.max_rotation_deg)
    shear = on * torch.tan(draw.uniform(-1, 1) * math.radians(s.max_shear_deg))
    shift = on[:, None] * torch.stack([draw.uniform(-1, 1), draw.uniform(-1, 1)], dim=1) * (2 * s.max_shift)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # A = flips · rotation · shear, shear = [[1, sh], [0, 1]]
    a00, a01 = cos, cos * shear - sin
    a10, a11 = sin, sin * shear + cos
    rows = torch.stack([torch.stack([flip_x * a00, flip_x * a01], -1), torch.stack([flip_y * a10, flip_y * a11], -1)],
                       dim=1)
    return torch.cat([rows, shift[:, :, None]], dim=2)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x (B, T, S, S) blurred by a Gaussian of ``sigma`` (B,) px per clip (0: unchanged)."""
    b, t, h, w = x.shape
    radius = max(1, int(math.ceil(3 * float(sigma.max()))))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(offsets[None] ** 2) / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
    kernel = torch.where((sigma > 0)[:, None], kernel, (offsets == 0).to(x.dtype)[None])
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(t, dim=0)  # (B·T, taps)
    flat = x.reshape(1, b * t, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=b * t)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernel[:, None, :, None], groups=b * t)
    return flat.reshape(b, t, h, w)


def augment_clip(
    frames: torch.Tensor,
    masks: torch.Tensor,
    *,
    generator: torch.Generator,
    image_size: int,
    settings: AugmentSettings = DEFAULT_AUGMENT,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch of clips and make it model input.

    ``frames`` (B, T, H, W) float in [0, 1] and ``masks`` (B, T, K, H, W) bool, on any device → ``images``
    (B, T, 3, S, S) float32 normalised as inference normalises, ``masks`` (B, T, K, S, S) bool, S = ``image_size``.
    Random numbers come from ``generator`` (best on the tensors' device); the same generator state gives the same
    result.
    """
    b, t, h, w = frames.shape
    k = masks.shape[2]
    size = (image_size, image_size)
    draw = _Draws(generator, frames.device, b)
    x = frames.float()
    m = masks.reshape(b, t * k, h, w).float()
    if (h, w) != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        if k:
            m = (F.interpolate(m, size=size, mode="bilinear", align_corners=False, antialias=True) >= 0.5).float()
        else:
            m = m.new_zeros((b, 0, *size))
    grid = F.affine_grid(_affine(draw, settings), [b, 1, *size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if k:
        m = F.grid_sample(m, grid, mode="nearest", padding_mode="zeros", align_corners=False)

    def per_clip(values: torch.Tensor) -> torch.Tensor:
        return values.view(b, 1, 1, 1)

    gamma = torch.where(draw.chance(settings.gamma_prob),
                        torch.exp(draw.uniform(*(math.log(g) for g in settings.gamma_range))), 1.0)
    x = x.clamp(min=0).pow(per_clip(gamma))
    jitter = draw.chance(settings.contrast_prob)
    contrast = torch.where(jitter, draw.uniform(*settings.contrast_range), 1.0)
    brightness = torch.where(jitter, draw.uniform(-settings.max_brightness, settings.max_brightness), 0.0)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * per_clip(contrast) + mean + per_clip(brightness)
    sigma = torch.where(draw.chance(settings.blur_prob), draw.uniform(*settings.blur_sigma), 0.0)
    if bool((sigma > 0).any()):
        x = _gaussian_blur(x, sigma)
    noise = torch.where(draw.chance(settings.noise_prob), draw.uniform(*settings.noise_sigma), 0.0)
    if bool((noise > 0).any()):
        x = x + per_clip(noise) * draw.normal(b, t, *size)
    return grey_to_model_input(x.clamp(0, 1)), m.reshape(b, t, k, *size) > 0.5


def grey_to_model_input(x: torch.Tensor) -> torch.Tensor:
    """(B, T, S, S) grey in [0, 1] → (B, T, 3, S, S) float32 with ImageNet mean and std, as inference prepares it."""
    b, t = x.shape[:2]
    mean_rgb = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 1, 3, 1, 1)
    std_rgb = torch.tensor(IMAGENET_STD, device=x.device).view(1, 1, 3, 1, 1)
    return ((x.float()[:, :, None].expand(b, t, 3, *x.shape[-2:]) - mean_rgb) / std_rgb).contiguous()
