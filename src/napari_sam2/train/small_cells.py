"""A time-lapse of many small round cells in a large frame, with known truth, rendered lazily frame by frame.

For measuring native-resolution tiling (``engine.tiled_session``): cells of a few pixels' diameter on a jittered
grid, all drifting with one flow (so they cross tile borders) plus a small motion of their own that never lets two
cells meet. Frames are uint16: background ~300, cells ~1,500 (with a soft edge), Gaussian noise. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SmallCells:
    """frames[t] (H, W) uint16 and labels(t) (H, W) int32 (cell ids 1 … K), computed when asked for.

    side: frame side; diameter: cell diameter in pixels; spacing: grid spacing in diameters (≥ 1.6);
    drift: (dy, dx) pixels per frame shared by all cells; wobble: each cell's own speed in pixels per frame.
    """

    num_frames: int = 8
    side: int = 1024
    diameter: float = 12.0
    spacing: float = 2.2
    drift: tuple[float, float] = (1.0, 3.0)
    wobble: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.spacing < 1.6:
            raise ValueError(f"spacing must be at least 1.6 diameters, got {self.spacing}")
        rng = np.random.default_rng(self.seed)
        step = self.spacing * self.diameter
        n = int(self.side // step)
        grid = (np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 2) + 0.5) * step
        room = (step - self.diameter) / 2 - 1  # how far a cell may stray from its grid point without meeting another
        start = grid + rng.uniform(-room / 2, room / 2, grid.shape)
        velocity = rng.normal(0, self.wobble, grid.shape)
        t = np.arange(self.num_frames)[:, None, None]
        own = np.clip(velocity[None] * t, -room / 2, room / 2)  # bounded: neighbours never touch
        self.centres = start[None] + own + np.asarray(self.drift)[None, None] * t  # (T, K, 2)
        self.radii = self.diameter / 2 * rng.uniform(0.85, 1.15, len(grid))
        self.shape = (self.num_frames, self.side, self.side)
        self.dtype = np.dtype(np.uint16)

    def __len__(self) -> int:
        return self.num_frames

    def labels(self, t: int) -> np.ndarray:
        """(H, W) int32 truth of frame ``t`` (0 background; cells leaving the frame are cut by its border)."""
        out = np.zeros((self.side, self.side), np.int32)
        for k, ((cy, cx), r) in enumerate(zip(self.centres[t], self.radii, strict=True)):
            y0, y1 = max(int(cy - r) - 1, 0), min(int(cy + r) + 2, self.side)
            x0, x1 = max(int(cx - r) - 1, 0), min(int(cx + r) + 2, self.side)
            if y0 >= y1 or x0 >= x1:
                continue
            yy, xx = np.mgrid[y0:y1, x0:x1]
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            out[y0:y1, x0:x1][inside] = k + 1
        return out

    def __getitem__(self, t: int) -> np.ndarray:
        t = int(t)
        rng = np.random.default_rng((self.seed, t))
        inside = self.labels(t) > 0
        signal = np.where(inside, 1500.0, 300.0).astype(np.float32)
        blurred = (signal + np.roll(signal, 1, 0) + np.roll(signal, -1, 0) + np.roll(signal, 1, 1)
                   + np.roll(signal, -1, 1)) / 5
        noisy = blurred + rng.normal(0, 60, signal.shape).astype(np.float32)
        return np.clip(noisy, 0, 65535).astype(np.uint16)
