"""SAM 2's image encoder: the Hiera trunk plus an FPN neck (sam2/modeling/backbones/image_encoder.py).

The neck projects every trunk stage to ``d_model`` channels with a 1×1 convolution and adds, on the levels in
``fpn_top_down_levels``, the upsampled sum from the level below it (coarser). ``scalp`` then drops the coarsest
levels: SAM 2 keeps three, at strides 4, 8 and 16 (256², 128² and 64² at 1024 px input).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from napari_sam2.model.config import SAM2Config
from napari_sam2.model.hiera import BlockRunner, Hiera
from napari_sam2.model.position_encoding import PositionEmbeddingSine


class FpnNeck(nn.Module):
    """Feature pyramid without output convolutions.

    forward: trunk maps, finest first, xs[i] (B, backbone_channel_list[-1 - i], H_i, W_i) →
    (features, position encodings), two lists of (B, d_model, H_i, W_i), finest first.
    ``backbone_channel_list`` is deepest first, as Hiera's ``channel_list``; ``convs[j]`` projects that entry.
    """

    def __init__(
        self,
        d_model: int,
        backbone_channel_list: Sequence[int],
        fpn_top_down_levels: Sequence[int] = (2, 3),
        fpn_interp_model: str = "nearest",
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.backbone_channel_list = tuple(backbone_channel_list)
        self.fpn_top_down_levels = tuple(fpn_top_down_levels)
        self.fpn_interp_model = fpn_interp_model
        self.position_encoding = PositionEmbeddingSine(d_model)
        # each projection sits in a Sequential under the name "conv" so that the keys are Meta's: convs.0.conv.weight
        self.convs = nn.ModuleList(
            nn.Sequential(OrderedDict(conv=nn.Conv2d(channels, d_model, kernel_size=1)))
            for channels in self.backbone_channel_list
        )

    def forward(self, xs: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        n = len(self.convs)
        if len(xs) != n:
            raise ValueError(f"expected {n} trunk maps, got {len(xs)}")
        features: list[torch.Tensor] = []  # coarsest first, reversed below
        prev = None
        for level in reversed(range(n)):  # coarsest (deepest) first
            lateral = self.convs[n - 1 - level](xs[level])
            if level in self.fpn_top_down_levels and prev is not None:
                # upsampled in float32, as in Meta's FpnNeck
                top_down = F.interpolate(
                    prev.to(torch.float32),
                    scale_factor=2.0,
                    mode=self.fpn_interp_model,
                    align_corners=None if self.fpn_interp_model == "nearest" else False,
                )
                prev = lateral + top_down
            else:
                prev = lateral
            features.append(prev)
        features.reverse()
        pos = [self.position_encoding(f).to(f.dtype) for f in features]
        return features, pos


@dataclass(frozen=True)
class ImageEncoderOutput:
    """Image features, finest first: at 1024 px (B, 256, 256, 256), (B, 256, 128, 128), (B, 256, 64, 64).

    ``vision_pos_enc[i]`` is the sine position encoding of ``backbone_fpn[i]`` (same shape).
    """

    backbone_fpn: list[torch.Tensor]
    vision_pos_enc: list[torch.Tensor]

    @property
    def vision_features(self) -> torch.Tensor:
        """The coarsest kept level (B, d_model, H/16, W/16): what memory attention conditions."""
        return self.backbone_fpn[-1]


class ImageEncoder(nn.Module):
    """Trunk + neck, dropping the ``scalp`` coarsest levels: images (B, 3, H, W) → ``ImageEncoderOutput``."""

    def __init__(self, trunk: Hiera, neck: FpnNeck, scalp: int = 1) -> None:
        super().__init__()
        if tuple(trunk.channel_list) != tuple(neck.backbone_channel_list):
            raise ValueError(
                f"trunk channels {trunk.channel_list} do not match the neck's {neck.backbone_channel_list}"
            )
        if not 0 <= scalp < len(neck.backbone_channel_list):
            raise ValueError(f"scalp must leave at least one level, got {scalp}")
        self.trunk = trunk
        self.neck = neck
        self.scalp = scalp

    def forward(self, images: torch.Tensor, run_block: BlockRunner | None = None) -> ImageEncoderOutput:
        """run_block: how the trunk runs its blocks (``Hiera.forward``)."""
        features, pos = self.neck(self.trunk(images, run_block))
        keep = len(features) - self.scalp
        return ImageEncoderOutput(backbone_fpn=features[:keep], vision_pos_enc=pos[:keep])


def build_image_encoder(config: SAM2Config) -> ImageEncoder:
    """The image encoder of ``config`` with freshly initialised weights (load a checkpoint afterwards)."""
    trunk = Hiera(config.hiera)
    neck = FpnNeck(config.d_model, trunk.channel_list, config.fpn_top_down_levels, fpn_interp_model="nearest")
    return ImageEncoder(trunk, neck, scalp=config.scalp)
