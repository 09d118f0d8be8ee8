"""SAM's two-way transformer: prompt tokens and image features attend to each other.

Follows ``TwoWayTransformer`` and ``TwoWayAttentionBlock`` in ``sam2/modeling/sam/transformer.py``;
module names match Meta's so checkpoints load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_sam2.model import fused_ops
from napari_sam2.model.attention import Attention
from napari_sam2.model.common import MLP
from napari_sam2.model.fused_ops import compute_dtype, norm_of


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token→image cross-attention, token MLP, then image→token cross-attention.

    Each step is residual and followed by a LayerNorm (post-norm). Positional encodings are added to
    queries and keys, never to values; the first block of a transformer skips them in self-attention
    (``skip_first_layer_pe``) and replaces, rather than adds to, the tokens with the attention output.

    forward: queries (B, Nq, C), keys (B, Nk, C), query_pe (B, Nq, C), key_pe (B, Nk, C)
    → (queries (B, Nq, C), keys (B, Nk, C)).
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate=attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, num_layers=2, activation=activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, downsample_rate=attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_layer_pe:  # as in Meta's code: no residual here
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        ops = fused_ops.active()  # in a tracking step with fused chains: each pass over the image tokens fused
        if ops is None:
            k, v = keys + key_pe, keys
        else:
            k, v = ops.key_inputs(keys, key_pe, compute_dtype(keys))
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, k, v))

        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        if ops is None:
            k = keys + key_pe
            return queries, self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        k = ops.add_half(keys, key_pe, compute_dtype(keys))
        return queries, ops.norm_of_sum(keys, self.cross_attn_image_to_token(k, q, queries), norm_of(self.norm4))


class TwoWayTransformer(nn.Module):
    """``depth`` two-way blocks, then a last token→image attention and LayerNorm on the tokens.

    forward: image_embedding (B, C, h, w), image_pe (B, C, h, w), point_embedding (B, N, C)
    → (tokens (B, N, C), image features (B, h·w, C)).
    """

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                activation=activation,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate=attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys = image_embedding.flatten(2).permute(0, 2, 1)  # (B, h·w, C)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, query_pe=point_embedding, key_pe=key_pe)

        ops = fused_ops.active()
        k, v = (keys + key_pe, keys) if ops is None else ops.key_inputs(keys, key_pe, compute_dtype(keys))
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(queries + point_embedding, k, v))
        return queries, keys
