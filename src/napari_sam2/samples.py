"""Sample data: a synthetic fluorescent-cell time-lapse, a synthetic 3D nuclei volume (both generated here, numpy
only), and three small real stacks shipped in ``sample_data/`` (see its README for sources and licences).

Each ``*_sample`` function returns napari layer data, ``[(array, layer_kwargs, "image")]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_DIR = Path(__file__).parent / "sample_data"
LayerData = list[tuple[np.ndarray, dict[str, Any], str]]


def smooth_noise(shape: tuple[int, ...], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise (filtered in Fourier space), normalised to zero mean and unit std."""
    spectrum = np.fft.rfftn(rng.standard_normal(shape))
    freqs = np.meshgrid(*[np.fft.fftfreq(n) for n in shape[:-1]], np.fft.rfftfreq(shape[-1]), indexing="ij")
    radius2 = sum(f**2 for f in freqs)
    field = np.fft.irfftn(spectrum * np.exp(-2 * (np.pi * scale) ** 2 * radius2), s=shape, axes=range(len(shape)))
    return (field - field.mean()) / (field.std() + 1e-12)


def _soft_ellipse(dy: np.ndarray, dx: np.ndarray, ry: float, rx: float, angle: float, edge: float) -> np.ndarray:
    """A filled ellipse with a smooth (logistic) border of width ``edge`` in radius units."""
    cos, sin = np.cos(angle), np.sin(angle)
    u = (cos * dx + sin * dy) / rx
    v = (-sin * dx + cos * dy) / ry
    r = np.sqrt(u**2 + v**2)
    return 1.0 / (1.0 + np.exp(np.clip((r - 1.0) / edge, -50, 50)))


def add_camera_noise(signal: np.ndarray, rng: np.random.Generator, *, offset: float, read_noise: float) -> np.ndarray:
    """Photon (Poisson) noise on ``signal`` plus a camera offset and Gaussian read noise, as uint16."""
    photons = rng.poisson(np.clip(signal, 0, None)).astype(np.float32)
    noisy = photons + offset + rng.normal(0.0, read_noise, signal.shape).astype(np.float32)
    return np.clip(np.round(noisy), 0, np.iinfo(np.uint16).max).astype(np.uint16)


@dataclass
class _Cell:
    y: float
    x: float
    vy: float
    vx: float
    radius: float
    angle: float
    brightness: float
    divides_at: int  # frame of division, or -1
    elongation: float = 1.0


