"""Intensity ranges: robust percentiles from a sample of frames, NaN/inf ignored, constant stacks, all dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2.io import normalize, open_stack
from napari_sam2.io.intensity import sample_indices


class FrameCountingArray:
    """A numpy stack that records which frames (first index) are read."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.frames = data, data.shape, data.dtype, set()

    def __getitem__(self, key):
        self.frames.add(key[0])
        return self.data[key]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int16, np.float32, np.float64])
def test_range_over_all_frames_equals_numpy_percentiles(dtype):
    rng = np.random.default_rng(1)
    data = (rng.gamma(2.0, 30.0, size=(9, 20, 24)) + (10 if np.dtype(dtype).kind != "i" else -40)).astype(dtype)
    lo, hi = open_stack(data).intensity_range((0.5, 99.5), max_frames=100)
    expected = np.percentile(data.astype(np.float64), [0.5, 99.5])
    np.testing.assert_allclose([lo, hi], expected, rtol=1e-6)


def test_range_of_a_long_stack_reads_only_a_sample_and_is_close():
    rng = np.random.default_rng(2)
    data = rng.normal(1000, 100, size=(2000, 16, 16)).astype(np.uint16)
    counting = FrameCountingArray(data)
    lo, hi = open_stack(counting).intensity_range()
    assert len(counting.frames) <= 16 and {0, 1999} <= counting.frames
    true_lo, true_hi = np.percentile(data, [0.5, 99.5])
    assert abs(lo - true_lo) < 15 and abs(hi - true_hi) < 15  # ~4 000 samples of a N(1000, 100) stack


def test_nan_and_inf_are_ignored():
    data = np.linspace(0, 1, 3 * 10 * 10, dtype=np.float32).reshape(3, 10, 10)
    data[0, :3] = np.nan
    data[1, 0, 0] = np.inf
    data[2, 0, 0] = -np.inf
    lo, hi = open_stack(data).intensity_range((1, 99))
    finite = data[np.isfinite(data)]
    np.testing.assert_allclose([lo, hi], np.percentile(finite, [1, 99]), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_constant_stack_has_a_non_empty_range(dtype):
    data = np.full((4, 8, 8), 7, dtype=dtype)
    lo, hi = open_stack(data).intensity_range()
    assert lo == 7.0 and hi > lo
    out = normalize(data[0], lo, hi)
    assert np.isfinite(out).all() and (out == 0).all()


def test_all_nan_stack_falls_back_to_unit_range():
    assert open_stack(np.full((2, 8, 8), np.nan, np.float32)).intensity_range() == (0.0, 1.0)


def test_normalize_maps_range_to_unit_interval():
    frame = np.array([[0, 50, 100, 200]], dtype=np.uint16)
    np.testing.assert_allclose(normalize(frame, 50, 150), [[0.0, 0.0, 0.5, 1.0]])
    assert normalize(np.array([[np.nan]]), 0, 1)[0, 0] == 0.0


def test_sample_indices_spread_and_include_ends():
    assert sample_indices(5, 16) == [0, 1, 2, 3, 4]
    picked = sample_indices(2000, 16)
    assert len(picked) == 16 and picked[0] == 0 and picked[-1] == 1999
    assert max(np.diff(picked)) - min(np.diff(picked)) <= 1
    assert sample_indices(0) == []
