"""The element-wise steps of memory attention, written so that a compiler can fuse each into one kernel.

With many objects in a batch, memory attention spends more GPU time in element-wise passes over (B, HW, C) tensors
than in attention itself: every layer norm reads float32 and writes float32, each projection then casts that to
half precision again, a residual sum mixes half and single precision, and the rotary encoding takes four passes
(../shared/docs/PERFORMANCE.md, docs/benchmarks.md). Each function here is one such chain — residual sum + layer
norm + cast, rotation of queries and keys, the channel layer norm (and GELU) of the mask and memory convolutions —
in plain torch; ``FusedOps(compile=True)`` runs them through
``torch.compile`` (Inductor turns each into one generated kernel), and falls back to the plain functions, with one
warning, where compiling fails (no Triton, no C compiler). The compiled kernels are cached on disk
(``cache_dir``), so a new process pays only the tracing (seconds), not the compile.

Numerics: the same operations in the same precisions as the unfused layer (layer norms and the rotation in float32,
their results rounded once to the compute dtype); a compiled kernel may only reorder float32 sums.
"""

from __future__ import annotations

import logging
import os
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from napari_sam2.model.rotary import rotate_pairs

log = logging.getLogger(__name__)

Norm = tuple[torch.Tensor, torch.Tensor, float]  # a layer norm's weight, bias and eps (``norm_of``)
COMPILE_ENV = "NAPARI_SAM2_COMPILE"  # "0": never compile the fused steps


def cache_dir() -> Path:
    """Where compiled kernels are kept between processes (Inductor's cache, unless ``TORCHINDUCTOR_CACHE_DIR`` is
    set): ``torchinductor`` in the model cache (``NAPARI_SAM2_CACHE``, else ``~/.cache/napari-sam2``)."""
    from napari_sam2.model.hub import default_cache_dir

    return default_cache_dir() / "torchinductor"


