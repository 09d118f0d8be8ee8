"""Hole filling (without the reference's CUDA extension) and resizing to the frame's resolution."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_sam2.engine.postprocess import HOLE_FILL_SCORE, fill_holes, to_frame_resolution


def test_small_holes_are_filled_and_large_ones_kept():
    logits = torch.full((2, 1, 32, 32), 5.0)
    logits[0, 0, 4:6, 4:7] = -3.0  # a 6-pixel hole
    logits[0, 0, 15:25, 15:25] = -3.0  # a 100-pixel hole
    logits[1, 0, 10, 10] = -1.0  # a 1-pixel hole in the second object
    out = fill_holes(logits, max_area=8)
    assert torch.all(out[0, 0, 4:6, 4:7] == HOLE_FILL_SCORE)
    assert torch.all(out[0, 0, 15:25, 15:25] == -3.0)
    assert out[1, 0, 10, 10] == HOLE_FILL_SCORE
    assert torch.equal(out[logits > 0], logits[logits > 0])  # foreground untouched


def test_diagonal_pixels_belong_to_one_hole():
    logits = torch.full((1, 1, 16, 16), 5.0)
    for i in range(6):
        logits[0, 0, 3 + i, 3 + i] = -2.0  # 6 pixels touching only at corners: one 8-connected hole
    assert torch.all(fill_holes(logits, max_area=6)[0, 0].diagonal()[3:9] == HOLE_FILL_SCORE)
    assert torch.all(fill_holes(logits, max_area=5)[0, 0].diagonal()[3:9] == -2.0)


def test_no_filling_when_disabled_and_resizing_is_bilinear():
    logits = torch.randn(3, 1, 8, 8)
    assert fill_holes(logits, 0) is logits
    up = to_frame_resolution(logits, 16, 24)
    assert up.shape == (3, 16, 24)
    expected = torch.nn.functional.interpolate(logits, size=(16, 24), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(up, expected)


def _holes_by_scipy(background: np.ndarray, max_area: int) -> np.ndarray:
    """The oracle: 8-connected components of the background by scipy, those of at most max_area pixels."""
    labels, count = ndimage.label(background, structure=np.ones((3, 3), dtype=bool))
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    small = areas <= max_area
    small[0] = False
    return small[labels]


@pytest.mark.parametrize("max_area", [1, 4, 8, 20])
def test_holes_equal_scipy_connected_components_on_random_masks(max_area):
    """Random blobs, thin lines, spirals of background: exactly the small 8-connected components are filled."""
    rng = np.random.default_rng(max_area)
    noise = ndimage.gaussian_filter(rng.normal(size=(6, 64, 64)), sigma=(0, 1.2, 1.2))
    logits = torch.from_numpy(np.where(noise > 0.05, 4.0, -4.0).astype(np.float32))[:, None]
    logits[0, 0, 10, :] = -4.0  # a long 1-pixel line (labels still differ along it after max_area steps)
    logits[1, 0] = 4.0
    logits[1, 0, 5:30, 7] = -1.0  # a 25-pixel vertical line
    logits[1, 0, 40, 40:40 + max_area] = -1.0  # exactly max_area pixels: a hole
    out = fill_holes(logits, max_area)
    for b in range(logits.shape[0]):
        expected = _holes_by_scipy(logits[b, 0].numpy() <= 0, max_area)
        filled = (out[b, 0] == HOLE_FILL_SCORE).numpy() & (logits[b, 0] <= 0).numpy()
        assert np.array_equal(filled, expected), f"object {b}: {np.argwhere(filled != expected)[:5]}"
        assert torch.equal(out[b, 0][~torch.from_numpy(expected)], logits[b, 0][~torch.from_numpy(expected)])
