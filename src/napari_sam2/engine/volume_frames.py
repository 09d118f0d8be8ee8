"""Lazy 2D frame stacks over a (T, Z, H, W) volume, for the sessions of ``volume_time``: one object's central planes
along t, the planes of one t along z, and every plane (for the shared intensity range)."""

from __future__ import annotations

from typing import Any

import numpy as np


class CentralPlanes:
    """The frames of one object's t-session: frame t is ``volume[t, planes[t]]`` (H, W), known once planned."""

    def __init__(self, volume: Any, planes: dict[int, int]) -> None:
        self.volume = volume
        self.planes = planes
        t, _, h, w = volume.shape
        self.shape = (t, h, w)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, t: int) -> np.ndarray:
        if t not in self.planes:
            raise RuntimeError(f"the central plane of t={t} is not known yet (the 3D mask of t-1 gives it)")
        return np.asarray(self.volume[t, self.planes[t]])


class PlanesAt:
    """The planes of ``volume[t]`` as a lazy (Z, H, W) stack."""

    def __init__(self, volume: Any, t: int) -> None:
        self.volume, self.t = volume, t
        self.shape = tuple(volume.shape[1:])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, z: int) -> np.ndarray:
        return np.asarray(self.volume[self.t, z])


class AllPlanes:
    """Every (t, z) plane as one lazy stack of T·Z planes (for the shared intensity range)."""

    def __init__(self, volume: Any) -> None:
        self.volume = volume
        self.depth = volume.shape[1]

    def __len__(self) -> int:
        return self.volume.shape[0] * self.depth

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self.volume[i // self.depth, i % self.depth])
