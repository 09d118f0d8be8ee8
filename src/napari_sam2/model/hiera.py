"""The Hiera trunk of SAM 2's image encoder (sam2/modeling/backbones/hieradet.py and backbones/utils.py).

Hiera is a hierarchical vision transformer: a 4×-strided patch embedding followed by stages of transformer
blocks. The first block of every stage after the first halves the resolution (max-pooling of the attention
queries and of the shortcut, "q-pooling") and doubles the width and the number of heads. Most blocks attend
within non-overlapping square windows; the blocks listed in ``global_att_blocks`` attend over the whole map.

Tokens are kept channels-last, (B, H, W, C), between blocks; the trunk returns channels-first maps.
Inference only: no drop-path, no dropout.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import torch
import torch.nn.functional as F
from torch import nn

from napari_sam2.model.common import MLP
from napari_sam2.model.config import HieraConfig
from napari_sam2.model.fused_ops import compute_dtype


def window_partition(x: torch.Tensor, window_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Cut (B, H, W, C) into windows, zero-padding the bottom and right edges to whole windows.

    Returns the windows (B · nh · nw, window_size, window_size, C), row-major per image, and the grid (nh, nw).
    """
    b, h, w, c = x.shape
    nh, nw = -(-h // window_size), -(-w // window_size)  # ceil division
    x = F.pad(x, (0, 0, 0, nw * window_size - w, 0, nh * window_size - h))
    x = x.view(b, nh, window_size, nw, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c), (nh, nw)


def window_unpartition(windows: torch.Tensor, grid: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of ``window_partition``: (B · nh · nw, s, s, C) windows on an (nh, nw) grid → (B, H, W, C).

    The window side s may differ from the one used to partition (q-pooling halves it); the reassembled map
    (nh · s, nw · s) is cropped to ``hw``, dropping the padding.
    """
    nh, nw = grid
    s, c = windows.shape[1], windows.shape[-1]
    x = windows.reshape(-1, nh, nw, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, nh * s, nw * s, c)
    return x[:, : hw[0], : hw[1]]


def add_windows(base: torch.Tensor, windows: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """base (B, H, W, C) + ``window_unpartition(windows, grid, (H, W))``: where the windows tile the map exactly, the
    sum reads them in place (one pass instead of a reassembling copy and a sum), else through the copy."""
    nh, nw = grid
    b, h, w, c = base.shape
    s = windows.shape[1]
    if nh * s != h or nw * s != w or not base.is_contiguous() or not windows.is_contiguous():
        return base + window_unpartition(windows, grid, (h, w))
    tiles = windows.view(b, nh, nw, s, s, c).permute(0, 1, 3, 2, 4, 5)  # (B, nh, s, nw, s, C), a view
    return (base.view(b, nh, s, nw, s, c) + tiles).reshape(b, h, w, c)


def max_pool(x: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """Max-pool a channels-last map: (B, H, W, C) → (B, H // sh, W // sw, C) (``do_pool`` in hieradet.py)."""
    x = F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=stride, stride=stride)
    return x.permute(0, 2, 3, 1)


class PatchEmbed(nn.Module):
    """7×7 convolution with stride 4: image (B, 3, H, W) → tokens (B, H/4, W/4, embed_dim)."""

    def __init__(self, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention whose queries may be max-pooled by ``q_stride``.

    forward: (B, H, W, dim) → (B, H', W', dim_out), with (H', W') = (H, W) // q_stride, or (H, W) without pooling.
    """

    def __init__(self, dim: int, dim_out: int, num_heads: int, q_stride: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_stride = q_stride
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1)
        q, k, v = qkv.unbind(2)  # each (B, H·W, heads, c)
        if self.q_stride is not None:
            q = max_pool(q.reshape(b, h, w, -1), self.q_stride)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        x = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(x.transpose(1, 2).reshape(b, h, w, -1))


class MultiScaleBlock(nn.Module):
    """Pre-norm transformer block: (windowed) attention with optional q-pooling, then an MLP.

    forward: (B, H, W, dim) → (B, H', W', dim_out), (H', W') as in ``MultiScaleAttention``.
    ``window_size`` 0 means global attention. With q-pooling the windows shrink with the map, so a block that
    partitions into s × s windows reassembles (s / stride) × (s / stride) ones.
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        q_stride: tuple[int, int] | None = None,
        window_size: int = 0,
    ) -> None:
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.q_stride = q_stride
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, num_layers=2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        # normalised, then rounded to the dtype the linear layers compute in (under autocast they would round it
        # themselves: the same values), before the windows are cut: their copy moves half the bytes
        x = self.norm1(x)
        x = x.to(compute_dtype(x))
        if self.dim != self.dim_out:
            # the shortcut is widened from the *normalised* tokens (as in hieradet.py), then pooled like the queries
            shortcut = self.proj(x)
            if self.q_stride is not None:
                shortcut = max_pool(shortcut, self.q_stride)
        if self.window_size > 0:
            windows, grid = window_partition(x, self.window_size)
            x = add_windows(shortcut, self.attn(windows), grid)
        else:
            x = shortcut + self.attn(x)
        return x + self.mlp(self.norm2(x))


BlockRunner = Callable[[MultiScaleBlock, torch.Tensor], torch.Tensor]  # (block, tokens) → the block's output


def runner_key(run_block: BlockRunner | None) -> Hashable:
    """What decides how a runner computes the blocks, for caches of what it computed (a captured encoder): "plain"
    for None, a runner's own ``key`` where it has one (``CompiledBlocks``: its backend; "plain" once compiling has
    failed), else the runner itself."""
    if run_block is None:
        return "plain"
    return getattr(run_block, "key", run_block)


class Hiera(nn.Module):
    """Hiera trunk: image (B, 3, H, W) → list of 4 maps (B, C_i, H / 2^(i+2), W / 2^(i+2)), finest first,
    with C_i = embed_dim · dim_mul^i (for q_pool = 3; stages beyond ``q_pool`` keep their resolution).

    H / 4 and W / 4 must be multiples of ``window_spec[0]`` (the tiled window position embedding), i.e. of 32
    for the published models.
    """

    def __init__(self, config: HieraConfig) -> None:
        super().__init__()
        stages, window_spec = config.stages, config.window_spec
        if len(window_spec) != len(stages):
            raise ValueError(f"window_spec {window_spec} needs one entry per stage {stages}")
        if not 0 <= config.q_pool < len(stages):
            raise ValueError(f"q_pool must be in [0, {len(stages) - 1}], got {config.q_pool}")
        self.config = config
        self.stage_ends = [sum(stages[: i + 1]) - 1 for i in range(len(stages))]
        # the first block of stages 2 … q_pool + 1 pools
        q_pool_blocks = {end + 1 for end in self.stage_ends[: config.q_pool]}

        dim, num_heads = config.embed_dim, config.num_heads
        self.patch_embed = PatchEmbed(dim)
        # windowed absolute position embedding (https://arxiv.org/abs/2311.05613): a "background" embedding
        # interpolated to the token grid plus a window-sized one tiled over it
        self.pos_embed = nn.Parameter(torch.zeros(1, dim, *config.window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, dim, window_spec[0], window_spec[0]))

        self.blocks = nn.ModuleList()
        stage = 0
        for i in range(sum(stages)):
            # The window size lags by a block: the first block of a stage still partitions with the previous
            # stage's window (and q-pools it down to this stage's scale).
            window_size = 0 if i in config.global_att_blocks else window_spec[stage]
            dim_out = dim
            if i - 1 in self.stage_ends:
                dim_out = int(dim * config.dim_mul)
                num_heads = int(num_heads * config.head_mul)
                stage += 1
            q_stride = tuple(config.q_stride) if i in q_pool_blocks else None
            self.blocks.append(MultiScaleBlock(dim, dim_out, num_heads, config.mlp_ratio, q_stride, window_size))
            dim = dim_out

        # output channels per stage, deepest first (what the FPN neck expects)
        self.channel_list = tuple(self.blocks[end].dim_out for end in reversed(self.stage_ends))

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """(1, h, w, embed_dim) position embedding of an h × w token grid (``_get_pos_embed`` in hieradet.py)."""
        window = self.pos_embed_window.shape[-1]
        if h % window or w % window:
            raise ValueError(f"token grid {h}×{w} is not a whole number of {window}×{window} windows")
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        pos = pos + self.pos_embed_window.tile(1, 1, h // window, w // window)
        return pos.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor, run_block: BlockRunner | None = None) -> list[torch.Tensor]:
        """run_block(block, tokens) runs each block instead of ``block(tokens)`` (``CompiledBlocks``)."""
        x = self.patch_embed(x)  # (B, H/4, W/4, C)
        x = x + self.position_embedding(x.shape[1], x.shape[2])
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x) if run_block is None else run_block(block, x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
