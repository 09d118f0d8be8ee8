"""The image encoder's transformer blocks through ``torch.compile``: their element-wise work fused.

Under bf16 autocast the Hiera trunk spends a third of its GPU time outside matrix products and attention: float32
layer norms, casts, window cuts, GELU, residual sums, each a pass over (B, H, W, C) tokens. Inductor fuses each
block's passes into a few generated kernels: on blocks of 8 frames at 1024 px on an H200, Hiera-L 10.6 → 7.1 ms a
frame, Hiera-T 2.9 → 1.8 (``benchmarks/bench_encoder.py``).

``CompiledBlocks`` is a ``BlockRunner`` (``Hiera.forward(x, run_block)``): one compiled copy per block kind and
input shape (each its own copy of the code, so dynamo's per-code recompile limit never sends a block back to eager
— Hiera-T and Hiera-L have 8 kinds each), shared by every session of the process; Inductor's kernels are cached on disk
(``fused_ops.cache_dir``), so a new process pays the tracing, not the compile. Shapes are static: callers give the
encoder one batch size (``FeatureCache`` pads a stack's last block).

Numerics: the same operations in the same precisions; the generated kernels round float32 sums in another order, so
the features are not bit-equal to the plain blocks' (a session therefore encodes every frame one way). Where compiling
fails (no Triton, no C compiler, an unsupported operation), the runner logs one warning and runs every later block
plain (``failed``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

import torch

from napari_sam2.model.fused_ops import COMPILE_ENV, compile_error, compiled_copy, compute_dtype
from napari_sam2.model.hiera import MultiScaleBlock

log = logging.getLogger(__name__)

_COMPILED: dict[tuple, Callable] = {}  # block kind, input shape and dtypes, backend → compiled forward
_COMPILING = threading.Lock()  # one compile at a time (sessions of a process may encode on several threads)


def compile_wanted(device: torch.device) -> bool:
    """Whether sessions on ``device`` compile the encoder's blocks by default: CUDA, unless NAPARI_SAM2_COMPILE=0."""
    return device.type == "cuda" and os.environ.get(COMPILE_ENV, "1") != "0"


def _block_forward(block: MultiScaleBlock, x: torch.Tensor) -> torch.Tensor:
    return block(x)


def block_kind(block: MultiScaleBlock, x: torch.Tensor) -> tuple:
    """What a compiled block graph specialises on: the block's sizes and window, the tokens' shape and dtype, and
    the dtype the block computes in (autocast)."""
    return (block.dim, block.dim_out, block.attn.num_heads, block.window_size, block.q_stride, tuple(x.shape),
            x.dtype, x.device.type, compute_dtype(x))


class CompiledBlocks:
    """Runs Hiera blocks compiled (``runner(block, x)`` ≡ ``block(x)`` up to float32 rounding order).

    backend: ``torch.compile``'s ("inductor"; the tests trace with "eager" or their own, which need no compiler).
    """

    def __init__(self, backend: str | Callable = "inductor") -> None:
        self.backend = backend
        self.failed = False
        self.compiled_kinds: set[tuple] = set()  # kinds this runner has run compiled (for tests and stats)

    @property
    def key(self) -> tuple | str:
        """How this runner computes blocks (``hiera.runner_key``): compiled by its backend, or plain once compiling
        has failed — runners of one key compute the same, so a graph captured with one serves the others."""
        return "plain" if self.failed else ("compiled", self.backend)

    def __call__(self, block: MultiScaleBlock, x: torch.Tensor) -> torch.Tensor:
        if self.failed:
            return block(x)
        key = (*block_kind(block, x), self.backend)
        try:
            compiled = _COMPILED.get(key)
            if compiled is None:
                with _COMPILING:  # a kind's first call compiles; it is shared only once that call has succeeded
                    compiled = _COMPILED.get(key)
                    if compiled is None:
                        fresh = compiled_copy(_block_forward, dynamic=False, backend=self.backend)
                        out = fresh(block, x)
                        _COMPILED[key] = fresh
                        self.compiled_kinds.add(key)
                        return out
            out = compiled(block, x)
            self.compiled_kinds.add(key)
            return out
        except Exception as error:  # no Triton / compiler, or an unsupported op: plain blocks from now on
            self.failed = True
            log.warning("napari-sam2: compiling the image encoder's blocks failed (%s); running them plain",
                        compile_error(error))
            return block(x)
