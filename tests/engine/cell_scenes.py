"""Small scenes of bright round cells on a dark, noisy background whose truth is known: where each cell is on each
frame, which cell enters when, and which divides into which (lineage)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Scene:
    """frames (T, H, W) uint16; labels (T, H, W) int32 ground truth; parents {daughter: parent}."""

    frames: np.ndarray
    labels: np.ndarray
    parents: dict[int, int] = field(default_factory=dict)


def _disc(side: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def render(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    signal = np.where(labels > 0, 2500.0, 300.0)
    return np.clip(signal + rng.normal(0, 60, labels.shape), 0, 65535).astype(np.uint16)


def cells_scene(
    num_frames: int = 10, side: int = 128, *, enter_at: int | None = None, divide_at: int | None = None,
    radius: float = 11.0,
) -> Scene:
    """Two cells drifting slowly (ids 1, 2); with ``enter_at`` a third (id 3) appears on that frame; with
    ``divide_at`` cell 1 divides on that frame into cells 4 and 5, which move apart."""
    labels = np.zeros((num_frames, side, side), np.int32)
    parents = {}
    for t in range(num_frames):
        frame = labels[t]
        frame[_disc(side, (95, 30 + 0.8 * t), radius)] = 2
        if enter_at is not None and t >= enter_at:
            frame[_disc(side, (30, 100 - 0.5 * (t - enter_at)), radius)] = 3
        if divide_at is None or t < divide_at:
            frame[_disc(side, (40, 35 + 0.5 * t), radius)] = 1
        else:
            apart = 9 + 2.0 * (t - divide_at)
            frame[_disc(side, (40 - apart, 35 + 0.5 * t), radius * 0.75)] = 4
            frame[_disc(side, (40 + apart, 35 + 0.5 * t), radius * 0.75)] = 5
            parents = {4: 1, 5: 1}
    return Scene(render(labels), labels, parents)
