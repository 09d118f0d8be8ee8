"""Small building blocks shared by several SAM 2 components (``sam2/modeling/sam2_utils.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_sam2.model import fused_ops
from napari_sam2.model.fused_ops import layer_norm_2d


class MLP(nn.Module):
    """``num_layers`` linear layers with an activation between them: (..., input_dim) → (..., output_dim)."""

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        activation: type[nn.Module] = nn.ReLU,
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__()
        hidden = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(
            nn.Linear(n, k) for n, k in zip([input_dim] + hidden, hidden + [output_dim], strict=True)
        )
        self.sigmoid_output = sigmoid_output
        self.act = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == last else self.act(layer(x))
        return torch.sigmoid(x) if self.sigmoid_output else x


class LayerNorm2d(nn.Module):
    """Layer norm over the channel axis of a (B, C, H, W) map."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ops = fused_ops.active()  # in a tracking step with fused chains: one kernel instead of ten passes
        norm = layer_norm_2d if ops is None else ops.layer_norm_2d
        return norm(x, self.weight, self.bias, self.eps)


def activation_fn(name: str):
    """The activation function for a config name ("relu", "gelu" or "glu")."""
    return {"relu": F.relu, "gelu": F.gelu, "glu": F.glu}[name]


def sine_encoding_1d(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """1D sine/cosine encoding of (N,) positions → (N, dim) (``get_1d_sine_pe`` in sam2_utils.py)."""
    half = dim // 2
    dim_t = torch.arange(half, dtype=torch.float32, device=positions.device)
    dim_t = temperature ** (2 * (dim_t // 2) / half)
    pos_embed = positions.unsqueeze(-1) / dim_t
    return torch.cat([pos_embed.sin(), pos_embed.cos()], dim=-1)


