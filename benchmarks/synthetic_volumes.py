"""Synthetic 3D + time stacks with known truth: nuclei (ellipsoids) that move in 3D, deform and divide.

``nuclei_4d`` returns the image (T, Z, Y, X) uint16 and the instance truth (T, Z, Y, X) uint16 with the lineage
(daughter → mother) so evaluations know which truth object a prompt's track should follow. Anisotropic like
confocal stacks: a z step of ``z_step`` pixels. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Nuclei4D:
    image: np.ndarray  # (T, Z, Y, X) uint16
    truth: np.ndarray  # (T, Z, Y, X) uint16 instance ids, 0 = background
    parents: dict[int, int] = field(default_factory=dict)  # daughter id → mother id
    divisions: dict[int, int] = field(default_factory=dict)  # mother id → t of its division (last t it exists)


def _ellipsoid(shape: tuple[int, int, int], centre: np.ndarray, radii: np.ndarray, z_step: float) -> np.ndarray:
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    d = (((zz * z_step - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2
         + ((xx - centre[2]) / radii[2]) ** 2)
    return d <= 1.0


def nuclei_4d(
    num_t: int = 8,
    depth: int = 12,
    side: int = 96,
    *,
    num_nuclei: int = 3,
    z_step: float = 3.0,
    radius: float = 11.0,
    divide_at: int | None = None,
    seed: int = 0,
) -> Nuclei4D:
    """Nuclei drifting by ~1.5 px (and ~0.7 z planes) per t, with radii wobbling by ±10 %; with ``divide_at``, the
    first nucleus divides after that t into two daughters moving apart. Poisson-like noise over a dim background."""
    rng = np.random.default_rng(seed)
    extent = np.array([depth * z_step, side, side], float)
    margin = radius + 4
    low = np.array([min(radius * 0.6, extent[0] / 2), margin, margin])
    centres = [rng.uniform(low, extent - low) for _ in range(num_nuclei)]
    for i in range(1, num_nuclei):  # keep nuclei apart
        for _ in range(200):
            if min(np.linalg.norm(centres[i] - centres[j]) for j in range(i)) > 2.6 * radius:
                break
            centres[i] = rng.uniform(low, extent - low)
    cells = {k + 1: (np.array(c), rng.normal(0, 1, 3) * [2.0, 1.5, 1.5]) for k, c in enumerate(centres)}
    radii = {k: np.array([radius * 0.9, radius, radius]) for k in cells}
    truth = np.zeros((num_t, depth, side, side), np.uint16)
    parents: dict[int, int] = {}
    divisions: dict[int, int] = {}
    next_id = num_nuclei + 1
    for t in range(num_t):
        if divide_at is not None and t == divide_at + 1 and 1 in cells:
            centre, velocity = cells.pop(1)
            radii.pop(1)
            axis = rng.normal(0, 1, 3) * [0.3, 1, 1]
            axis /= np.linalg.norm(axis)
            for sign in (1, -1):
                cells[next_id] = (centre + sign * axis * radius * 0.6, velocity + sign * axis * 2.0)
                radii[next_id] = np.array([radius * 0.7, radius * 0.8, radius * 0.8])
                parents[next_id] = 1
                next_id += 1
            divisions[1] = t - 1
        for k, (centre, velocity) in list(cells.items()):
            wobble = 1 + 0.1 * np.sin(0.9 * t + k + np.arange(3))
            truth[t][_ellipsoid(truth.shape[1:], centre, radii[k] * wobble, z_step) & (truth[t] == 0)] = k
            centre = np.clip(centre + velocity + rng.normal(0, 0.3, 3), [0, margin, margin],
                             extent - [0, margin, margin])
            cells[k] = (centre, velocity)
    texture = rng.normal(1.0, 0.15, truth.shape).clip(0.5, 1.5)
    signal = np.where(truth > 0, 1800.0 * texture, 0.0)
    image = rng.poisson(signal + 300.0).astype(np.float64) + rng.normal(0, 20, truth.shape)
    return Nuclei4D(np.clip(image, 0, 65535).astype(np.uint16), truth, parents, divisions)


def central_click(truth3d: np.ndarray, obj_id: int) -> tuple[int, float, float]:
    """(z, y, x) of a click inside object ``obj_id`` on its largest plane: the plane's pixel farthest from the
    object's edge (a hand clicks the middle of a nucleus on its widest section)."""
    from scipy import ndimage

    region = truth3d == obj_id
    z = int(np.argmax(region.sum(axis=(1, 2))))
    inside = ndimage.distance_transform_edt(region[z])
    y, x = np.unravel_index(int(np.argmax(inside)), inside.shape)
    return z, float(y), float(x)
