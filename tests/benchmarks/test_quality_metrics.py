"""The evaluation's measures on made-up masks with values worked out by hand."""

import numpy as np
import pytest
from benchmarks.quality_metrics import boundary, boundary_f, jaccard, link_by_overlap, masks_to_labels, seg_matches


def square(y0: int, x0: int, size: int = 10, shape=(40, 40)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0 : y0 + size, x0 : x0 + size] = True
    return mask


def test_boundary_of_a_square_is_its_ring():
    assert boundary(square(5, 5, 3)).sum() == 8  # 3 × 3: all but the centre
    assert boundary(square(5, 5, 10)).sum() == 36
    corner = square(0, 0, 3)  # the image edge counts as outside
    assert boundary(corner).sum() == 8


def test_jaccard_of_a_shifted_square():
    # 10 × 10 squares 3 px apart along x: 70 px shared, 130 px in the union
    assert jaccard(square(10, 13), square(10, 10)) == pytest.approx(70 / 130)
    assert jaccard(square(10, 10), square(10, 10)) == 1.0
    assert jaccard(np.zeros((4, 4), bool), np.zeros((4, 4), bool)) == 1.0
    assert jaccard(square(0, 0, 2, (4, 4)), np.zeros((4, 4), bool)) == 0.0


def test_boundary_f_of_a_square_shifted_by_three_pixels():
    # Each square's 36 boundary pixels: 9 of the 10 on the top row and 9 on the bottom row lie within 2 px of the
    # other square's boundary, 4 of the 8 on the near side column (those within 2 rows of a corner), 0 on the far
    # side column (3 px away): 22 of 36 both ways.
    assert boundary_f(square(10, 13), square(10, 10)) == pytest.approx(22 / 36)


def test_boundary_f_tolerance_is_inclusive_and_empty_cases():
    assert boundary_f(square(10, 12), square(10, 10)) == pytest.approx(1.0)  # every pixel exactly 2 px away or less
    assert boundary_f(square(10, 13), square(10, 10), tolerance=3.0) == pytest.approx(1.0)
    empty = np.zeros((40, 40), bool)
    assert boundary_f(empty, empty) == 1.0
    assert boundary_f(square(10, 10), empty) == 0.0
    assert boundary_f(empty, square(10, 10)) == 0.0


def test_seg_takes_the_object_covering_more_than_half():
    true = np.zeros((40, 40), np.uint16)
    true[0:10, 0:10] = 1  # A, 100 px
    true[20:30, 20:30] = 2  # B, 100 px
    pred = np.zeros_like(true)
    pred[0:10, 4:12] = 7  # 60 px of A, 20 px outside: IoU 60 / (100 + 80 - 60) = 0.5
    pred[20:25, 20:30] = 9  # exactly half of B: not more than half, so 0
    assert seg_matches(pred, true) == pytest.approx([0.5, 0.0])
    assert seg_matches(np.zeros_like(true), true) == [0.0, 0.0]
    assert seg_matches(pred, np.zeros_like(true)) == []


def test_seg_in_3d_scores_a_volume_once():
    true = np.zeros((4, 10, 10), np.uint8)
    true[0:2, 0:5, 0:5] = 3  # 50 voxels
    pred = np.zeros_like(true)
    pred[0:2, 0:5, 0:4] = 1  # 40 voxels inside: IoU 0.8
    pred[2:4, 0:5, 0:5] = 2  # another object beside it: no effect
    assert seg_matches(pred, true) == pytest.approx([0.8])


def test_masks_to_labels_gives_overlaps_to_the_higher_logit():
    masks = np.stack([square(0, 0, 4, (6, 6)), square(2, 2, 4, (6, 6))])
    logits = np.stack([np.full((6, 6), 2.0), np.full((6, 6), 1.0)])
    labels = masks_to_labels(masks, [5, 8], logits)
    assert labels[3, 3] == 5 and labels[5, 5] == 8 and labels[0, 0] == 5 and labels[0, 5] == 0
    assert masks_to_labels(masks, [5, 8])[3, 3] == 8  # without logits the later object wins
    assert masks_to_labels(masks[:0], []).sum() == 0


def test_link_by_overlap_follows_objects_whose_ids_change():
    frames = np.zeros((3, 20, 40), np.uint8)
    frames[0, 2:8, 2:8], frames[0, 2:8, 20:26] = 4, 9  # left 4, right 9
    frames[1, 3:9, 3:9], frames[1, 2:8, 21:27] = 2, 1  # ids swap order; both moved by 1 px
    frames[1, 15:18, 35:38] = 3  # a new object with no overlap
    frames[2, 3:9, 4:10] = 1  # only the left one remains
    linked, fraction = link_by_overlap(frames)
    assert linked[0, 5, 5] == 1 and linked[0, 5, 22] == 2  # ids in order of the first frame's labels
    assert linked[1, 5, 5] == 1 and linked[1, 5, 23] == 2 and linked[1, 16, 36] == 3
    assert linked[2, 5, 6] == 1 and set(np.unique(linked[2])) == {0, 1}
    assert fraction == pytest.approx(3 / 4)  # frame 1: 2 of 3 linked; frame 2: 1 of 1
