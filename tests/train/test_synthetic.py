"""Synthetic microscopy stacks: right shapes and dtypes, labels that match the image, cells that move, divisions
that end a track and start two, blinking, and fast enough to generate during training."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from napari_sam2.train import draw_scene, synthetic_stack


def _centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0)


def _calm_scene(kind: str = "nuclei", **changes):
    """Sparse, always visible, sharp cells of radius ~10 px (other fields as drawn for seed 0)."""
    scene = draw_scene(np.random.default_rng(0), kind)
    defaults = {"mean_radius": 10.0, "density": 0.06, "clustered": False, "absent_prob": 0.0, "defocus_prob": 0.0,
                "division_prob": 0.0, "speed": 2.0}
    return dataclasses.replace(scene, **(defaults | changes))


@pytest.mark.parametrize("kind", ["nuclei", "phase"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_shapes_dtypes_and_labels(kind, dtype):
    stack = synthetic_stack(np.random.default_rng(1), kind=kind, num_frames=5, size=96, dtype=dtype)
    assert stack.frames.shape == (5, 96, 96) and stack.frames.dtype == dtype
    assert stack.labels.shape == (5, 96, 96) and stack.labels.dtype == np.int32
    assert stack.labels.min() == 0 and (stack.labels[0] > 0).any()
    assert len(np.unique(stack.frames[0])) > 20  # noise and texture, not a flat picture


def test_sixteen_bit_stacks_use_offsets_and_gains_beyond_eight_bits():
    rng = np.random.default_rng(2)
    tops = [int(synthetic_stack(rng, kind="nuclei", num_frames=1, size=64, dtype=np.uint16).frames.max())
            for _ in range(6)]
    assert max(tops) > 255 and len(set(tops)) == 6


def test_nuclei_are_brighter_than_the_background_where_labelled():
    stack = synthetic_stack(np.random.default_rng(3), kind="nuclei", num_frames=2, size=128,
                            scene=_calm_scene(density=0.2))
    inside = stack.frames[stack.labels > 0].astype(float).mean()
    outside = stack.frames[stack.labels == 0].astype(float).mean()
    assert inside > outside + 10


def test_phase_contrast_cells_have_a_bright_halo_just_outside():
    stack = synthetic_stack(np.random.default_rng(4), kind="phase", num_frames=1, size=128,
                            scene=_calm_scene("phase", density=0.15, extra={"body": -0.2, "halo": 0.5, "rim": 0.1}))
    labels = stack.labels[0] > 0
    grown = labels.copy()
    for shift in ((0, 2), (0, -2), (2, 0), (-2, 0)):
        grown |= np.roll(labels, shift, axis=(0, 1))
    ring = grown & ~labels
    frame = stack.frames[0].astype(float)
    assert frame[ring].mean() > frame[labels].mean()
    assert frame[ring].mean() > frame[~grown].mean()


def test_cells_move_and_keep_their_ids():
    stack = synthetic_stack(np.random.default_rng(5), kind="nuclei", num_frames=6, size=128,
                            scene=_calm_scene(speed=3.0))
    first, last = stack.labels[0], stack.labels[-1]
    common = sorted(set(np.unique(first)) & set(np.unique(last)) - {0})
    assert len(common) >= 3
    moves = [np.linalg.norm(_centroid(first == i) - _centroid(last == i)) for i in common]
    assert np.median(moves) > 2.0
    assert max(moves) < 128 / 2  # tracks stay tracks: ids are not reshuffled between cells


def test_a_division_ends_the_mother_and_starts_two_daughters_nearby():
    stack = synthetic_stack(np.random.default_rng(6), kind="nuclei", num_frames=6, size=128,
                            scene=_calm_scene(division_prob=1.0, speed=0.5))
    divisions = 0
    seen = previous = set(np.unique(stack.labels[0])) - {0}
    for t in range(1, len(stack)):
        now = set(np.unique(stack.labels[t])) - {0}
        ended, born = previous - now, now - seen
        for mother in ended:
            where = _centroid(stack.labels[t - 1] == mother)
            near = [d for d in born if np.linalg.norm(_centroid(stack.labels[t] == d) - where) < 20]
            assert len(near) == 2, f"mother {mother} at frame {t - 1} has daughters {near}"
            assert min(near) > max(seen)  # new ids, never seen before
            divisions += 1
        seen, previous = seen | now, now
    assert divisions >= 2


def test_blinking_cells_leave_the_labels_for_a_frame_and_come_back():
    stack = synthetic_stack(np.random.default_rng(7), kind="nuclei", num_frames=8, size=128,
                            scene=_calm_scene(absent_prob=0.25))
    present = [set(np.unique(frame)) - {0} for frame in stack.labels]
    returning = [i for t in range(1, 7) for i in present[t - 1] - present[t] if i in present[t + 1]]
    assert returning


def test_generation_is_fast():
    rng = np.random.default_rng(8)
    synthetic_stack(rng, kind="nuclei", num_frames=1, size=64)  # warm-up
    start = time.process_time()
    for kind in ("nuclei", "phase"):
        for _ in range(2):
            synthetic_stack(rng, kind=kind, num_frames=4, size=256)
    per_frame = (time.process_time() - start) / 16
    assert per_frame < 0.06, f"{per_frame * 1000:.0f} ms of CPU per 256² frame"
