"""Scaled dot-product attention with the fastest CUDA backend for each shape, measured once.

PyTorch picks flash attention by default; for SAM 2's memory cross-attention with several objects in a
batch, cuDNN's kernel is about twice as fast on an H200 (../shared/docs/PERFORMANCE.md). Which one wins
depends on the shape, so the first call with a new shape times each available backend and remembers the
winner. On the CPU (and MPS) this is plain ``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

try:
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError:  # very old torch: no backend choice
    SDPBackend = sdpa_kernel = None

_CANDIDATES = ("CUDNN_ATTENTION", "FLASH_ATTENTION")  # memory-efficient never wins here and is slow to try
_KEY_BUCKET = 4096  # key lengths grow by a frame (or a pointer) at a time: time once per 4096-token bucket
_choice: dict[tuple, object] = {}
AUTOTUNE = os.environ.get("NAPARI_SAM2_SDPA_AUTOTUNE", "1") != "0"


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √d) v for (B, heads, N, d) tensors, on the fastest backend for this shape."""
    if q.device.type != "cuda" or sdpa_kernel is None or not AUTOTUNE or torch.is_grad_enabled():
        return F.scaled_dot_product_attention(q, k, v)
    key = (tuple(q.shape), k.shape[-2] // _KEY_BUCKET, v.shape[-1], q.dtype, q.device.index)
    backend = _choice.get(key)
    if backend is None:
        backend = _choice[key] = _fastest(q, k, v)
    if backend == "default":
        return F.scaled_dot_product_attention(q, k, v)
    with sdpa_kernel([backend]):
        return F.scaled_dot_product_attention(q, k, v)


def _fastest(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    timings = {}
    # flash attention needs values as wide as the keys (memory attention's unprojected values are not)
    candidates = _CANDIDATES if v.shape[-1] == q.shape[-1] else ("CUDNN_ATTENTION",)
    for name in candidates:
        backend = getattr(SDPBackend, name, None)
        if backend is None:
            continue
        try:
            with sdpa_kernel([backend]):
                F.scaled_dot_product_attention(q, k, v)
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(2):
                    F.scaled_dot_product_attention(q, k, v)
                end.record()
                end.synchronize()
                timings[backend] = start.elapsed_time(end)
        except RuntimeError:  # backend does not support this shape / dtype / GPU
            continue
    return min(timings, key=timings.get) if timings else "default"
