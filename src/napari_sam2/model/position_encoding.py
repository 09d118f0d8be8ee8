"""2D sine/cosine position encoding of a feature map (``PositionEmbeddingSine`` in sam2/modeling/position_encoding.py).

Used by the FPN neck (one encoding per pyramid level) and by the memory encoder. It depends only on the map's
height and width, so it has no parameters and no buffers.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class PositionEmbeddingSine(nn.Module):
    """The "Attention is all you need" sine encoding, applied to the row and the column index of each pixel.

    forward: x (B, *, H, W) → (B, num_pos_feats, H, W), float32. The first half of the channels encodes the row
    (y), the second half the column (x); within each half, channels alternate sin, cos of the same frequency.
    """

    def __init__(
        self,
        num_pos_feats: int,
        temperature: float = 10000,
        normalize: bool = True,
        scale: float | None = None,
    ) -> None:
        super().__init__()
        if num_pos_feats % 4 != 0:  # each half pairs sin and cos channels
            raise ValueError(f"num_pos_feats must be a multiple of 4, got {num_pos_feats}")
        if scale is not None and not normalize:
            raise ValueError("scale is only used with normalize=True")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def _axis_encoding(self, length: int, device: torch.device | str) -> torch.Tensor:
        """(length, num_pos_feats / 2) encoding of the positions 1 … length along one axis."""
        half = self.num_pos_feats // 2
        pos = torch.arange(1, length + 1, dtype=torch.float32, device=device)
        if self.normalize:
            pos = pos / (pos[-1] + 1e-6) * self.scale  # last position ≈ scale (2π by default)
        # frequencies come in pairs: channel 2k (sin) and 2k + 1 (cos) share 1 / temperature^(2k / half)
        dim_t = torch.arange(half, dtype=torch.float32, device=device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / half)
        angles = pos[:, None] / dim_t
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    @torch.no_grad()
    def encoding(self, height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The (num_pos_feats, height, width) encoding of a height × width map."""
        half = self.num_pos_feats // 2
        pos_y = self._axis_encoding(height, device)[:, None, :].expand(height, width, half)
        pos_x = self._axis_encoding(width, device)[None, :, :].expand(height, width, half)
        return torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, *, H, W) → a new (B, num_pos_feats, H, W) float32 tensor; only x's shape and device are used."""
        return self.encoding(x.shape[-2], x.shape[-1], x.device)[None].repeat(x.shape[0], 1, 1, 1)
