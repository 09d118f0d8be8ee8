"""Synthetic microscopy time-lapses with exact, linked labels: fluorescent nuclei or phase-contrast-like cells.

Cells are ellipses with irregular outlines (a few Fourier harmonics of the radius) and a texture that moves with
them. They drift in a smooth random walk, push each other apart where they crowd, divide (the mother elongates for a
few frames, then two daughters with new ids move apart), blink out (absent from image and labels for a frame) and go
out of focus (blurred and dimmed, still labelled). The camera adds an uneven background (gradient, vignetting, slow
blotches), Poisson photon noise, Gaussian read noise, an offset and a gain, in 8 or 16 bits. Everything is numpy,
one bounding box per cell: about 10–30 ms per 256² frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from napari_sam2.train.labeled_stack import LabeledStack

KINDS = ("nuclei", "phase")
MIN_RADIUS, MAX_RADIUS = 5.0, 40.0
HARMONICS = 3
MITOSIS_FRAMES = 3
TEXTURE_TILE = 96
TEXTURE_REPEAT = 6  # the tile repeated to cover a cell's square (≤ 5 tiles) from any offset in the first
GAUSSIAN_APPROX_FROM = 20.0  # photon counts above which Poisson noise is drawn as its Gaussian approximation


@dataclass
class SceneParams:
    """What a synthetic stack looks like and how its cells behave (drawn by :func:`draw_scene`)."""

    kind: str
    mean_radius: float
    density: float  # fraction of the frame covered by cells
    clustered: bool
    speed: float  # px per frame (standard deviation of the random walk's velocity)
    division_prob: float  # chance that a cell present at the start divides during the stack
    absent_prob: float  # chance per cell and frame that it is missing (blinking)
    defocus_prob: float  # chance per cell and frame that an out-of-focus episode (1–3 frames) starts
    roughness: float  # amplitude of the outline's harmonics
    elongation: float  # largest ratio of an ellipse's semi-axes
    texture: float  # texture contrast
    peak_photons: float  # expected photons at a bright cell (nuclei) or at the background (phase)
    background: float  # background level relative to peak_photons (nuclei)
    unevenness: float  # amplitude of the background's gradient, vignetting and blotches
    read_noise: float  # Gaussian read noise, photons
    extra: dict[str, float] = field(default_factory=dict)


def draw_scene(rng: np.random.Generator, kind: str) -> SceneParams:
    """Random scene parameters of ``kind`` ("nuclei" or "phase")."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    mean_radius = float(np.exp(rng.uniform(np.log(6.0), np.log(28.0))))
    phase = kind == "phase"
    return SceneParams(
        kind=kind,
        mean_radius=mean_radius,
        density=float(rng.uniform(0.08, 0.45)),
        clustered=bool(rng.random() < 0.4),
        speed=float(mean_radius * rng.uniform(0.03, 0.25)),
        division_prob=float(rng.uniform(0.0, 0.3)),
        absent_prob=float(rng.uniform(0.0, 0.04)),
        defocus_prob=float(rng.uniform(0.0, 0.08)),
        roughness=float(rng.uniform(0.06, 0.22) if phase else rng.uniform(0.0, 0.08)),
        elongation=float(rng.uniform(1.0, 2.2) if phase else rng.uniform(1.0, 1.6)),
        texture=float(rng.uniform(0.05, 0.35)),
        peak_photons=float(np.exp(rng.uniform(np.log(300.0), np.log(3000.0)) if phase else
                                  rng.uniform(np.log(15.0), np.log(2000.0)))),
        background=float(rng.uniform(0.02, 0.3)),
        unevenness=float(rng.uniform(0.0, 0.5)),
        read_noise=float(rng.uniform(0.3, 4.0)),
        extra={
            "body": float(rng.uniform(-0.25, 0.08)),  # phase: cell body relative to the background
            "halo": float(rng.uniform(0.15, 0.6)),  # phase: bright ring around the cell
            "rim": float(rng.uniform(0.0, 0.3)),  # phase: dark ring just inside the outline
        },
    )


