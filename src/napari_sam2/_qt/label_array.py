"""``StoreLabels``: the array behind the session's Labels layer.

Reads come from the label store's zarr array. Every write napari makes into the layer — a brush stroke, a fill, an
erase, a polygon, an undo or a redo — goes through the label store as a hand edit of each frame it touches
(``LabelStore.write_edit_at``): the store diffs the frame before and after, marks exactly the objects whose pixels
changed as "manual", and no result written at the same time by the engine's worker is lost between the two.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

Coords = tuple[int, ...]  # a frame's index on every axis but y and x
PlaneEdit = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LabelEdit:
    """One frame edited by hand: the ids of the objects whose pixels changed and the frame's provenance before."""

    coords: Coords
    changed: frozenset[int]
    before: dict[int, str]


def _normalise_basic(key: tuple[Any, ...], ndim: int) -> tuple[Any, ...]:
    if sum(k is Ellipsis for k in key) > 1:
        raise IndexError("an index can only have a single ellipsis")
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (ndim - len(key) + 1) + key[i + 1 :]
    key = key + (slice(None),) * (ndim - len(key))
    if len(key) != ndim:
        raise IndexError(f"too many indices for an array of {ndim} dimensions")
    for k in key:
        if not isinstance(k, (slice, int, np.integer)):
            raise TypeError(f"unsupported index {k!r} for a write into the labels (use slices, ints or int arrays)")
    return key


def _basic_writes(key: tuple[Any, ...], value: Any, shape: tuple[int, ...]) -> Iterator[tuple[Coords, PlaneEdit]]:
    """A write ``array[key] = value`` with slices and ints, split into one edit per frame."""
    key = _normalise_basic(key, len(shape))
    lead, in_plane = key[:-2], key[-2:]
    ranges, sliced = [], []
    for k, n in zip(lead, shape[:-2], strict=True):
        if isinstance(k, slice):
            ranges.append(range(*k.indices(n)))
            sliced.append(True)
        else:
            i = int(k) + n if int(k) < 0 else int(k)
            if not 0 <= i < n:
                raise IndexError(f"index {k} is out of bounds for an axis of size {n}")
            ranges.append(range(i, i + 1))
            sliced.append(False)
    plane_shape = np.empty(shape[-2:], bool)[in_plane].shape
    values = np.broadcast_to(np.asarray(value), tuple(len(r) for r, s in zip(ranges, sliced, strict=True) if s)
                             + plane_shape)
    for positions in itertools.product(*(range(len(r)) for r in ranges)):
        coords = tuple(r[p] for r, p in zip(ranges, positions, strict=True))
        part = values[tuple(p for p, s in zip(positions, sliced, strict=True) if s)]

        def edit(plane: np.ndarray, part: np.ndarray = part) -> np.ndarray:
            plane[in_plane] = part
            return plane

        yield coords, edit


def _fancy_writes(key: tuple[Any, ...], value: Any, shape: tuple[int, ...]) -> Iterator[tuple[Coords, PlaneEdit]]:
    """A write with one integer array per axis (napari's ``data_setitem``), split into one edit per frame."""
    indices = np.broadcast_arrays(*(np.asarray(k, np.int64) for k in key))
    values = np.broadcast_to(np.asarray(value), indices[0].shape).reshape(-1)
    flat = [np.where(i < 0, i + n, i).reshape(-1) for i, n in zip(indices, shape, strict=True)]
    lead = np.stack(flat[:-2], -1) if len(shape) > 2 else np.zeros((len(values), 0), np.int64)
    for coords in np.unique(lead, axis=0):
        here = (lead == coords).all(axis=1)
        ys, xs, vs = flat[-2][here], flat[-1][here], values[here]

        def edit(plane: np.ndarray, ys: np.ndarray = ys, xs: np.ndarray = xs, vs: np.ndarray = vs) -> np.ndarray:
            plane[ys, xs] = vs
            return plane

        yield tuple(int(c) for c in coords), edit


def plane_writes(key: Any, value: Any, shape: tuple[int, ...]) -> list[tuple[Coords, PlaneEdit]]:
    """``array[key] = value`` on an array of ``shape`` (…, H, W) as ``[(frame coordinates, edit of that frame)]``.

    ``key``: ints and slices (and one ``...``), or one integer array per axis."""
    key = key if isinstance(key, tuple) else (key,)
    if len(key) == len(shape) and all(isinstance(k, (np.ndarray, list)) for k in key):
        return list(_fancy_writes(key, value, shape))
    return list(_basic_writes(key, value, shape))


class StoreLabels:
    """The label store's labels as napari's Labels layer data (``dtype``, ``shape``, ``ndim``, ``size``, indexing).

    ``on_edit`` is called with a :class:`LabelEdit` for every frame a write changed. ``restore``: while an undo or
    redo replays, ``{frame coordinates: {obj_id: provenance or None}}`` to give the changed objects back.
    """

    def __init__(self, store: Any, on_edit: Callable[[LabelEdit], None] | None = None) -> None:
        self.store = store
        self._array = store.labels
        self.on_edit = on_edit
        self.restore: dict[Coords, dict[int, str | None]] = {}

    @property
    def dtype(self) -> np.dtype:
        return self._array.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._array.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self._array[key])

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        data = np.asarray(self._array[...])
        return data if dtype is None else data.astype(dtype)

    def __setitem__(self, key: Any, value: Any) -> None:
        for coords, edit in plane_writes(key, value, self.shape):
            changed, before = self.store.write_edit_at(coords, edit, restore=self.restore.get(coords))
            if changed and self.on_edit is not None:
                self.on_edit(LabelEdit(coords, frozenset(changed), before))

    def __repr__(self) -> str:
        return f"StoreLabels({self.store.path}, shape={self.shape})"
