"""SAM's prompt encoder: clicks, boxes and mask prompts → sparse and dense embeddings for the mask decoder.

Follows ``sam2/modeling/sam/prompt_encoder.py`` and ``PositionEmbeddingRandom`` in
``sam2/modeling/position_encoding.py``; parameter and buffer names match Meta's so checkpoints load unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from napari_sam2.model.common import LayerNorm2d

# Point labels understood by the prompt encoder.
PADDING_LABEL = -1
NEGATIVE_LABEL = 0
POSITIVE_LABEL = 1
BOX_TOP_LEFT_LABEL = 2
BOX_BOTTOM_RIGHT_LABEL = 3


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of 2D positions: sin and cos of a fixed Gaussian projection.

    The (2, num_pos_feats) projection is a buffer (``positional_encoding_gaussian_matrix``), so it is saved
    with the weights; an encoding has ``2 * num_pos_feats`` channels.
    """

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        scale = 1.0 if scale is None or scale <= 0.0 else scale
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def encode_normalized(self, coords: torch.Tensor) -> torch.Tensor:
        """(..., 2) (x, y) in [0, 1] → (..., 2 * num_pos_feats)."""
        # formula of PositionEmbeddingRandom._pe_encoding in sam2/modeling/position_encoding.py
        projected = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        projected = 2 * math.pi * projected
        return torch.cat([torch.sin(projected), torch.cos(projected)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of the pixel centres of an (h, w) grid → (2 * num_pos_feats, h, w)."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        y = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        x = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack([x[None, :].expand(h, w), y[:, None].expand(h, w)], dim=-1)  # (h, w, 2)
        return self.encode_normalized(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """(B, N, 2) (x, y) in pixels of an image of ``image_size`` (h, w) → (B, N, 2 * num_pos_feats)."""
        h, w = image_size
        normalized = torch.stack([coords[..., 0] / w, coords[..., 1] / h], dim=-1)
        return self.encode_normalized(normalized.float())


class PromptEncoder(nn.Module):
    """Embeds point, box and mask prompts for :class:`~napari_sam2.model.mask_decoder.MaskDecoder`.

    ``image_embedding_size`` is the (h, w) of the image features, ``input_image_size`` the (H, W) in pixels
    of the image the point and box coordinates refer to; a mask prompt is (B, 1, 4h, 4w).
    """

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int = 16,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.mask_input_size = (4 * self.image_embedding_size[0], 4 * self.image_embedding_size[1])
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)

        # one learned offset per label: negative click, positive click, box top-left, box bottom-right
        self.num_point_embeddings = 4
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)  # replaces padding points entirely

        # (B, 1, 4h, 4w) → (B, embed_dim, h, w)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image-feature grid → (1, embed_dim, h, w)."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """(B, N, 2) pixel (x, y) and (B, N) labels → (B, N (+1 if ``pad``), embed_dim).

        A label -1 point gets ``not_a_point_embed`` instead of a position; labels 0-3 add their learned
        embedding to the position encoding of the pixel centre.
        """
        coords = coords + 0.5  # pixel centre
        if pad:  # without a box, Meta appends one padding point (coordinates (0, 0), label -1)
            coords = torch.cat([coords, coords.new_zeros((coords.shape[0], 1, 2))], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), PADDING_LABEL)], dim=1)
        embedding = self.pe_layer.forward_with_coords(coords, self.input_image_size)

        label_table = torch.cat([e.weight for e in self.point_embeddings], dim=0)  # (4, embed_dim)
        known = ((labels >= 0) & (labels < self.num_point_embeddings)).unsqueeze(-1)
        offsets = label_table[labels.long().clamp(0, self.num_point_embeddings - 1)]  # (B, N', embed_dim)
        embedding = torch.where(known, embedding + offsets, embedding)
        is_padding = (labels == PADDING_LABEL).unsqueeze(-1)
        return torch.where(is_padding, self.not_a_point_embed.weight.expand_as(embedding), embedding)

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """(B, 4) pixel boxes (x0, y0, x1, y1) → (B, 2, embed_dim), one token per corner."""
        corners = (boxes + 0.5).reshape(-1, 2, 2)  # pixel centres
        embedding = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        corner_offsets = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight], dim=0)
        return embedding + corner_offsets

    def embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """(B, 1, 4h, 4w) mask logits → (B, embed_dim, h, w)."""
        return self.mask_downscaling(masks)

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed the prompts of B objects.

        points: (coords (B, N, 2) pixel (x, y), labels (B, N)) or None; boxes: (B, 4) or None;
        masks: (B, 1, 4h, 4w) or None.
        Returns sparse (B, N', embed_dim), with N' = N + 1 (padding point) without a box, N + 2 with one,
        and dense (B, embed_dim, h, w), ``no_mask_embed`` broadcast when there is no mask.
        """
        if points is not None:
            batch = points[0].shape[0]
        elif boxes is not None:
            batch = boxes.shape[0]
        elif masks is not None:
            batch = masks.shape[0]
        else:
            batch = 1
        device = self.no_mask_embed.weight.device

        sparse_parts = [torch.empty((batch, 0, self.embed_dim), device=device)]
        if points is not None:
            sparse_parts.append(self.embed_points(*points, pad=boxes is None))
        if boxes is not None:
            sparse_parts.append(self.embed_boxes(boxes))
        sparse = torch.cat(sparse_parts, dim=1)

        if masks is not None:
            dense = self.embed_masks(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, h, w)
        return sparse, dense