@dataclass
class _Cells:
    """State of every cell ever born in a stack (dead ones kept), one entry per array index."""

    ids: np.ndarray
    centre: np.ndarray  # (n, 2) y, x
    velocity: np.ndarray  # (n, 2)
    radius: np.ndarray  # (n,) radius of a round cell of the same area
    aspect: np.ndarray  # (n,) semi-axis ratio a / b
    angle: np.ndarray  # (n,) orientation of the long axis
    spin: np.ndarray  # (n,) angle change per frame
    harmonics: np.ndarray  # (n, HARMONICS) complex amplitudes of the outline's harmonics 2, 3, …
    brightness: np.ndarray  # (n,)
    texture_offset: np.ndarray  # (n, 2) int
    alive: np.ndarray  # (n,) bool
    division_frame: np.ndarray  # (n,) int, -1 = never
    defocus_left: np.ndarray  # (n,) int frames of the current out-of-focus episode
    defocus_level: np.ndarray  # (n,) 0 (sharp) … 1

    def append(self, other: _Cells) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))


def _new_cells(rng: np.random.Generator, scene: SceneParams, centres: np.ndarray, radii: np.ndarray,
               first_id: int) -> _Cells:
    n = len(centres)
    phase = rng.uniform(0, 2 * np.pi, (n, HARMONICS))
    amplitude = scene.roughness * rng.uniform(0, 1, (n, HARMONICS)) / np.arange(1, HARMONICS + 1)
    return _Cells(
        ids=np.arange(first_id, first_id + n),
        centre=centres.astype(np.float64),
        velocity=rng.normal(0, scene.speed, (n, 2)),
        radius=radii.astype(np.float64),
        aspect=rng.uniform(1.0, scene.elongation, n),
        angle=rng.uniform(0, np.pi, n),
        spin=rng.normal(0, 0.05, n),
        harmonics=amplitude * np.exp(1j * phase),
        brightness=np.exp(rng.normal(0, 0.35, n)),
        texture_offset=rng.integers(0, TEXTURE_TILE, (n, 2)),
        alive=np.ones(n, bool),
        division_frame=np.full(n, -1),
        defocus_left=np.zeros(n, int),
        defocus_level=np.zeros(n),
    )


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """(size, size) float32 periodic noise, Gaussian-smoothed by ``sigma`` px, zero mean, unit standard deviation."""
    spectrum = np.fft.rfft2(rng.standard_normal((size, size)))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    noise = np.fft.irfft2(spectrum * np.exp(-2 * (np.pi * sigma) ** 2 * (fy**2 + fx**2)), s=(size, size))
    noise -= noise.mean()
    return (noise / (noise.std() + 1e-12)).astype(np.float32)


def _interpolation_matrix(size: int, points: int) -> np.ndarray:
    """(size, points) weights that linearly interpolate ``points`` evenly spaced samples to ``size`` pixels."""
    pos = np.linspace(0, points - 1, size)
    low = np.minimum(pos.astype(int), points - 2)
    frac = pos - low
    weights = np.zeros((size, points))
    weights[np.arange(size), low] = 1 - frac
    weights[np.arange(size), low + 1] = frac
    return weights


def _background(rng: np.random.Generator, size: int, unevenness: float) -> np.ndarray:
    """(size, size) float32 around 1: a linear gradient, vignetting and slow blotches."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / np.float32(size) - np.float32(0.5)
    angle = rng.uniform(0, 2 * np.pi)
    gradient = np.cos(angle) * yy + np.sin(angle) * xx
    vignette = -(yy**2 + xx**2) * 2
    coarse = rng.standard_normal((5, 5))
    blotches = _interpolation_matrix(size, 5) @ coarse @ _interpolation_matrix(size, 5).T
    weights = rng.dirichlet(np.ones(3)) * unevenness
    field = 1 + weights[0] * gradient + weights[1] * vignette + weights[2] * 0.3 * blotches
    return np.clip(field, 0.2, None).astype(np.float32)


def _place(rng: np.random.Generator, scene: SceneParams, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Initial centres (n, 2) and radii (n,) of the cells of a frame of ``size`` px."""
    count = int(np.clip(round(scene.density * size**2 / (np.pi * scene.mean_radius**2)), 1, 250))
    radii = np.clip(scene.mean_radius * np.exp(rng.normal(0, 0.2, count)), MIN_RADIUS, MAX_RADIUS)
    if scene.clustered:
        hubs = rng.uniform(0.15 * size, 0.85 * size, (int(rng.integers(1, 4)), 2))
        spread = scene.mean_radius * rng.uniform(2.0, 5.0)
        centres = hubs[rng.integers(0, len(hubs), count)] + rng.normal(0, spread, (count, 2))
    else:
        centres = rng.uniform(0, size, (count, 2))
    centres = np.clip(centres, 0, size - 1)
    for _ in range(8):
        centres = _repel(centres, radii, 0.5)
    return centres, radii


