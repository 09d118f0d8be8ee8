"""Memory encoder: fuses a frame's image features with its predicted mask into a spatial memory.

After sam2/modeling/memory_encoder.py (``MaskDownSampler``, ``CXBlock``, ``Fuser``, ``MemoryEncoder``). Module
names and the indices inside ``MaskDownSampler.encoder`` follow Meta's, so checkpoints load strictly; modules
without parameters that do nothing at inference (dropout, drop-path, identity projections) are left out.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from napari_sam2.model import fused_ops
from napari_sam2.model.common import LayerNorm2d
from napari_sam2.model.config import SAM2Config
from napari_sam2.model.position_encoding import PositionEmbeddingSine


class MaskDownSampler(nn.Module):
    """Strided convs (each followed by LayerNorm2d and GELU) down to 1 / ``total_stride``, then a 1×1 conv to
    ``embed_dim``. Each step multiplies the channels by stride², starting from 1.

    forward: (B, 1, H, W) → (B, embed_dim, H / total_stride, W / total_stride).
    """

    def __init__(
        self,
        embed_dim: int = 256,
        kernel_size: int = 4,
        stride: int = 4,
        padding: int = 0,
        total_stride: int = 16,
    ) -> None:
        super().__init__()
        num_layers = round(math.log(total_stride, stride))
        if stride**num_layers != total_stride:
            raise ValueError(f"total_stride {total_stride} is not a power of stride {stride}")
        # a flat Sequential, so that the state-dict keys are Meta's encoder.<index>.*
        self.encoder = nn.Sequential()
        channels = 1
        for _ in range(num_layers):
            out_channels = channels * stride**2
            self.encoder.append(nn.Conv2d(channels, out_channels, kernel_size, stride=stride, padding=padding))
            self.encoder.append(LayerNorm2d(out_channels))
            self.encoder.append(nn.GELU())
            channels = out_channels
        self.encoder.append(nn.Conv2d(channels, embed_dim, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ops = fused_ops.active()  # in a tracking step with fused chains: norm and GELU as one kernel
        layers = list(self.encoder)
        for conv, norm, act in zip(layers[:-1:3], layers[1::3], layers[2::3], strict=True):
            x = conv_as_matmul(x, conv) if x.is_cuda and 1 < conv.in_channels < 8 else conv(x)
            x = act(norm(x)) if ops is None else ops.norm_gelu_2d(x, norm.weight, norm.bias, norm.eps)
        return layers[-1](x)


def conv_as_matmul(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(x)`` as a matrix product over the unfolded patches: x (B, C, H, W) → (B, C_out, H', W').

    On CUDA the downsampler's second convolution (4 channels in, 3×3, stride 2) takes cuDNN 1.14 ms at 20 objects
    and 1024 px — more than its other four convolutions together (0.9 ms), which read as much — as its kernels for
    fewer than 8 input channels are slow; unfolded it takes 0.42 ms (benchmarks/bench_memory_encoder.py). The same
    sums, in another order."""
    if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return conv(x)
    dtype = fused_ops.compute_dtype(x)
    b, _, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    patches = F.unfold(x.to(dtype), conv.kernel_size, dilation=conv.dilation, padding=conv.padding,
                       stride=conv.stride)  # (B, C · kh · kw, out_h · out_w)
    out = torch.matmul(conv.weight.reshape(conv.out_channels, -1).to(dtype), patches)
    if conv.bias is not None:
        out = out + conv.bias.to(dtype).view(1, -1, 1)
    return out.view(b, conv.out_channels, out_h, out_w)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise conv → LayerNorm2d → pointwise MLP (as Linear layers, GELU) → layer scale,
    added to the input. forward: (B, dim, H, W) → (B, dim, H, W).
    """

    def __init__(
        self,
        dim: int,
        kernel_size: int = 7,
        padding: int = 3,
        layer_scale_init_value: float = 1e-6,
        use_dwconv: bool = True,
    ) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=padding, groups=dim if use_dwconv else 1)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale_init_value * torch.ones(dim)) if layer_scale_init_value > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)  # (B, H, W, C)
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            y = self.gamma * y
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    """``num_layers`` CXBlocks in a row (Meta's ``Fuser`` without its optional input projection).

    forward: (B, dim, H, W) → (B, dim, H, W).
    """

    def __init__(
        self,
        dim: int = 256,
        num_layers: int = 2,
        kernel_size: int = 7,
        padding: int = 3,
        layer_scale_init_value: float = 1e-6,
        use_dwconv: bool = True,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            CXBlock(dim, kernel_size, padding, layer_scale_init_value, use_dwconv) for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Image features plus the downsampled mask, fused by ConvNeXt blocks and projected to ``out_dim`` channels.

    forward: pix_feat (B, in_dim, h, w), masks (B, 1, H, W) with H = 16 h (mask logits, or probabilities with
    ``skip_mask_sigmoid``) → (features (B, out_dim, h, w), pos_enc (B, out_dim, h, w)).
    """

    def __init__(
        self,
        out_dim: int = 64,
        in_dim: int = 256,
        mask_downsampler: MaskDownSampler | None = None,
        fuser: Fuser | None = None,
    ) -> None:
        super().__init__()
        self.mask_downsampler = mask_downsampler or MaskDownSampler(in_dim, kernel_size=3, stride=2, padding=1)
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = fuser or Fuser(in_dim, num_layers=2)
        self.position_encoding = PositionEmbeddingSine(out_dim)
        self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1) if out_dim != in_dim else nn.Identity()

    def forward(
        self, pix_feat: torch.Tensor, masks: torch.Tensor, skip_mask_sigmoid: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``skip_mask_sigmoid`` defaults to True, as SAM 2 calls it (the caller scales and squashes the logits
        itself); Meta's module defaults to False."""
        if not skip_mask_sigmoid:
            masks = torch.sigmoid(masks)
        if pix_feat.shape[0] > 1 and pix_feat.stride(0) == 0:  # one frame's features for every object: project once
            pix_feat = pix_feat[:1]
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(masks)
        if x.is_cuda:  # cuDNN's depthwise 7×7 is ~4× faster on channels-last memory (benchmarks/bench_depthwise.py)
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.out_proj(self.fuser(x)).contiguous()
        return x, self.position_encoding(x).to(x.dtype)


def build_memory_encoder(config: SAM2Config) -> MemoryEncoder:
    """SAM 2's memory encoder (all published models share it): a kernel-3, stride-2 mask downsampler down to the
    backbone stride, two 7×7 depthwise ConvNeXt blocks, ``config.mem_dim`` output channels."""
    downsampler = MaskDownSampler(
        config.d_model, kernel_size=3, stride=2, padding=1, total_stride=config.backbone_stride
    )
    fuser = Fuser(config.d_model, num_layers=2, kernel_size=7, padding=3, layer_scale_init_value=1e-6)
    return MemoryEncoder(out_dim=config.mem_dim, in_dim=config.d_model, mask_downsampler=downsampler, fuser=fuser)
