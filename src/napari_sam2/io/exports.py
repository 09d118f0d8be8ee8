"""Exports of a label store for other tools: ImageJ TIFF hyperstack, Cell Tracking Challenge folder, napari Tracks.

Each reads the store one 2D frame at a time. Files are written under a temporary name and renamed into place, so a
failed export (full disk…) leaves no half-written file.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import tifffile

from napari_sam2.io.atomic_store import atomic_write_bytes, make_dirs
from napari_sam2.io.errors import LabelStoreError, write_error
from napari_sam2.io.label_store import LabelStore

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


def export_ctc(store: LabelStore, directory: Path | str) -> Path:
    """Write a Cell Tracking Challenge result: ``mask000.tif …`` (uint16, 2D or 3D) and ``res_track.txt``.

    ``res_track.txt`` has one line ``L B E P`` per track: label, first and last frame, parent 0. An object absent for
    some frames and back later continues as a new track (new label) whose parent is the previous one, as the CTC
    format requires for gaps. Returns ``directory``.
    """
    directory = Path(directory)
    t_axis, names = _ctc_layout(store)
    n_t = store.shape[t_axis]
    present = [set(np.unique(_volume(store, t, names)).tolist()) - {0} for t in range(n_t)]
    next_id = max((max(ids) for ids in present if ids), default=0) + 1
    tracks: list[list[int]] = []  # [label, begin, end, parent]
    current: dict[int, list[int]] = {}  # object id -> its open track
    relabel: list[dict[int, int]] = []
    for t, ids in enumerate(present):
        mapping = {}
        for obj in sorted(ids):
            track = current.get(obj)
            if track is None or track[2] != t - 1:
                label = obj if track is None else next_id
                next_id += 0 if track is None else 1
                track = [label, t, t, track[0] if track else 0]
                tracks.append(track)
                current[obj] = track
            track[2] = t
            mapping[obj] = track[0]
        relabel.append(mapping)
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
    except OSError as exc:
        raise write_error("write the Cell Tracking Challenge export", directory, exc) from exc
    return directory


def tracks_from_labels(store: LabelStore) -> np.ndarray:
    """napari Tracks data from object centroids: (N, 4) ``[track_id, t, y, x]``, or (N, 5) with ``z``.

    One row per object and time point where it has pixels, sorted by id then time; the time axis is ``t``, or the
    first frame axis if there is no ``t``.
    """
    names = _frame_axes(store)
    time_axis = "t" if "t" in names else names[0]
    depth = "z" if "z" in names and time_axis != "z" else None
    extra = [n for n in names if n not in (time_axis, depth) and store.shape[names.index(n)] > 1]
    if extra:
        raise LabelStoreError(f"{store.path}: axes {extra} cannot be part of tracks (time, z, y, x only)")
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
            rows.append([obj, t, *(centre if depth else centre[1:])])
    data = np.asarray(rows, dtype=np.float64).reshape(-1, 5 if depth else 4)
    return data[np.lexsort((data[:, 1], data[:, 0]))] if len(data) else data