def _repel(centres: np.ndarray, radii: np.ndarray, strength: float) -> np.ndarray:
    """Centres pushed apart where two cells overlap by more than a little (they may still touch)."""
    if len(centres) < 2:
        return centres
    delta = centres[:, None, :] - centres[None, :, :]
    dist = np.sqrt((delta**2).sum(-1)) + np.eye(len(centres)) * 1e6 + 1e-6
    overlap = np.clip(0.85 * (radii[:, None] + radii[None, :]) - dist, 0, None)
    push = (delta / dist[..., None] * overlap[..., None]).sum(1) * strength / 2
    return centres + push


def _step(rng: np.random.Generator, cells: _Cells, scene: SceneParams, size: int, frame: int) -> None:
    """Advance every living cell by one frame: move, turn, go through mitosis, divide, blink in and out of focus."""
    live = np.flatnonzero(cells.alive)
    cells.velocity[live] = 0.8 * cells.velocity[live] + rng.normal(0, scene.speed * 0.6, (len(live), 2))
    cells.centre[live] += cells.velocity[live]
    cells.centre[live] = _repel(cells.centre[live], cells.radius[live], 0.4)
    below, above = cells.centre[live] < 0, cells.centre[live] > size - 1
    cells.centre[live] = np.where(below, -cells.centre[live], np.where(above, 2 * (size - 1) - cells.centre[live],
                                                                      cells.centre[live]))
    cells.velocity[live] *= np.where(below | above, -1, 1)
    cells.angle[live] += cells.spin[live]
    cells.harmonics[live] *= np.exp(1j * rng.normal(0, 0.05, (len(live), HARMONICS)))
    starting = (cells.defocus_left[live] == 0) & (rng.random(len(live)) < scene.defocus_prob)
    cells.defocus_left[live[starting]] = rng.integers(1, 4, starting.sum())
    cells.defocus_level[live[starting]] = rng.uniform(0.4, 1.0, starting.sum())
    for i in live[(cells.division_frame[live] > frame) & (cells.division_frame[live] - frame <= MITOSIS_FRAMES)]:
        cells.aspect[i] = min(cells.aspect[i] * 1.15 + 0.1, 2.6)  # elongating before it splits
        cells.brightness[i] *= 1.12
    dividing = live[cells.division_frame[live] == frame]
    if len(dividing):
        _divide(rng, cells, scene, dividing)


def _divide(rng: np.random.Generator, cells: _Cells, scene: SceneParams, mothers: np.ndarray) -> None:
    """Replace each mother by two daughters (new ids) placed along its long axis, moving apart."""
    axis = np.stack([np.sin(cells.angle[mothers]), np.cos(cells.angle[mothers])], axis=1)  # (dy, dx)
    offset = axis * (cells.radius[mothers] * 0.6)[:, None]
    centres = np.concatenate([cells.centre[mothers] + offset, cells.centre[mothers] - offset])
    radii = np.tile(np.clip(cells.radius[mothers] * 0.72, MIN_RADIUS, MAX_RADIUS), 2)
    daughters = _new_cells(rng, scene, centres, radii, int(cells.ids.max()) + 1)
    speed = max(scene.speed, 0.5)
    daughters.velocity = np.concatenate([axis, -axis]) * speed + rng.normal(0, speed * 0.3, (len(centres), 2))
    daughters.brightness = np.tile(cells.brightness[mothers], 2) * 0.9
    cells.alive[mothers] = False
    cells.append(daughters)


def _reach(cells: _Cells, index: np.ndarray, scene: SceneParams) -> np.ndarray:
    """(n,) distance from each cell's centre beyond which it adds no signal (soft edge and halo included)."""
    longest = cells.radius[index] * np.sqrt(cells.aspect[index]) * (1 + np.abs(cells.harmonics[index]).sum(1))
    defocus = np.where(cells.defocus_left[index] > 0, cells.defocus_level[index], 0.0)
    return longest * (1.45 if scene.kind == "phase" else 1.15) + 3 + 5 * defocus