def input_and_norm(
    curr: torch.Tensor, curr_pos: torch.Tensor, norm: Norm, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """The layers' input curr + 0.1 · pos, batch-first and contiguous, and its first norm in ``dtype``.

    curr, curr_pos (HW, B, C) → tgt (B, HW, C) in curr's dtype, x (B, HW, C) in ``dtype``.
    """
    tgt = (curr + 0.1 * curr_pos).transpose(0, 1).contiguous()
    return tgt, _norm(tgt, norm).to(dtype)


def add_and_norm(
    tgt: torch.Tensor, delta: torch.Tensor, norm: Norm, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual sum and the next pre-norm: tgt (B, N, C), delta (B, N, C) any dtype → (tgt + delta, its norm in
    ``dtype``)."""
    tgt = tgt + delta
    return tgt, _norm(tgt, norm).to(dtype)


def norm_of_sum(tgt: torch.Tensor, delta: torch.Tensor, norm: Norm) -> torch.Tensor:
    """A residual sum and the layer norm after it (memory attention's final norm, the mask decoder's post-norms):
    (B, N, C) → (B, N, C) float32 (as the unfused norm under autocast)."""
    return _norm(tgt + delta, norm)


def key_inputs(keys: torch.Tensor, key_pe: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The mask decoder's image tokens as attention inputs: (keys + key_pe, keys), each (B, N, C) in ``dtype``, from
    keys (B, N, C) (often a strided view of the image embedding) and their positional encoding."""
    return (keys + key_pe).to(dtype).contiguous(), keys.to(dtype).contiguous()  # rows the projections read as is


def add_half(x: torch.Tensor, pe: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x + pe in ``dtype`` (a positional encoding added to attention queries): (B, N, C) → (B, N, C)."""
    return (x + pe).to(dtype).contiguous()


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype autocast computes x's device's matrix products in, else x's own."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


def rotate_two(
    q: torch.Tensor, k: torch.Tensor, cos_pairs: torch.Tensor, sin_pairs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``rotate_pairs`` of the self-attention's queries and keys (same grid) in one call."""
    return rotate_pairs(q, cos_pairs, sin_pairs), rotate_pairs(k, cos_pairs, sin_pairs)


def layer_norm_2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """Layer norm over the channel axis of a (B, C, H, W) map (``LayerNorm2d``), → (B, C, H, W)."""
    mean = x.mean(1, keepdim=True)
    var = (x - mean).pow(2).mean(1, keepdim=True)
    x = (x - mean) / torch.sqrt(var + eps)
    return weight[:, None, None] * x + bias[:, None, None]


def norm_gelu_2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """GELU of ``layer_norm_2d`` (the mask downsampler's steps after each convolution): (B, C, H, W) → same."""
    return F.gelu(layer_norm_2d(x, weight, bias, eps))


def add_norm_gelu_2d(
    x: torch.Tensor, skip: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> torch.Tensor:
    """GELU of ``layer_norm_2d`` of x + skip (the mask decoder's first upscaling, skip = the stride-8 features)."""
    return F.gelu(layer_norm_2d(x + skip, weight, bias, eps))


def add_gelu(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """GELU of x + skip (the mask decoder's second upscaling, skip = the stride-4 features)."""
    return F.gelu(x + skip)


def norm_of(module: nn.LayerNorm) -> Norm:
    """A layer norm's (weight, bias, eps), the form the chains take (tensors, not the module: a compiled chain is
    then one graph for every layer's norm)."""
    return module.weight, module.bias, module.eps


def _norm(x: torch.Tensor, norm: Norm) -> torch.Tensor:
    weight, bias, eps = norm
    return F.layer_norm(x.float(), (x.shape[-1],), weight, bias, eps)


_COMPILED: dict[tuple, Callable] = {}  # (chain, dtype, specialised sizes) → compiled function
_ACTIVE: ContextVar[FusedOps | None] = ContextVar("napari_sam2_fused_ops", default=None)


def active() -> FusedOps | None:
    """The ``FusedOps`` that modules without an ``ops`` argument (``LayerNorm2d``) use in this thread, if any."""
    return _ACTIVE.get()


class FusedOps:
    """The chains above, compiled (``compile=True``: once per process, from the disk cache after the first) or
    plain. Attributes of the same names as the module's functions; ``running()`` makes them ``active()``."""

    def __init__(self, compile: bool) -> None:
        self.compile = compile and os.environ.get(COMPILE_ENV, "1") != "0"
        self.failed: set[str] = set()  # chains that did not compile (they run plain)
        self._compiled = _COMPILED  # shared by every session of the process

    @contextmanager
    def running(self) -> Iterator[FusedOps]:
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    def __getattr__(self, name: str) -> Callable:
        plain = _CHAINS.get(name)
        if plain is None:
            raise AttributeError(name)
        if not self.compile or name in self.failed:
            return plain
        dynamic, specialised = _DYNAMIC_DIMS[name], _SPECIALISED_DIMS.get(name, ())

        def call(*args):
            if name in self.failed:
                return plain(*args)
            # a compiled function of its own per dtype (and specialised size): dynamo recompiles one at most 8 times
            key = (name, args[0].dtype, *(args[i].shape[d] for i, d in specialised))
            compiled = self._compiled.get(key)
            if compiled is None:
                compiled = self._compiled[key] = compiled_copy(plain)
            try:
                for index, dims in dynamic.items():  # e.g. the batch: one kernel for every object count
                    for dim in dims:
                        if args[index].shape[dim] > 1:
                            torch._dynamo.maybe_mark_dynamic(args[index], dim)
                return compiled(*args)
            except Exception as error:  # no Triton / compiler, or an unsupported op: the plain chain, same results
                self.failed.add(name)
                log.warning("napari-sam2: compiling %s failed (%s); running it unfused", name, compile_error(error))
                return plain(*args)

        return call


_CHAINS: dict[str, Callable] = {
    "input_and_norm": input_and_norm,
    "add_and_norm": add_and_norm,
    "norm_of_sum": norm_of_sum,
    "rotate": rotate_pairs,
    "rotate_two": rotate_two,
    "layer_norm_2d": layer_norm_2d,
    "norm_gelu_2d": norm_gelu_2d,
    "add_norm_gelu_2d": add_norm_gelu_2d,
    "add_gelu": add_gelu,
    "key_inputs": key_inputs,
    "add_half": add_half,
}
# per chain, per tensor argument, the dims compiled as symbols (the rest specialise: a new grid is a new kernel, a
# new batch size is not)
_DYNAMIC_DIMS: dict[str, dict[int, tuple[int, ...]]] = {
    "input_and_norm": {0: (1,), 1: (1,)},
    "add_and_norm": {0: (0,), 1: (0,)},
    "norm_of_sum": {0: (0,), 1: (0,)},
    "rotate": {0: (0,)},
    "rotate_two": {0: (0,), 1: (0,)},
    "layer_norm_2d": {0: (0, 2, 3)},
    "norm_gelu_2d": {0: (0, 2, 3)},
    "add_norm_gelu_2d": {0: (0,), 1: (0,)},
    "add_gelu": {0: (0,), 1: (0,)},
    "key_inputs": {0: (0,), 1: (0,)},
    "add_half": {0: (0,), 1: (0,)},
}
_SPECIALISED_DIMS: dict[str, tuple[tuple[int, int], ...]] = {  # (argument, dim): a compiled copy per size
    "layer_norm_2d": ((0, 1),),
    "norm_gelu_2d": ((0, 1),),
}


def compile_error(error: BaseException) -> str:
    """One line for a failed compile: the backend's own error (dynamo wraps it in "backend=... raised:")."""
    inner = getattr(error, "inner_exception", None) or error.__cause__ or error
    text = str(inner).strip()
    return f"{type(inner).__name__}: {text.splitlines()[0]}" if text else type(inner).__name__


def compiled_copy(fn: Callable, dynamic: bool | None = None, backend: str | Callable = "inductor") -> Callable:
    """``torch.compile`` of a fresh copy of ``fn`` (dynamo keeps its compiled graphs, and counts recompiles, per code
    object: a copy has its own), whole-graph, kernels cached in ``cache_dir()``."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir()))
    copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    return torch.compile(copy, dynamic=dynamic, fullgraph=True, backend=backend)
