"""Writing a result given as crops in boxes (a tiled session's) gives the labels its full logits give."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2.io.errors import LabelStoreError
from napari_sam2.io.merge import MANUAL, merge_result, merge_sparse_result


def _crops_of(logits: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    boxes, crops = [], []
    for plane in logits:
        ys, xs = np.nonzero(plane > 0)
        if not len(ys):
            boxes.append((0, 0, 0, 0))
            crops.append(np.zeros((0, 0), np.float32))
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        boxes.append((y0, x0, y1, x1))
        crops.append(plane[y0:y1, x0:x1])
    return np.asarray(boxes), crops


@pytest.mark.parametrize("seed", range(4))
def test_crops_merge_like_full_logits_with_overlaps_ties_and_hand_painting(seed):
    rng = np.random.default_rng(seed)
    h, w = 40, 50
    logits = np.full((4, h, w), -5.0, np.float32)
    for k in range(3):  # three overlapping blobs; the fourth object is absent
        y, x = rng.integers(5, 35), rng.integers(5, 45)
        logits[k, max(y - 8, 0) : y + 8, max(x - 8, 0) : x + 8] = rng.choice([0.5, 1.0, 2.0], (16, 16))[
            : min(y + 8, h) - max(y - 8, 0), : min(x + 8, w) - max(x - 8, 0)]
    current = rng.choice(np.array([0, 1, 2, 9, 11], np.uint32), (h, w))
    provenance = {1: "propagation", 9: MANUAL, 11: "prompt"}
    ids = [1, 2, 3, 4]
    boxes, crops = _crops_of(logits)
    for source in ("propagation", "prompt"):
        dense = merge_result(current, provenance, ids, logits, source)
        sparse = merge_sparse_result(current, provenance, ids, boxes, crops, source)
        np.testing.assert_array_equal(sparse[0], dense[0])
        assert sparse[1] == dense[1]


def test_a_crop_that_does_not_fit_its_box_is_refused():
    current = np.zeros((10, 10), np.uint32)
    with pytest.raises(LabelStoreError, match="does not fit"):
        merge_sparse_result(current, {}, [1], np.array([[0, 0, 4, 4]]), [np.ones((3, 4))], "propagation")
    with pytest.raises(LabelStoreError, match="does not fit"):
        merge_sparse_result(current, {}, [1], np.array([[8, 8, 12, 12]]), [np.ones((4, 4))], "propagation")