def _cell_patches(cells: _Cells, index: np.ndarray, scene: SceneParams, patch: int):
    """The cells of ``index`` each drawn on a (patch, patch) square around it, all at once.

    Returns ``(rho, shade, grain_weight, corner)``: the normalised radius ρ (< 1 inside the outline), the signal
    without texture, the weight of the texture in the signal (signal = shade + grain_weight × texture), all
    (n, patch, patch) float32, and each square's top-left pixel (n, 2) in the frame.
    """
    half = patch // 2
    centre = cells.centre[index]
    corner = np.floor(centre).astype(int) - half
    steps = np.arange(patch, dtype=np.float32)
    dy = (steps[None, :] + (corner[:, 0] - centre[:, 0]).astype(np.float32)[:, None])[:, :, None]
    dx = (steps[None, :] + (corner[:, 1] - centre[:, 1]).astype(np.float32)[:, None])[:, None, :]

    def per_cell(values: np.ndarray) -> np.ndarray:
        return values.astype(np.float32)[:, None, None]

    radius, stretch = per_cell(cells.radius[index]), per_cell(np.sqrt(cells.aspect[index]))
    cos, sin = per_cell(np.cos(cells.angle[index])), per_cell(np.sin(cells.angle[index]))
    u = (dx * cos + dy * sin) / (radius * stretch)
    v = (dy * cos - dx * sin) * (stretch / radius)
    ellipse = np.sqrt(u * u + v * v) + np.float32(1e-6)
    c1, s1 = u / ellipse, v / ellipse  # cos φ, sin φ; cos mφ and sin mφ follow by recurrence
    cm, sm = c1, s1
    outline = np.ones_like(ellipse)
    for m in range(HARMONICS):
        cm, sm = cm * c1 - sm * s1, sm * c1 + cm * s1
        h = cells.harmonics[index, m]
        outline += per_cell(h.real) * cm - per_cell(h.imag) * sm
    rho = ellipse / np.maximum(outline, np.float32(0.3))
    defocus = per_cell(np.where(cells.defocus_left[index] > 0, cells.defocus_level[index], 0.0))
    edge = (np.float32(0.8) + 4 * defocus) / radius  # edge width in units of ρ
    inside = 1 / (1 + np.exp(np.clip((rho - 1) / edge, -30, 30)))
    dim = 1 - np.float32(0.6) * defocus
    brightness = per_cell(cells.brightness[index])
    if scene.kind == "nuclei":
        shade = (brightness * dim) * inside * (np.float32(1.15) - np.float32(0.3) * rho * rho * inside)
        return rho, shade, shade * np.float32(scene.texture), corner
    width = np.float32(0.1) + edge
    halo = np.float32(scene.extra["halo"]) * np.exp(-(((rho - np.float32(1.08)) / width) ** 2))
    rim = np.float32(-scene.extra["rim"]) * np.exp(-(((rho - np.float32(0.93)) / (width * 0.6)) ** 2))
    shade = dim * (halo + rim + np.float32(scene.extra["body"]) * brightness * inside)
    return rho, shade, (dim * np.float32(0.35 * scene.texture)) * inside, corner


