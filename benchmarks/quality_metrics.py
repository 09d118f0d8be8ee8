"""Segmentation and tracking quality measures for the evaluation (numpy + scipy only).

- J: the Jaccard index (IoU) of one object's predicted and true masks.
- F: the DAVIS boundary F-measure: precision and recall of the predicted object's boundary pixels against the
  true boundary, a boundary pixel counting as matched when the other boundary lies within ``tolerance`` pixels
  (Euclidean). A boundary pixel is an object pixel with a 4-neighbour outside the object (or outside the image).
- SEG: the Cell Tracking Challenge measure: each reference object is matched to the predicted object that
  covers more than half of it (at most one can) and scores their IoU, else 0; SEG is the mean over all
  reference objects. Works on 2D frames and 3D volumes alike.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment


def jaccard(pred: np.ndarray, true: np.ndarray) -> float:
    """IoU of two boolean masks of one shape; 1.0 when both are empty."""
    union = np.count_nonzero(pred | true)
    return 1.0 if union == 0 else np.count_nonzero(pred & true) / union


def boundary(mask: np.ndarray) -> np.ndarray:
    """The mask's boundary pixels (bool, same shape): mask pixels with a 4-neighbour outside it."""
    return mask & ~ndi.binary_erosion(mask, border_value=0)


def boundary_f(pred: np.ndarray, true: np.ndarray, tolerance: float = 2.0) -> float:
    """DAVIS boundary F-measure of two (H, W) boolean masks; 1.0 when both are empty, 0.0 when one is."""
    if not pred.any() and not true.any():
        return 1.0
    if not pred.any() or not true.any():
        return 0.0
    rows, cols = np.nonzero(pred | true)
    margin = int(np.ceil(tolerance)) + 2  # crop for speed; the margin keeps crop edges off the objects
    window = (slice(max(rows.min() - margin, 0), rows.max() + margin + 1),
              slice(max(cols.min() - margin, 0), cols.max() + margin + 1))
    pred_edge, true_edge = boundary(pred[window]), boundary(true[window])
    to_true = ndi.distance_transform_edt(~true_edge)
    to_pred = ndi.distance_transform_edt(~pred_edge)
    precision = np.count_nonzero(to_true[pred_edge] <= tolerance) / np.count_nonzero(pred_edge)
    recall = np.count_nonzero(to_pred[true_edge] <= tolerance) / np.count_nonzero(true_edge)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def seg_matches(pred_labels: np.ndarray, true_labels: np.ndarray) -> list[float]:
    """Per reference object of ``true_labels`` (0 = background), the IoU with the predicted object covering
    more than half of it, or 0.0; label images of one shape, 2D or 3D."""
    _, _, inter, true_size, pred_size = overlap_table(true_labels, pred_labels)
    iou = inter / np.maximum(true_size[:, None] + pred_size[None, :] - inter, 1)
    return np.where(inter > 0.5 * true_size[:, None], iou, 0.0).max(axis=1, initial=0.0).tolist()


def masks_to_labels(masks: np.ndarray, obj_ids: list[int], logits: np.ndarray | None = None) -> np.ndarray:
    """(K, H, W) boolean masks → (H, W) uint32 label image; where masks overlap, the object with the highest
    logit wins (``logits`` (K, H, W)), or without logits the later object."""
    labels = np.zeros(masks.shape[1:], np.uint32)
    if len(obj_ids) == 0:
        return labels
    if logits is None:
        for mask, obj in zip(masks, obj_ids, strict=True):
            labels[mask] = obj
        return labels
    scored = np.where(masks, logits, -np.inf)
    best = np.argmax(scored, axis=0)
    inside = np.take_along_axis(masks, best[None], 0)[0]
    labels[inside] = np.asarray(obj_ids, np.uint32)[best[inside]]
    return labels


def overlap_table(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    """Label images of one shape → ids of ``a`` (A,), ids of ``b`` (B,), overlap pixel counts (A, B), and the
    objects' sizes (A,) and (B,)."""
    a, b = a.ravel(), b.ravel()
    a_ids, b_ids = np.unique(a[a > 0]), np.unique(b[b > 0])
    both = (a > 0) & (b > 0)
    inter = np.zeros((len(a_ids), len(b_ids)))
    if both.any():
        pairs, counts = np.unique(np.stack([a[both], b[both]]), axis=1, return_counts=True)
        inter[np.searchsorted(a_ids, pairs[0]), np.searchsorted(b_ids, pairs[1])] = counts
    a_size = np.bincount(a, minlength=1)[a_ids].astype(float)
    b_size = np.bincount(b, minlength=1)[b_ids].astype(float)
    return a_ids, b_ids, inter, a_size, b_size


def pair_ious(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ids of label image ``a`` (A,), ids of ``b`` (B,), and their IoU matrix (A, B)."""
    a_ids, b_ids, inter, a_size, b_size = overlap_table(a, b)
    return a_ids, b_ids, inter / np.maximum(a_size[:, None] + b_size[None, :] - inter, 1)


def link_by_overlap(labels: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-frame label images (N, H, W) whose ids are not linked over time → ids linked frame to frame by a
    one-to-one assignment of maximal total IoU (pairs with IoU 0 stay unlinked; an unlinked object gets a new
    id). Also returns the fraction of objects after frame 0 that were linked to one in the frame before."""
    linked = np.zeros(labels.shape, np.uint32)
    ids = np.unique(labels[0][labels[0] > 0])
    linked[0] = relabel(labels[0], ids, np.arange(1, len(ids) + 1))
    next_id, joined, total = len(ids) + 1, 0, 0
    for t in range(1, len(labels)):
        prev_ids, cur_ids, ious = pair_ious(linked[t - 1], labels[t])
        new = np.zeros(len(cur_ids), np.int64)
        rows, cols = linear_sum_assignment(-ious) if ious.size else ([], [])
        for r, c in zip(rows, cols, strict=True):
            if ious[r, c] > 0:
                new[c] = prev_ids[r]
        joined, total = joined + int(np.count_nonzero(new)), total + len(cur_ids)
        for c in np.flatnonzero(new == 0):
            new[c], next_id = next_id, next_id + 1
        linked[t] = relabel(labels[t], cur_ids, new)
    return linked, joined / total if total else 1.0


def relabel(labels: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """``labels`` with each id old[i] replaced by new[i] (uint32); other ids become 0."""
    lut = np.zeros(int(labels.max()) + 1, np.uint32)
    lut[np.asarray(old, np.int64)] = new
    return lut[labels]
