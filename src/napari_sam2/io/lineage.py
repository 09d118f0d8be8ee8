"""Lineage out of a label store: each object's span in time, its parent, and centroids for napari's Tracks layer.

An object of the store is one track: its label value is its track id, its first and last frames are where it has
pixels along the time axis, and ``ObjectInfo.parent`` names the object it divided from (set by the automatic
tracking's division rule or by hand). Nothing here is stored twice: spans and centroids are read from the labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_sam2.io.errors import LabelStoreError


@dataclass(frozen=True)
class TrackSpan:
    """One object's track: the frames (along the time axis) where it first and last has pixels, and its parent's id
    (None when it has none, or when the parent has no pixels anywhere)."""

    obj_id: int
    first_frame: int
    last_frame: int
    parent: int | None


def time_axes(store: Any, axis: str | None = None) -> tuple[str, str | None]:
    """``(time axis, depth axis or None)`` of a store: ``axis``, else ``t``, else its first frame axis; z is the
    depth axis when it is not the time axis. Any other frame axis longer than 1 is an error."""
    names = list(store.dimension_names[:-2])
    time_axis = axis if axis is not None else "t" if "t" in names else names[0]
    if time_axis not in names:
        raise LabelStoreError(f"{store.path}: no axis {time_axis!r} among the frame axes {names}")
    depth = "z" if "z" in names and time_axis != "z" else None
    extra = [n for n in names if n not in (time_axis, depth) and store.shape[names.index(n)] > 1]
    if extra:
        raise LabelStoreError(f"{store.path}: axes {extra} cannot be part of tracks (time, z, y, x only)")
    return time_axis, depth


def object_rows(store: Any, axis: str | None = None) -> np.ndarray:
    """One row per object and time point where it has pixels: ``[obj_id, t, (z,) y, x, area]`` float64, centroid
    in pixels (z included when the store has a depth axis), area in pixels (voxels); sorted by id, then time."""
    time_axis, depth = time_axes(store, axis)
    names = list(store.dimension_names[:-2])
    n_z = store.shape[names.index(depth)] if depth else 1
    h, w = store.shape2d
    yy, xx = np.mgrid[0:h, 0:w]
    rows = []
    for t in range(store.shape[names.index(time_axis)]):
        count = np.zeros(1)
        sums = [np.zeros(1) for _ in range(3)]
        for z in range(n_z):
            coords = tuple(t if n == time_axis else z if n == depth else 0 for n in names)
            flat = store.read_plane(coords).ravel().astype(np.int64)
            size = int(flat.max()) + 1 if flat.size else 1
            grow = max(size, count.size)
            count = np.pad(count, (0, grow - count.size))
            sums = [np.pad(s, (0, grow - s.size)) for s in sums]
            count[:size] += np.bincount(flat, minlength=size)
            for s, weights in zip(sums, (np.full(flat.size, z), yy.ravel(), xx.ravel()), strict=True):
                s[:size] += np.bincount(flat, weights=weights, minlength=size)
        for obj in np.nonzero(count)[0]:
            if obj == 0:
                continue
            centre = [s[obj] / count[obj] for s in sums]
            rows.append([obj, t, *(centre if depth else centre[1:]), count[obj]])
    data = np.asarray(rows, dtype=np.float64).reshape(-1, 6 if depth else 5)
    return data[np.lexsort((data[:, 1], data[:, 0]))] if len(data) else data


def spans_from_rows(rows: np.ndarray, parents: dict[int, int | None]) -> dict[int, TrackSpan]:
    """Track spans from :func:`object_rows`; a parent without any row is dropped (None)."""
    spans: dict[int, TrackSpan] = {}
    for obj in np.unique(rows[:, 0]).astype(int).tolist():
        times = rows[rows[:, 0] == obj, 1]
        spans[obj] = TrackSpan(obj, int(times.min()), int(times.max()), None)
    return {o: TrackSpan(o, s.first_frame, s.last_frame, parents.get(o) if parents.get(o) in spans else None)
            for o, s in spans.items()}


def lineage(store: Any, axis: str | None = None) -> dict[int, TrackSpan]:
    """Every object with pixels: its track span along ``axis`` (default ``t``, else the first frame axis) and parent."""
    parents = {obj_id: info.parent for obj_id, info in store.objects.items()}
    return spans_from_rows(object_rows(store, axis), parents)


def tracks_from_labels(store: Any) -> np.ndarray:
    """napari Tracks data from object centroids: (N, 4) ``[track_id, t, y, x]``, or (N, 5) with ``z``.

    One row per object and time point where it has pixels, sorted by id then time; the time axis is ``t``, or the
    first frame axis if there is no ``t``.
    """
    return object_rows(store)[:, :-1]


def tracks_layer_data(store: Any) -> tuple[np.ndarray, dict[int, list[int]]]:
    """``(data, graph)`` for napari's Tracks layer: data as :func:`tracks_from_labels`, graph ``{daughter:
    [parent]}`` for every object whose parent has a track too."""
    rows = object_rows(store)
    spans = spans_from_rows(rows, {obj_id: info.parent for obj_id, info in store.objects.items()})
    graph = {o: [s.parent] for o, s in spans.items() if s.parent is not None}
    return rows[:, :-1], graph


def divisions_of(spans: dict[int, TrackSpan]) -> dict[int, list[int]]:
    """``{parent: [daughters]}`` from track spans."""
    out: dict[int, list[int]] = {}
    for span in spans.values():
        if span.parent is not None:
            out.setdefault(span.parent, []).append(span.obj_id)
    return {p: sorted(d) for p, d in out.items()}

