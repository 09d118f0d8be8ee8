"""Choosing the compute device and its precision."""

from __future__ import annotations

import contextlib
import os

import torch


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given ("auto" or None: cuda, then mps, then cpu). Asking for an absent GPU is an error."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but torch sees no CUDA GPU on this machine")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("device 'mps' was asked for, but this machine has no Apple GPU available to torch")
    return device


class DeviceMemoryError(RuntimeError):
    """The compute device ran out of memory for one frame even one object at a time without the session's caches."""


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is the device running out of memory (CUDA's own error, or MPS's RuntimeError)."""
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


def release_cached_device_memory(device: torch.device) -> None:
    """Give the allocator's cached, unused blocks back to the device (after dropping caches)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def compute_context(device: torch.device, precision: str = "auto"):
    """Inference mode, with bf16 autocast on CUDA (as the reference's benchmark runs), float32 elsewhere.

    precision: "auto", "bf16" or "fp32". Autocast is per thread: enter this in the thread that computes.
    """
    stack = contextlib.ExitStack()
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    # autocast keeps its bfloat16 copies of the weights only outside inference mode: no_grad there
    grad_off = torch.no_grad() if use_bf16 and os.environ.get("NAPARI_SAM2_INFERENCE_MODE") != "1" else None
    stack.enter_context(grad_off if grad_off is not None else torch.inference_mode())
    if use_bf16 and device.type in ("cuda", "cpu"):
        stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16))
    return stack