def _render(cells: _Cells, visible: np.ndarray, scene: SceneParams, size: int, texture: np.ndarray,
            background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expected photons (size, size) float32 and labels (size, size) int32 of the cells in ``visible``.

    Each pixel belongs to the cell whose outline it is deepest inside (so crowded cells touch along a border);
    nuclei's signals combine by maximum, phase contrast's add up. Cells are drawn in batches of similar size.
    """
    patches = 2 * (np.ceil(_reach(cells, visible, scene) / 4).astype(int) * 4) + 1
    margin = int(patches.max(initial=0))
    padded = size + 2 * margin
    signal = np.zeros((padded, padded), np.float32)
    labels = np.zeros((padded, padded), np.int32)
    depth = np.full((padded, padded), np.inf, np.float32)
    for patch in np.unique(patches):
        group = visible[patches == patch]
        rho, shade, grain_weight, corner = _cell_patches(cells, group, scene, int(patch))
        corner = np.clip(corner + margin, 0, padded - patch)
        for k, (y, x) in enumerate(corner):
            box = (slice(y, y + patch), slice(x, x + patch))
            claim = (rho[k] < 1) & (rho[k] < depth[box])
            labels[box][claim] = cells.ids[group[k]]
            depth[box][claim] = rho[k][claim]
            ty, tx = cells.texture_offset[group[k]]
            cell = shade[k] + grain_weight[k] * texture[ty : ty + patch, tx : tx + patch]
            if scene.kind == "nuclei":
                np.maximum(signal[box], cell, out=signal[box])
            else:
                signal[box] += cell
    inner = (slice(margin, margin + size), slice(margin, margin + size))
    if scene.kind == "nuclei":
        photons = scene.peak_photons * (scene.background * background + signal[inner])
    else:
        photons = scene.peak_photons * background * np.clip(1 + signal[inner], 0.02, None)
    return photons.astype(np.float32), labels[inner].copy()


def _camera_noise(rng: np.random.Generator, photons: np.ndarray, read_noise: float) -> np.ndarray:
    """Photon counts with Poisson noise (exact below ``GAUSSIAN_APPROX_FROM`` photons, its Gaussian approximation
    above, where the two agree) plus Gaussian read noise."""
    read = np.float32(read_noise)
    noisy = photons + np.sqrt(photons + read * read) * rng.standard_normal(photons.shape, dtype=np.float32)
    dim = photons < GAUSSIAN_APPROX_FROM
    noisy[dim] = rng.poisson(photons[dim]) + read * rng.standard_normal(int(dim.sum()), dtype=np.float32)
    return noisy


def _digitiser(rng: np.random.Generator, dtype: np.dtype, peak: float) -> tuple[float, float]:
    """``(offset, gain)`` of a camera whose brightest expected signal ``peak`` lands at a random fraction of the
    range (8-bit: most of it; 16-bit: anything from a 12-bit camera's to the full range)."""
    if dtype == np.uint8:
        offset, top = rng.uniform(0, 25), rng.uniform(0.35, 0.95) * 255
    else:
        offset, top = rng.uniform(50, 2000), np.exp(rng.uniform(np.log(1500.0), np.log(60000.0)))
    return float(offset), float(max(top - offset, 10.0) / peak)


def synthetic_stack(
    rng: np.random.Generator,
    *,
    kind: str = "nuclei",
    num_frames: int = 8,
    size: int = 256,
    dtype: type | np.dtype = np.uint8,
    scene: SceneParams | None = None,
) -> LabeledStack:
    """A synthetic time-lapse: frames (num_frames, size, size) of ``dtype`` (uint8 or uint16) and linked int32
    labels. ``kind``: "nuclei" (fluorescent) or "phase" (phase-contrast-like); ``scene`` fixes the look and the
    behaviour (default: drawn from ``rng`` by :func:`draw_scene`)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise ValueError(f"dtype must be uint8 or uint16, got {dtype}")
    if num_frames < 1 or size < 16:
        raise ValueError(f"need at least 1 frame of at least 16 px, got {num_frames} frames of {size} px")
    scene = scene or draw_scene(rng, kind)
    centres, radii = _place(rng, scene, size)
    cells = _new_cells(rng, scene, centres, radii, 1)
    divides = rng.random(len(radii)) < scene.division_prob
    if num_frames > 2:
        cells.division_frame[divides] = rng.integers(2, num_frames, divides.sum())
    texture = np.tile(_smooth_noise(rng, TEXTURE_TILE, rng.uniform(0.7, 2.0)), (TEXTURE_REPEAT, TEXTURE_REPEAT))
    background = _background(rng, size, scene.unevenness)
    peak = scene.peak_photons * (1.6 if scene.kind == "phase" else 1.3 + scene.background)
    offset, gain = _digitiser(rng, dtype, peak)
    top = np.iinfo(dtype).max
    frames = np.empty((num_frames, size, size), dtype)
    labels = np.empty((num_frames, size, size), np.int32)
    for t in range(num_frames):
        if t > 0:
            _step(rng, cells, scene, size, t)
        live = np.flatnonzero(cells.alive)
        visible = live[rng.random(len(live)) >= scene.absent_prob]
        photons, labels[t] = _render(cells, visible, scene, size, texture, background * rng.uniform(0.97, 1.03))
        counts = _camera_noise(rng, photons, scene.read_noise)
        frames[t] = np.clip(np.rint(offset + gain * counts), 0, top).astype(dtype)
        cells.defocus_left[live] = np.maximum(cells.defocus_left[live] - 1, 0)
    return LabeledStack(frames, labels, f"synthetic {scene.kind} {size}px {dtype.name}")
