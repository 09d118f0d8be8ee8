"""Multi-head attention with separate q/k/v projections (``Attention`` in sam2/modeling/sam/transformer.py)."""

from __future__ import annotations

import torch
from torch import nn

from .sdpa import scaled_dot_product_attention


class Attention(nn.Module):
    """Attention whose projections may shrink the embedding (``downsample_rate``) and whose keys and values
    may come from another width (``kv_in_dim``).

    forward: q (B, Nq, embedding_dim), k and v (B, Nk, kv_in_dim) → (B, Nq, embedding_dim).
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        downsample_rate: int = 1,
        kv_in_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.kv_in_dim = kv_in_dim if kv_in_dim is not None else embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the internal dim {self.internal_dim}")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.v_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def separate_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) → (B, heads, N, C / heads)."""
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    @staticmethod
    def recombine_heads(x: torch.Tensor) -> torch.Tensor:
        """(B, heads, N, c) → (B, N, heads · c)."""
        b, heads, n, c = x.shape
        return x.transpose(1, 2).reshape(b, n, heads * c)

    def project(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """Input projections, split into heads: each (B, heads, N, C / heads)."""
        return (
            self.separate_heads(self.q_proj(q)),
            self.separate_heads(self.k_proj(k)),
            self.separate_heads(self.v_proj(v)),
        )

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Scaled dot-product attention on split heads, then the output projection → (B, Nq, embedding_dim)."""
        out = scaled_dot_product_attention(q, k, v)
        return self.out_proj(self.recombine_heads(out))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.attend(*self.project(q, k, v))
