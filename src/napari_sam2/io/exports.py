"""Exports of a label store for other tools: ImageJ TIFF hyperstack, Cell Tracking Challenge folder, GEFF graph.

Each reads the store one 2D frame at a time. Files are written under a temporary name and renamed into place, so a
failed export (full disk…) leaves no half-written file.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import tifffile

from napari_sam2.io.atomic_store import atomic_write_bytes, make_dirs
from napari_sam2.io.errors import LabelStoreError, write_error
from napari_sam2.io.label_store import LabelStore
from napari_sam2.io.lineage import object_rows, spans_from_rows, time_axes, tracks_from_labels

__all__ = ["export_ctc", "export_geff", "export_tiff", "tracks_from_labels", "write_imagej_tiff"]

_IMAGEJ_ORDER = "tzcyx"
_UINT16_MAX = np.iinfo(np.uint16).max
_FLOAT32_EXACT = 1 << 24


def _frame_axes(store: LabelStore) -> list[str]:
    return list(store.dimension_names[:-2])


def write_imagej_tiff(
    path: Path | str,
    names: Sequence[str],
    shape: Sequence[int],
    read_plane: Callable[[tuple[int, ...]], np.ndarray],
    max_label: int,
    where: str,
) -> Path:
    """Write labels (axes ``names``, ``shape``; 2D planes from ``read_plane(frame coords)``) as an ImageJ hyperstack.

    ImageJ has no uint32: ids up to 65535 are written as uint16, larger ones (up to 2**24) as float32.
    """
    path, names = Path(path), list(names)
    unknown = [n for n in names if n not in _IMAGEJ_ORDER]
    if unknown:
        raise LabelStoreError(f"{where}: axes {unknown} cannot be stored in an ImageJ hyperstack (T, Z, C, Y, X)")
    order = sorted(names, key=_IMAGEJ_ORDER.index)
    out_shape = tuple(int(shape[names.index(a)]) for a in order)
    dtype = np.dtype(np.uint16 if max_label <= _UINT16_MAX else np.float32)
    limit = _UINT16_MAX if dtype == np.uint16 else _FLOAT32_EXACT
    if max_label > limit:
        raise LabelStoreError(f"{where}: label {max_label} is too large for an ImageJ TIFF (at most {limit})")
    frame_axes = names[:-2]

    def planes() -> Iterator[np.ndarray]:
        for index in np.ndindex(*out_shape[:-2]):
            at = dict(zip(order, index, strict=False))
            plane = np.asarray(read_plane(tuple(at[a] for a in frame_axes)))
            if plane.size and plane.max() > limit:
                raise LabelStoreError(f"{where}: label {plane.max()} at {at} is too large for {dtype}")
            yield plane.T.astype(dtype) if order[-2:] != names[-2:] else plane.astype(dtype)

    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.sam2-tmp"
    try:
        make_dirs(path.parent)
        axes = "".join(order).upper()
        tifffile.imwrite(tmp, planes(), shape=out_shape, dtype=dtype, imagej=True, metadata={"axes": axes})
        os.replace(tmp, path)
    except OSError as exc:
        raise write_error("write the TIFF", path, exc) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def export_tiff(store: LabelStore, path: Path | str) -> Path:
    """Write the store's labels as an ImageJ hyperstack TIFF with its axes (e.g. ``TZYX``); returns ``path``.

    uint16 when every object id is ≤ 65535, else float32 (ImageJ has no uint32).
    """
    top = max(store.objects, default=0)
    return write_imagej_tiff(path, store.dimension_names, store.shape, store.read_plane, top, str(store.path))


def _ctc_layout(store: LabelStore) -> tuple[int, list[str]]:
    names = _frame_axes(store)
    if "t" not in names:
        raise LabelStoreError(f"{store.path}: a Cell Tracking Challenge export needs a 't' axis, axes are {names}")
    extra = [n for n in names if n not in ("t", "z") and store.shape[names.index(n)] > 1]
    if extra:
        raise LabelStoreError(f"{store.path}: axes {extra} have no place in a Cell Tracking Challenge export")
    return names.index("t"), names


def _volume(store: LabelStore, t: int, names: list[str]) -> np.ndarray:
    """Labels at time ``t``: (Y, X), or (Z, Y, X) when the store has a z axis."""
    n_z = store.shape[names.index("z")] if "z" in names else 0

    def coords(z: int) -> tuple[int, ...]:
        return tuple(t if n == "t" else z if n == "z" else 0 for n in names)

    if not n_z:
        return store.read_plane(coords(0))
    return np.stack([store.read_plane(coords(z)) for z in range(n_z)])


def ctc_tracks(
    presence: list[set[int]], parents: dict[int, int | None]
) -> tuple[list[list[int]], list[dict[int, int]]]:
    """CTC tracks ``[label, begin, end, parent]`` and, per frame, ``{object id: CTC label}`` from the objects present
    on each frame and their parents.

    An object's first stretch keeps its id as label. An object absent for some frames and back later continues as a
    new track (a new label) whose parent is its previous stretch, as the CTC format requires for gaps. The first
    stretch of an object with a parent gets as parent the parent's last stretch that ended before it began (0 if
    there is none: CTC parents end before their daughters begin).
    """
    next_id = max((max(ids) for ids in presence if ids), default=0) + 1
    tracks: list[list[int]] = []
    current: dict[int, list[int]] = {}  # object id -> its open (latest) track
    stretches: dict[int, list[list[int]]] = {}
    relabel: list[dict[int, int]] = []
    for t, ids in enumerate(presence):
        mapping = {}
        for obj in sorted(ids):
            track = current.get(obj)
            if track is None or track[2] != t - 1:
                label = obj if track is None else next_id
                next_id += 0 if track is None else 1
                track = [label, t, t, track[0] if track else 0]
                tracks.append(track)
                current[obj] = track
                stretches.setdefault(obj, []).append(track)
            track[2] = t
            mapping[obj] = track[0]
        relabel.append(mapping)
    for obj, own in stretches.items():
        parent = parents.get(obj)
        if parent is None or parent not in stretches:
            continue
        before = [tr for tr in stretches[parent] if tr[2] < own[0][1]]
        own[0][3] = before[-1][0] if before else 0
    return tracks, relabel


def export_ctc(store: LabelStore, directory: Path | str) -> Path:
    """Write a Cell Tracking Challenge result: ``mask000.tif …`` (uint16, 2D or 3D), ``res_track.txt`` and
    ``statuses.json``.

    ``res_track.txt`` has one line ``L B E P`` per track: label, first and last frame, parent label (0: none); the
    rules for gaps and parents are :func:`ctc_tracks`'s. ``statuses.json`` maps each label to its object id and
    review status: ``{"<label>": {"object": id, "status": "verified" | … | null}}``. Returns ``directory``.
    """
    directory = Path(directory)
    t_axis, names = _ctc_layout(store)
    n_t = store.shape[t_axis]
    present = [set(np.unique(_volume(store, t, names)).tolist()) - {0} for t in range(n_t)]
    objects = store.objects
    tracks, relabel = ctc_tracks(present, {o: info.parent for o, info in objects.items()})
    by_label = {label: obj for frame in relabel for obj, label in frame.items()}
    statuses = {str(label): {"object": obj, "status": objects[obj].status if obj in objects else None}
                for label, obj in sorted(by_label.items())}
    if tracks and max(tr[0] for tr in tracks) > _UINT16_MAX:
        raise LabelStoreError(f"{store.path}: CTC masks are uint16; labels above {_UINT16_MAX} cannot be exported")
    digits = 3 if n_t <= 1000 else 4
    try:
        make_dirs(directory)
        for t in range(n_t):
            volume = _volume(store, t, names)
            changed = {o: new for o, new in relabel[t].items() if o != new}
            out = volume.astype(np.uint16)
            for obj, new in changed.items():
                out[volume == obj] = new
            tmp = directory / f".mask{t:0{digits}d}.{uuid.uuid4().hex}.sam2-tmp.tif"
            try:
                tifffile.imwrite(tmp, out)
                os.replace(tmp, directory / f"mask{t:0{digits}d}.tif")
            finally:
                tmp.unlink(missing_ok=True)
        lines = "".join(f"{label} {begin} {end} {parent}\n" for label, begin, end, parent in sorted(tracks))
        atomic_write_bytes(directory / "res_track.txt", lines.encode())
        atomic_write_bytes(directory / "statuses.json", json.dumps(statuses, indent=1).encode())
    except OSError as exc:
        raise write_error("write the Cell Tracking Challenge export", directory, exc) from exc
    return directory


def export_geff(store: LabelStore, path: Path | str, *, axis: str | None = None) -> Path:
    """Write the store's tracks as a GEFF graph (``geff`` package, zarr) at ``path``; returns ``path``.

    Nodes: one per object and time point where it has pixels, with properties ``t``, (``z``,) ``y``, ``x`` (centroid,
    pixels), ``area`` (pixels), ``track_id`` (the object id) and ``status`` (its review status, "" if none).
    Edges: an object's node to its next node in time (across gaps too), and each division's parent's last node to
    each daughter's first node. ``path`` must not exist.
    """
    import geff
    import networkx as nx

    path = Path(path)
    if path.exists():
        raise LabelStoreError(f"{path} already exists; choose a new path for the GEFF export (nothing is overwritten)")
    _, depth = time_axes(store, axis)
    rows = object_rows(store, axis)
    objects = store.objects
    spans = spans_from_rows(rows, {o: info.parent for o, info in objects.items()})
    graph = nx.DiGraph()
    first_node: dict[int, int] = {}
    last_node: dict[int, int] = {}
    spatial = ["z", "y", "x"] if depth else ["y", "x"]
    for node, row in enumerate(rows):
        obj, t = int(row[0]), int(row[1])
        status = objects[obj].status if obj in objects else None
        props = dict(zip(spatial, (float(v) for v in row[2:-1]), strict=True))
        graph.add_node(node, t=t, **props, area=float(row[-1]), track_id=obj, status=status or "")
        if obj in last_node:
            graph.add_edge(last_node[obj], node)
        first_node.setdefault(obj, node)
        last_node[obj] = node
    for obj, span in spans.items():
        if span.parent is not None:
            graph.add_edge(last_node[span.parent], first_node[obj])
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.sam2-tmp"
    try:
        make_dirs(path.parent)
        geff.write(graph, tmp, axis_names=["t", *spatial], axis_types=["time"] + ["space"] * len(spatial))
        os.replace(tmp, path)
    except OSError as exc:
        raise write_error("write the GEFF export", path, exc) from exc
    finally:
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return path
