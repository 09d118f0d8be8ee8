"""The classical baseline: a threshold, connected components, and frame-to-frame linking by overlap.

Foreground per frame:
- fluorescence (nuclei bright on dark): Gaussian smoothing (σ = 2 px), Otsu's threshold of that frame, holes filled.
- phase contrast (cells are textured, halo-edged, about as bright as the background): the local standard
  deviation in a 7 × 7 window of the lightly smoothed frame (σ = 1 px) — high on cells and their edges, low on
  the flat background — thresholded by Otsu, then holes filled and one binary opening (3 × 3) to drop specks.
Objects are the 8-connected components. A prompt picks on its frame the component under the click, or for a box
the component overlapping the box most; from there the object is followed to each next frame (forward, and
backward from the prompt frame when it is not the first) as the component overlapping the current mask most.
An object with no component (click on background, or no overlap) is empty from then on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from benchmarks.quality_data import Prompt
from scipy import ndimage as ndi

PHASE_CONTRAST = ("psc", "c2c12")


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a set of values: the cut maximising the between-class variance of a histogram."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(hist)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(hist * centres)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[1:][np.argmax(between)])


def foreground(frame: np.ndarray, phase_contrast: bool) -> np.ndarray:
    """(H, W) bool foreground of one frame (see the module docstring)."""
    image = frame.astype(np.float32)
    if phase_contrast:
        smooth = ndi.gaussian_filter(image, 1.0)
        mean = ndi.uniform_filter(smooth, 7)
        texture = np.sqrt(np.maximum(ndi.uniform_filter(smooth**2, 7) - mean**2, 0))
        mask = ndi.binary_fill_holes(texture > otsu_threshold(texture))
        return ndi.binary_opening(mask, np.ones((3, 3), bool))
    smooth = ndi.gaussian_filter(image, 2.0)
    return ndi.binary_fill_holes(smooth > otsu_threshold(smooth))


def components(frames: np.ndarray, phase_contrast: bool) -> np.ndarray:
    """(N, H, W) int32: each frame's 8-connected foreground components, numbered from 1."""
    return np.stack([ndi.label(foreground(f, phase_contrast), np.ones((3, 3), bool))[0] for f in frames])


def pick(labels: np.ndarray, region: np.ndarray) -> int:
    """The component of ``labels`` (H, W) overlapping the boolean ``region`` most (0 if none)."""
    counts = np.bincount(labels[region], minlength=1)
    counts[0] = 0
    return int(np.argmax(counts))


def track(frames: np.ndarray, prompts: Sequence[Prompt], use_box: bool, dataset: str) -> tuple[np.ndarray, ...]:
    """The components (N, H, W) and, per prompt and frame, the component that is the object (K, N), 0 where
    the object has none: object k's mask on frame t is ``components[t] == ids[k, t]`` if ids[k, t] > 0."""
    comps = components(frames, dataset in PHASE_CONTRAST)
    ids = np.zeros((len(prompts), len(frames)), np.int64)
    for k, prompt in enumerate(prompts):
        region = np.zeros(frames.shape[1:], bool)
        if use_box:
            y0, x0, y1, x1 = prompt.box
            region[y0 : y1 + 1, x0 : x1 + 1] = True
        else:
            region[prompt.click] = True
        ids[k, prompt.frame] = pick(comps[prompt.frame], region)
        for step in (1, -1):
            t = prompt.frame + step
            while 0 <= t < len(frames) and ids[k, t - step] > 0:
                ids[k, t] = pick(comps[t], comps[t - step] == ids[k, t - step])
                t += step
    return comps, ids
