"""Tile layout over frames larger than the model's input, and the "auto" rule for tiling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_sam2.engine.tiles import TileLayout, choose_tiling, mask_box, should_tile


@pytest.mark.parametrize("height,width", [(4096, 4096), (1000, 700), (513, 2000)])
def test_tiles_cover_the_frame_with_at_least_the_overlap_between_neighbours(height, width):
    layout = TileLayout(height, width, 512, 128)
    covered = np.zeros((height, width), np.int32)
    for y0, x0, y1, x1 in layout.boxes:
        assert (y1 - y0, x1 - x0) == (min(512, height), min(512, width))
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 1
    for axis_starts, side in ((sorted({b[0] for b in layout.boxes}), height),
                              (sorted({b[1] for b in layout.boxes}), width)):
        assert axis_starts[0] == 0 and axis_starts[-1] + min(512, side) == side
        gaps = np.diff(axis_starts)
        assert (gaps <= 512 - 128).all()  # neighbours share at least the overlap
    n = math.ceil((4096 - 128) / (512 - 128))
    if height == 4096:
        assert len(layout) == n * n


def test_a_frame_no_larger_than_a_tile_is_one_tile():
    assert TileLayout(300, 200, 512, 64).boxes == ((0, 0, 300, 200),)


def test_the_best_tile_holds_a_box_most_centrally():
    layout = TileLayout(1000, 1000, 512, 128)  # starts 0, 244, 488 on each axis
    starts = sorted({b[1] for b in layout.boxes})
    assert starts == [0, 244, 488]
    box = (20, 420, 40, 440)  # near the top, between the first two columns
    best = layout.best_tile(box)
    assert layout.boxes[best][:2] == (0, 244)
    assert layout.margin(best, box) == min(440 + 0 - 244 - 20, 756 - 440)  # x0 - tile x0 = 176; tile y1 - y1
    assert layout.margin(0, (0, 0, 10, 10)) == 502  # the frame's own borders do not count


def test_auto_tiles_only_large_frames_with_small_objects():
    assert should_tile(4096, 4096, 1024, 20)  # 20 px → 5 px after resizing
    assert not should_tile(4096, 4096, 1024, 80)  # 80 px → 20 px: fine resized
    assert not should_tile(1000, 1000, 1024, 5)  # the frame fits the model
    assert should_tile(4096, 4096, 1024, None) and not should_tile(2048, 2048, 1024, None)  # no size: 4 × input
    assert choose_tiling("on", 100, 100, 1024, None) and not choose_tiling("off", 8000, 8000, 1024, 2)
    with pytest.raises(ValueError, match="'auto', 'on' or 'off'"):
        choose_tiling("yes", 100, 100, 1024, None)


def test_bad_layouts_are_refused():
    with pytest.raises(ValueError, match="overlap"):
        TileLayout(1000, 1000, 512, 512)
    with pytest.raises(ValueError, match="overlap"):
        TileLayout(1000, 1000, 512, -1)


def test_mask_box():
    mask = np.zeros((10, 12), bool)
    assert mask_box(mask) is None
    mask[2:5, 7:9] = True
    assert mask_box(mask) == (2, 7, 5, 9)
