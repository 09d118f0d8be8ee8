"""The user's overrides of the lineage the division rule made: mark a division, merge two tracks, split a track at a
frame, end a track at a frame. No Qt and no torch. ``view`` is a label store ``FrameView`` (frames along the
session's axis), ``store`` a ``LabelStore``.

Parents are links in the label store (``LabelStore.set_object_parent``). Merge, split and end change labels, so
they go through the store's hand-edit path (``LabelStore.write_edit_at``), frame by frame: every object whose pixels
an override changed becomes "manual" on that frame, exactly as if painted — a later propagation keeps the override
(a track ended at frame f stays absent there; a split-off track keeps its new id) instead of undoing it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from napari_sam2.io.errors import LabelStoreError


def _store_coords(view: Any, frame: int) -> tuple[int, ...]:
    """The store's coordinates (index on every non-spatial axis) of ``view``'s frame ``frame``."""
    named = view.coords(frame)
    return tuple(named[name] for name in view.store.dimension_names[:-2])


def _edit_frames(view: Any, frames: range, obj_id: int, edit: Callable[[np.ndarray], np.ndarray]) -> list[int]:
    """Apply ``edit`` to every frame of ``frames`` where ``obj_id`` has pixels, as hand edits; returns those frames."""
    done = []
    for frame in frames:
        if (view.read_frame(frame) == obj_id).any():
            view.store.write_edit_at(_store_coords(view, frame), edit)
            done.append(frame)
    return done


def _check_objects(store: Any, *obj_ids: int) -> None:
    missing = [o for o in obj_ids if o not in store.objects]
    if missing:
        raise LabelStoreError(f"no object {', '.join(map(str, missing))} in {store.path}")
    if len(set(obj_ids)) != len(obj_ids):
        raise LabelStoreError(f"the objects must differ, got {', '.join(map(str, obj_ids))}")


def children(store: Any, obj_id: int) -> list[int]:
    """Objects whose parent is ``obj_id``."""
    return sorted(i for i, info in store.objects.items() if getattr(info, "parent", None) == obj_id)


def mark_division(store: Any, parent: int, daughters: tuple[int, int]) -> None:
    """``parent`` divided into the two ``daughters``: both get it as their parent (durable)."""
    _check_objects(store, parent, *daughters)
    for daughter in daughters:
        store.set_object_parent(daughter, parent)


def merge_tracks(view: Any, keep: int, absorb: int) -> list[int]:
    """``absorb`` is the same cell as ``keep``: its pixels become ``keep``'s on every frame, its daughters become
    ``keep``'s, and ``keep`` takes its parent if it has none. Returns the frames changed. (The caller then deletes
    ``absorb``, which has no pixels left, from the session: see ``TrackingController.delete_object``.)"""
    store = view.store
    _check_objects(store, keep, absorb)
    frames = _edit_frames(view, range(len(view)), absorb, lambda p: np.where(p == absorb, np.uint32(keep), p))
    for child in children(store, absorb):
        store.set_object_parent(child, keep)
    inherited = getattr(store.objects[absorb], "parent", None)
    if getattr(store.objects[keep], "parent", None) is None and inherited not in (None, keep):
        store.set_object_parent(keep, inherited)
    return frames


def split_track(view: Any, obj_id: int, frame: int, new_id: int) -> list[int]:
    """From ``frame`` on, ``obj_id`` is another cell: its pixels there become ``new_id`` (a new object with the same
    review status), and its daughters follow the new track. Returns the frames changed."""
    store = view.store
    _check_objects(store, obj_id)
    if new_id in store.objects:
        raise LabelStoreError(f"object {new_id} already exists in {store.path}")
    frames = _edit_frames(view, range(frame, len(view)), obj_id,
                          lambda p: np.where(p == obj_id, np.uint32(new_id), p))
    if not frames:
        raise LabelStoreError(f"object {obj_id} has no pixels from {view.axis} {frame} on: nothing to split")
    status = store.objects[obj_id].status
    if status is not None:
        store.set_object_status(new_id, status)
    for child in children(store, obj_id):
        store.set_object_parent(child, new_id)
    return frames


def end_track(view: Any, obj_id: int, frame: int) -> list[int]:
    """``obj_id`` ends before ``frame``: its pixels from ``frame`` on are erased (and stay erased: "manual").
    Returns the frames changed."""
    _check_objects(view.store, obj_id)
    return _edit_frames(view, range(frame, len(view)), obj_id, lambda p: np.where(p == obj_id, np.uint32(0), p))