def _initial_cells(n: int, size: int, n_frames: int, rng: np.random.Generator) -> list[_Cell]:
    cells: list[_Cell] = []
    margin = size * 0.12
    while len(cells) < n:
        y, x = rng.uniform(margin, size - margin, 2)
        radius = rng.uniform(0.045, 0.065) * size
        if any(np.hypot(c.y - y, c.x - x) < 2.2 * max(c.radius, radius) for c in cells):
            continue
        divides = rng.random() < 0.35 and n_frames >= 8
        divides_at = int(rng.integers(n_frames // 4, 3 * n_frames // 4)) if divides else -1
        cells.append(_Cell(y, x, *rng.normal(0, 0.6, 2), radius, rng.uniform(0, np.pi), rng.uniform(600, 1400),
                           divides_at))
    return cells


def _step(cells: list[_Cell], frame: int, size: int, rng: np.random.Generator) -> list[_Cell]:
    """Move every cell one frame (persistent random walk, reflected at the borders); divide the ones due."""
    out: list[_Cell] = []
    for c in cells:
        c.vy, c.vx = 0.85 * c.vy + rng.normal(0, 0.5), 0.85 * c.vx + rng.normal(0, 0.5)
        c.y, c.x = c.y + c.vy, c.x + c.vx
        for attr, vel in (("y", "vy"), ("x", "vx")):
            pos = getattr(c, attr)
            if not c.radius < pos < size - c.radius:
                setattr(c, vel, -getattr(c, vel))
                setattr(c, attr, float(np.clip(pos, c.radius, size - c.radius)))
        c.angle += rng.normal(0, 0.05)
        if c.divides_at >= 0 and frame >= c.divides_at - 3:
            c.elongation = 1.0 + 0.25 * (frame - c.divides_at + 4)  # elongates over 3 frames, then splits
        if c.divides_at >= 0 and frame == c.divides_at:
            offset = 0.6 * c.radius
            dy, dx = np.sin(c.angle) * offset, np.cos(c.angle) * offset
            for sign in (1, -1):
                out.append(_Cell(c.y + sign * dy, c.x + sign * dx, c.vy + sign * dy / 3, c.vx + sign * dx / 3,
                                 c.radius * 0.78, c.angle + np.pi / 2, c.brightness * 1.1, -1))
        else:
            if c.radius < 0.06 * size and c.divides_at < 0:
                c.radius *= 1.01  # daughters grow back
            out.append(c)
    return out


def synthetic_cell_timelapse(n_frames: int = 40, size: int = 256, n_cells: int = 10, seed: int = 0) -> np.ndarray:
    """A noisy 16-bit fluorescence time-lapse (T, Y, X) of moving cells, about a third of which divide."""
    rng = np.random.default_rng(seed)
    cells = _initial_cells(n_cells, size, n_frames, rng)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    background = 60.0 + 40.0 * (xx / size) + 15.0 * smooth_noise((size, size), size / 6, rng).astype(np.float32)
    texture = smooth_noise((size, size), 2.0, rng).astype(np.float32)
    stack = np.empty((n_frames, size, size), np.uint16)
    for t in range(n_frames):
        signal = background.copy()
        for c in cells:
            extent = int(c.radius * c.elongation * 1.6) + 2
            y0, y1 = max(int(c.y) - extent, 0), min(int(c.y) + extent + 1, size)
            x0, x1 = max(int(c.x) - extent, 0), min(int(c.x) + extent + 1, size)
            dy, dx = yy[y0:y1, x0:x1] - c.y, xx[y0:y1, x0:x1] - c.x
            body = _soft_ellipse(dy, dx, c.radius, c.radius * c.elongation, c.angle, 0.08)
            signal[y0:y1, x0:x1] += c.brightness * body * (1.0 + 0.18 * texture[y0:y1, x0:x1])
        stack[t] = add_camera_noise(signal, rng, offset=100.0, read_noise=12.0)
        cells = _step(cells, t + 1, size, rng)
    return stack


def synthetic_nuclei_volume(depth: int = 48, size: int = 160, n_nuclei: int = 14, seed: int = 1) -> np.ndarray:
    """A noisy 16-bit 3D volume (Z, Y, X) of ellipsoidal nuclei; z is sampled twice as coarsely as y and x and
    brightness falls off with depth, as in a confocal stack."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[0:depth, 0:size, 0:size].astype(np.float32)
    zz *= 2.0  # anisotropic sampling: one z step is two pixels
    signal = np.full((depth, size, size), 50.0, np.float32)
    texture = smooth_noise((depth, size, size), 1.5, rng).astype(np.float32)
    centres: list[np.ndarray] = []
    while len(centres) < n_nuclei:
        radius = rng.uniform(11, 16)
        centre = np.array([rng.uniform(0.2, 0.8) * depth * 2, *rng.uniform(radius + 4, size - radius - 4, 2)])
        if any(np.linalg.norm(centre - c) < 2.1 * radius for c in centres):
            continue
        centres.append(centre)
        radii = radius * rng.uniform(0.8, 1.2, 3)
        angle = rng.uniform(0, np.pi)
        cos, sin = np.cos(angle), np.sin(angle)
        d = (zz - centre[0], yy - centre[1], xx - centre[2])
        u, v = cos * d[2] + sin * d[1], -sin * d[2] + cos * d[1]
        r = np.sqrt((d[0] / radii[0]) ** 2 + (v / radii[1]) ** 2 + (u / radii[2]) ** 2)
        signal += rng.uniform(700, 1300) / (1.0 + np.exp(np.clip((r - 1.0) / 0.1, -50, 50))) * (1 + 0.2 * texture)
    signal *= np.exp(-np.arange(depth, dtype=np.float32) / (1.5 * depth))[:, None, None]
    return add_camera_noise(signal, rng, offset=100.0, read_noise=10.0)


def cell_timelapse_sample() -> LayerData:
    """napari sample: synthetic dividing cells, 40 frames of 256×256, uint16."""
    meta = {"name": "synthetic cells (t)", "axis_labels": ("t", "y", "x"), "colormap": "gray"}
    return [(synthetic_cell_timelapse(), meta, "image")]


def nuclei_volume_sample() -> LayerData:
    """napari sample: synthetic 3D nuclei, 48 slices of 160×160, uint16, z step twice the pixel size."""
    meta = {"name": "synthetic nuclei (z)", "axis_labels": ("z", "y", "x"), "scale": (2.0, 1.0, 1.0),
            "colormap": "gray"}
    return [(synthetic_nuclei_volume(), meta, "image")]


def _shipped(filename: str) -> np.ndarray:
    with np.load(SAMPLE_DIR / filename) as archive:
        return archive["images"]


def c2c12_sample() -> LayerData:
    """napari sample: C2C12 myoblasts, phase contrast (Ker et al. 2018, CC BY 4.0, via laptrack)."""
    meta = {"name": "C2C12 phase contrast (t)", "axis_labels": ("t", "y", "x"), "colormap": "gray"}
    return [(_shipped("c2c12_phase_contrast.npz"), meta, "image")]


def cancer_cell_migration_sample() -> LayerData:
    """napari sample: migrating cancer-cell nuclei (Tinevez & Jacquemet, Zenodo 5206107, CC BY 4.0), crop."""
    meta = {"name": "cancer cell migration (t)", "axis_labels": ("t", "y", "x"), "colormap": "gray"}
    return [(_shipped("cancer_cell_migration.npz"), meta, "image")]


def mouse_embryo_sample() -> LayerData:
    """napari sample: 8-cell mouse embryo nuclei in 3D (QCANet / BBBC050, CC BY 3.0)."""
    meta = {"name": "mouse embryo nuclei (z)", "axis_labels": ("z", "y", "x"), "colormap": "magma"}
    return [(_shipped("mouse_embryo_8cell.npz"), meta, "image")]
