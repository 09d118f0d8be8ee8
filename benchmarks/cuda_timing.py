"""Timing a CUDA callable with events, for the micro-benchmarks."""

from __future__ import annotations

from collections.abc import Callable

import torch


def timed(fn: Callable[[], object], repeat: int = 10, warmup: int = 2) -> float:
    """Milliseconds per call of ``fn`` on the current stream, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeat):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / repeat
