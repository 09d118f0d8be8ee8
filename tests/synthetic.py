"""Synthetic stacks for tests: three bright blobs (like nuclei) moving over a noisy background."""

from __future__ import annotations

import numpy as np


def moving_blobs(
    num_frames: int,
    size: int,
    *,
    seed: int = 0,
    background: tuple[float, float] = (40.0, 8.0),
    brightness: float = 170.0,
    step: tuple[float, float] = (6.0, 4.0),
    vanish: tuple[int, ...] = (),
) -> np.ndarray:
    """(N, size, size) float32: background ~ N(mean, sd), three blobs of peak ``brightness`` moving ``step``
    pixels (dy, ±dx) per frame; the first blob is missing on the frames listed in ``vanish``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = rng.normal(*background, (size, size)).astype(np.float32)
    centres = np.array([[0.3, 0.3], [0.6, 0.55], [0.35, 0.75]]) * size
    radii = np.array([0.09, 0.07, 0.06]) * size
    frames = []
    for t in range(num_frames):
        img = base.copy()
        for k, ((cy, cx), r) in enumerate(zip(centres, radii, strict=True)):
            if k == 0 and t in vanish:
                continue
            cy, cx = cy + step[0] * t, cx + step[1] * t * (1 if k % 2 else -1)
            img += brightness * np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2)) ** 2)
        frames.append(img)
    return np.stack(frames)
