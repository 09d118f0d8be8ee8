"""The classical baseline (threshold, components, overlap linking) on a synthetic pair of moving blobs."""

import numpy as np
from benchmarks.quality_baseline import foreground, otsu_threshold, track
from benchmarks.quality_data import Prompt, bounding_box, click_inside
from benchmarks.quality_metrics import jaccard

SIZE = 64


def disc(cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def blob_pair(num_frames: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Frames (N, 64, 64) uint8 of two bright discs moving 2 px per frame in opposite directions, and their
    masks (2, N, 64, 64)."""
    rng = np.random.default_rng(0)
    masks = np.stack([[disc(20 + 2 * t, 18, 8), disc(44 - 2 * t, 46, 7)] for t in range(num_frames)], axis=1)
    frames = rng.normal(30, 4, (num_frames, SIZE, SIZE)) + 150 * masks.any(axis=0)
    return np.clip(frames, 0, 255).astype(np.uint8), masks


def test_otsu_splits_two_groups():
    values = np.r_[np.full(100, 10.0), np.full(100, 200.0)]
    assert 10 <= otsu_threshold(values) < 200


def test_baseline_follows_each_blob_from_a_click_and_from_a_box():
    frames, masks = blob_pair()
    prompts = [Prompt(k + 1, 0, click_inside(masks[k, 0]), bounding_box(masks[k, 0])) for k in range(2)]
    for use_box in (False, True):
        comps, ids = track(frames, prompts, use_box, "synthetic")
        assert (ids > 0).all()
        for k in range(2):
            for t in range(len(frames)):
                assert jaccard(comps[t] == ids[k, t], masks[k, t]) > 0.85


def test_baseline_tracks_backwards_from_a_later_prompt_and_loses_a_click_on_background():
    frames, masks = blob_pair()
    later = Prompt(1, 2, click_inside(masks[0, 2]), bounding_box(masks[0, 2]))
    background = Prompt(2, 0, (0, 63), (0, 60, 3, 63))
    comps, ids = track(frames, [later, background], False, "synthetic")
    assert all(jaccard(comps[t] == ids[0, t], masks[0, t]) > 0.85 for t in range(4))
    assert (ids[1] == 0).all()


def test_phase_contrast_foreground_finds_a_textured_cell_on_a_flat_background():
    rng = np.random.default_rng(1)
    cell = disc(32, 32, 12)
    frame = np.full((SIZE, SIZE), 120.0) + rng.normal(0, 1, (SIZE, SIZE))
    frame[cell] += rng.normal(0, 40, cell.sum())  # texture inside the cell, mean brightness unchanged
    found = foreground(np.clip(frame, 0, 255).astype(np.uint8), phase_contrast=True)
    assert jaccard(found, cell) > 0.6
