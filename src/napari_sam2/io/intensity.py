"""Intensity ranges estimated from a sample of frames, normalisation to [0, 1], and channel compositing.

The range is a pair of robust percentiles (default 0.5 and 99.5) over at most ``max_frames`` frames spread evenly
through the stack (first and last included) and at most ``MAX_SAMPLES_PER_FRAME`` pixels of each: the stack is never
read whole. NaN and ±inf are ignored. The result always has ``hi > lo`` — a constant stack gives ``(v, v + 1)`` — so
dividing by ``hi - lo`` is safe for 8/16/32-bit integers and floats alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

DEFAULT_PERCENTILES = (0.5, 99.5)
DEFAULT_MAX_FRAMES = 16
MAX_SAMPLES_PER_FRAME = 1 << 18

# colours of channels 0, 1, … when a stack that is not RGB is composited (1 channel: grey; 2: green + magenta)
_COMPOSITE_COLOURS = {
    1: [(1.0, 1.0, 1.0)],
    2: [(0.0, 1.0, 0.0), (1.0, 0.0, 1.0)],
}
_CYCLE = [(0.0, 1.0, 0.0), (1.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)]


def sample_indices(n_frames: int, max_frames: int = DEFAULT_MAX_FRAMES) -> list[int]:
    """Up to ``max_frames`` distinct frame indices spread evenly over ``range(n_frames)``, ends included."""
    if n_frames <= 0:
        return []
    count = max(1, min(n_frames, max_frames))
    return sorted({int(round(v)) for v in np.linspace(0, n_frames - 1, count)})


def _subsample(frame: np.ndarray) -> np.ndarray:
    """At most about ``MAX_SAMPLES_PER_FRAME`` values of ``frame``, on a regular grid over its first two axes."""
    if frame.size <= MAX_SAMPLES_PER_FRAME or frame.ndim < 2:
        return frame.ravel()
    step = math.ceil(math.sqrt(frame.size / MAX_SAMPLES_PER_FRAME))
    return frame[::step, ::step].ravel()


def robust_range(
    frames: Iterable[np.ndarray], percentiles: Sequence[float] = DEFAULT_PERCENTILES
) -> tuple[float, float]:
    """``(lo, hi)`` percentiles of the finite values of ``frames``; ``hi > lo`` always; ``(0, 1)`` if none."""
    p_lo, p_hi = (float(p) for p in percentiles)
    if not 0.0 <= p_lo < p_hi <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= lo < hi <= 100, got {tuple(percentiles)}")
    parts = []
    for frame in frames:
        values = _subsample(np.asarray(frame))
        if values.dtype.kind == "f":
            values = values[np.isfinite(values)]
        elif values.dtype.kind == "b":
            values = values.astype(np.uint8)
        parts.append(values.astype(np.float64, copy=False))
    values = np.concatenate(parts) if parts else np.empty(0)
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, [p_lo, p_hi]))
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


def normalize(frame: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``frame`` mapped linearly so that ``lo → 0`` and ``hi → 1``, clipped; NaN → 0. Returns float32, same shape."""
    scale = 1.0 / (hi - lo) if hi > lo else 1.0
    out = (np.asarray(frame, dtype=np.float32) - np.float32(lo)) * np.float32(scale)
    np.clip(out, 0.0, 1.0, out=out)
    return np.nan_to_num(out, nan=0.0, copy=False)


def composite_colours(n_channels: int) -> np.ndarray:
    """RGB colour of each channel, shape ``(n_channels, 3)`` float32."""
    colours = _COMPOSITE_COLOURS.get(n_channels) or [_CYCLE[i % len(_CYCLE)] for i in range(n_channels)]
    return np.asarray(colours, dtype=np.float32)


def composite_rgb(channels: np.ndarray, ranges: Sequence[tuple[float, float]]) -> np.ndarray:
    """Additive RGB composite of ``channels`` (H, W, C), each normalised by its ``(lo, hi)``; float32 (H, W, 3)."""
    colours = composite_colours(channels.shape[-1])
    out = np.zeros((*channels.shape[:2], 3), dtype=np.float32)
    for c, (lo, hi) in enumerate(ranges):
        out += normalize(channels[..., c], lo, hi)[..., None] * colours[c]
    return np.clip(out, 0.0, 1.0, out=out)
