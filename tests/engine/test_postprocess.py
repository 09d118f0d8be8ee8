"""Hole filling (without the reference's CUDA extension) and resizing to the frame's resolution."""

import torch

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
