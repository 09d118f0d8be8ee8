"""How new content is merged into a stored 2D label frame, and where each object's content came from.

Provenance: per frame and object, one of ``"prompt"`` (a result computed on a frame the user prompted),
``"propagation"`` (a result carried there by SAM 2's memory) or ``"manual"`` (painted by hand).

Merge rule of :func:`merge_result` — a result ``(obj_ids, logits)`` written to a frame (or the result's ``owners``
map, :class:`RankedResult`, which is all the rule needs when no object is dropped by rule 1):

1. *User edits win.* With ``source="propagation"``, objects of the result whose content on this frame is
   ``"manual"`` are dropped from it: their hand-painted pixels stay exactly as painted. (A ``"prompt"`` result is a
   newer user action than the painting and replaces it.)
2. *A result replaces the previous pixels of the objects it carries*: those pixels are cleared first.
3. Each pixel goes to the carried object with the highest logit, if that logit is > 0 (ties: first in
   ``obj_ids``); where two objects claim a pixel, the higher score wins.
4. A claimed pixel held by an object painted by hand on this frame (``"manual"``, not carried) is kept for that
   object; a claimed pixel held by any other object not carried goes to the new result (the newest result wins over
   older automatic content). Pixels no carried object claims keep their owner.
5. Every carried object's provenance on this frame becomes ``source`` (also when it ends up with no pixels: the
   result said it is absent here).

:func:`merge_manual` stores the painted frame as given and marks ``"manual"`` every object whose pixels changed
(gained or lost, erased ones included), or the objects named explicitly. :func:`merge_edit` does the same for an
edit made in place (a brush stroke, a fill, an undo), and can give changed objects back an earlier provenance (an
undo restores what the frame's objects were before the undone stroke).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np

from napari_sam2.io.errors import LabelStoreError

MANUAL = "manual"
PROMPT = "prompt"
PROPAGATION = "propagation"
RESULT_SOURCES = (PROMPT, PROPAGATION)
PROVENANCES = (PROMPT, PROPAGATION, MANUAL)
MAX_LABEL = np.iinfo(np.uint32).max

Provenance = dict[int, str]


def check_obj_ids(obj_ids: Iterable[int]) -> list[int]:
    """``obj_ids`` as a list of distinct ints in 1 … 2**32 - 1; raises :class:`LabelStoreError` otherwise."""
    ids = [int(o) for o in obj_ids]
    if len(set(ids)) != len(ids):
        raise LabelStoreError(f"object ids {ids} are not distinct")
    bad = [o for o in ids if not 0 < o <= MAX_LABEL]
    if bad:
        raise LabelStoreError(f"object ids must be in 1..{MAX_LABEL} (0 is background), got {bad}")
    return ids


class RankedResult(Protocol):
    """A result that can be merged without moving every object's logits to the host.

    ``owners``: (H, W) integer, the index (into the result's objects) of the object with the highest logit at each
    pixel where that logit is > 0 (NaN counts as −∞, ties go to the first), −1 where no logit is > 0 — all that
    rule 3 needs when every object of the result is carried. ``logits``: (K, H, W) float, read only when some object
    is dropped by rule 1 (then the highest logit among the others decides).
    """

    @property
    def owners(self) -> np.ndarray: ...

    @property
    def logits(self) -> np.ndarray: ...


def merge_result(
    current: np.ndarray,
    provenance: Mapping[int, str],
    obj_ids: Sequence[int],
    logits: np.ndarray | RankedResult,
    source: str,
) -> tuple[np.ndarray, Provenance]:
    """The frame after writing a result, and its provenance (see the module rule).

    ``current``: (H, W) uint32 stored labels; ``logits``: (K, H, W) float, one plane per id of ``obj_ids``, or a
    :class:`RankedResult` of them.
    """
    if source not in RESULT_SOURCES:
        raise LabelStoreError(f"source must be one of {RESULT_SOURCES}, got {source!r}")
    ids = check_obj_ids(obj_ids)
    keep = [k for k, o in enumerate(ids) if not (source == PROPAGATION and provenance.get(o) == MANUAL)]
    ranked = logits if hasattr(logits, "owners") else None
    if ranked is not None and len(keep) == len(ids):
        best = np.asarray(ranked.owners)
        if best.shape != current.shape:
            raise LabelStoreError(f"object owners of shape {best.shape} do not fit a frame of shape {current.shape}")
        claimed = best >= 0
        if claimed.any() and int(best.max()) >= len(ids):
            raise LabelStoreError(f"object owners name index {int(best.max())} of a result of {len(ids)} objects")
    else:
        scores = _check_logits(np.asarray(ranked.logits if ranked is not None else logits), ids, current.shape)
        best, claimed = _owners(scores[keep]) if keep else (None, None)
    carried = np.asarray([ids[k] for k in keep], dtype=np.uint32)
    out = current.copy()
    if carried.size:
        out[np.isin(out, carried)] = 0
        manual_others = [o for o, s in provenance.items() if s == MANUAL and o not in set(carried.tolist())]
        if manual_others:
            claimed &= ~np.isin(out, np.asarray(manual_others, dtype=np.uint32))
        out[claimed] = carried[best[claimed]]
    new_provenance = dict(provenance)
    for o in carried.tolist():
        new_provenance[int(o)] = source
    return out, new_provenance


def _check_logits(logits: np.ndarray, ids: Sequence[int], shape: tuple[int, ...]) -> np.ndarray:
    if logits.ndim != 3 or logits.shape[0] != len(ids) or logits.shape[1:] != shape:
        raise LabelStoreError(
            f"logits of shape {logits.shape} do not fit {len(ids)} objects on a frame of shape {shape}; "
            "expected (K, H, W)"
        )
    return logits


def _owners(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rule 3 on (K, H, W) logits: per pixel the index of the highest logit and whether it is > 0 (NaN as −∞)."""
    scores = logits.astype(np.float32, copy=False)
    if np.isnan(scores).any():
        scores = np.where(np.isnan(scores), -np.inf, scores)
    best, top = _argmax_planes(scores)
    return best, top > 0


def merge_sparse_result(
    current: np.ndarray,
    provenance: Mapping[int, str],
    obj_ids: Sequence[int],
    boxes: np.ndarray,
    crops: Sequence[np.ndarray],
    source: str,
) -> tuple[np.ndarray, Provenance]:
    """:func:`merge_result` for a result given as crops: object k's logits are ``crops[k]`` inside ``boxes[k]``
    (y0, x0, y1, x1; end exclusive; an empty box for no pixel) and −inf elsewhere — the same labels as the full
    logits would give wherever they are ≤ 0 outside the boxes. Works on the boxes' union only (no (K, H, W)).
    """
    if source not in RESULT_SOURCES:
        raise LabelStoreError(f"source must be one of {RESULT_SOURCES}, got {source!r}")
    ids = check_obj_ids(obj_ids)
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    height, width = current.shape
    if len(boxes) != len(ids) or len(crops) != len(ids):
        raise LabelStoreError(f"{len(boxes)} boxes and {len(crops)} crops do not fit {len(ids)} objects")
    for (y0, x0, y1, x1), crop in zip(boxes, crops, strict=True):
        if not (0 <= y0 <= y1 <= height and 0 <= x0 <= x1 <= width) or np.shape(crop) != (y1 - y0, x1 - x0):
            raise LabelStoreError(f"a crop of shape {np.shape(crop)} in box {(y0, x0, y1, x1)} does not fit a "
                                  f"frame of shape {current.shape}")
    keep = [k for k, o in enumerate(ids) if not (source == PROPAGATION and provenance.get(o) == MANUAL)]
    carried = np.asarray([ids[k] for k in keep], dtype=np.uint32)
    out = current.copy()
    if carried.size:
        out[np.isin(out, carried)] = 0
        present = [k for k in keep if boxes[k, 2] > boxes[k, 0] and boxes[k, 3] > boxes[k, 1]]
        if present:
            ry0, rx0 = boxes[present, 0].min(), boxes[present, 1].min()
            ry1, rx1 = boxes[present, 2].max(), boxes[present, 3].max()
            top = np.full((ry1 - ry0, rx1 - rx0), -np.inf, np.float32)
            best = np.zeros(top.shape, np.uint32)
            for k in present:  # in order, strictly better only: ties go to the first, as in merge_result
                y0, x0, y1, x1 = boxes[k] - [ry0, rx0, ry0, rx0]
                plane = np.asarray(crops[k], dtype=np.float32)
                plane = np.where(np.isnan(plane), -np.inf, plane)
                better = plane > top[y0:y1, x0:x1]
                best[y0:y1, x0:x1][better] = ids[k]
                np.maximum(top[y0:y1, x0:x1], plane, out=top[y0:y1, x0:x1])
            claimed = top > 0
            region = out[ry0:ry1, rx0:rx1]
            manual_others = [o for o, s in provenance.items() if s == MANUAL and o not in set(carried.tolist())]
            if manual_others:
                claimed &= ~np.isin(region, np.asarray(manual_others, dtype=np.uint32))
            region[claimed] = best[claimed]
    new_provenance = dict(provenance)
    for o in carried.tolist():
        new_provenance[int(o)] = source
    return out, new_provenance


def _argmax_planes(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(index, value)`` of the largest of K planes (K, H, W) per pixel; ties go to the first plane.

    Plane by plane, which is several times faster than ``argmax(axis=0)`` on large frames.
    """
    top = scores[0].copy()
    best = np.zeros(top.shape, dtype=np.intp)
    for k in range(1, scores.shape[0]):
        better = scores[k] > top
        best[better] = k
        np.maximum(top, scores[k], out=top)
    return best, top


def check_label_frame(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``labels`` as a (H, W) uint32 frame; raises :class:`LabelStoreError` for a wrong shape, dtype or value."""
    labels = np.asarray(labels)
    if labels.shape != tuple(shape):
        raise LabelStoreError(f"a label frame of shape {labels.shape} does not fit frames of shape {tuple(shape)}")
    if labels.dtype.kind == "b":
        return labels.astype(np.uint32)
    if labels.dtype.kind not in "iu":
        raise LabelStoreError(f"label frames must hold integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > MAX_LABEL):
        raise LabelStoreError(f"label values must be in 0..{MAX_LABEL}, got {labels.min()}..{labels.max()}")
    return labels.astype(np.uint32, copy=False)


def merge_manual(
    current: np.ndarray,
    provenance: Mapping[int, str],
    painted: np.ndarray,
    obj_ids: Iterable[int] | None = None,
) -> tuple[np.ndarray, Provenance]:
    """The painted frame (stored as given) and its provenance: changed (or named) objects become ``"manual"``."""
    painted = check_label_frame(painted, current.shape)
    if obj_ids is None:
        changed = current != painted
        marked = set(np.unique(current[changed]).tolist()) | set(np.unique(painted[changed]).tolist())
        marked.discard(0)
    else:
        marked = set(check_obj_ids(obj_ids))
    new_provenance = dict(provenance)
    for o in marked:
        new_provenance[int(o)] = MANUAL
    return painted.copy(), new_provenance


def merge_edit(
    current: np.ndarray,
    provenance: Mapping[int, str],
    edited: np.ndarray,
    restore: Mapping[int, str | None] | None = None,
) -> tuple[np.ndarray, Provenance, set[int]]:
    """The edited frame (stored as given), its provenance and the ids of the objects whose pixels changed.

    Changed objects become ``"manual"``, except those named in ``restore``, which take the provenance given there
    (None: no provenance, as before the object was first written to this frame). Unchanged objects keep theirs.
    """
    edited = check_label_frame(edited, current.shape)
    differs = current != edited
    changed = (set(np.unique(current[differs]).tolist()) | set(np.unique(edited[differs]).tolist())) - {0}
    new_provenance = dict(provenance)
    for o in changed:
        if restore is not None and o in restore:
            if restore[o] is None:
                new_provenance.pop(o, None)
            else:
                new_provenance[o] = str(restore[o])
        else:
            new_provenance[o] = MANUAL
    return edited.copy(), new_provenance, {int(o) for o in changed}
