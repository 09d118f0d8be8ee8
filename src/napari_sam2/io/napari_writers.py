"""napari writer contributions for a Labels layer, without importing napari: ``(path, data, attributes) -> [path]``.

* ``write_label_store`` — a napari-sam2 label store (zarr v3 group, reopenable to continue a session);
* ``write_labels_ome_zarr`` — an OME-Zarr 0.5 label image (``image-label`` metadata at its root), with the layer's
  scale, units and translation;
* ``write_labels_tiff`` — an ImageJ hyperstack TIFF.

Axis names come from the layer's ``axis_labels`` when they are real names, else from the rule in ``axes``. Data are
read and written one 2D plane at a time (a zarr- or dask-backed layer, as the plugin's own, is never loaded whole).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from napari_sam2.io.atomic_store import AtomicLocalStore, remove_tree
from napari_sam2.io.axes import infer_axes
from napari_sam2.io.errors import LabelStoreError, StackError, write_error
from napari_sam2.io.exports import write_imagej_tiff
from napari_sam2.io.label_store import LabelStore
from napari_sam2.io.ome_metadata import multiscales_entry, ome_order, ome_unit, wrap_ome

_DEFAULT_LABEL = re.compile(r"-?\d+|axis -?\d+")


def _axis_names(shape: tuple[int, ...], attributes: Mapping[str, Any]) -> tuple[str, ...]:
    """The layer's ``axis_labels`` if they are real, distinct names; else inferred (``t``/``z`` …, ``y``, ``x``)."""
    given = [str(n) for n in attributes.get("axis_labels") or ()]
    if (
        len(given) == len(shape)
        and len(set(given)) == len(given)
        and not any(_DEFAULT_LABEL.fullmatch(n) for n in given)
    ):
        return tuple(given)
    if len(shape) == 2:
        return ("y", "x")
    try:
        return infer_axes(shape, [None] * (len(shape) - 2) + ["y", "x"], where="labels layer").names
    except StackError as exc:
        raise LabelStoreError(str(exc)) from exc


def _plane(data: Any, coords: tuple[int, ...]) -> np.ndarray:
    plane = data[coords] if coords else data
    plane = plane.compute() if hasattr(plane, "compute") else plane
    return np.asarray(plane)


def _as_stack(data: Any, names: tuple[str, ...]) -> tuple[Any, tuple[str, ...], tuple[int, ...]]:
    """2D labels become a one-frame stack ``(1, H, W)`` with a ``t`` axis."""
    shape = tuple(int(s) for s in data.shape)
    if len(shape) == 2:
        return np.asarray(data)[None], ("t", *names), (1, *shape)
    return data, names, shape


def write_label_store(path: str, data: Any, attributes: Mapping[str, Any]) -> list[str]:
    """Save a Labels layer as a napari-sam2 label store; every label value becomes an object."""
    names = _axis_names(tuple(data.shape), attributes)
    data, names, shape = _as_stack(data, names)
    store = LabelStore.create(path, shape, dimension_names=names)
    ids: set[int] = set()
    try:
        for coords in np.ndindex(*shape[:-2]):
            plane = _plane(data, coords)
            if plane.any():
                store.labels[(*coords, slice(None), slice(None))] = plane.astype(np.uint32)
                ids.update(np.unique(plane).tolist())
    except OSError as exc:
        raise write_error("write labels to", path, exc) from exc
    for obj_id in sorted(ids - {0}):
        store.add_object(int(obj_id))
    return [str(path)]


def _max_label(data: Any, shape: tuple[int, ...]) -> int:
    """The largest label in ``data``, read one 2D plane at a time (numpy, dask or zarr alike)."""
    planes = np.ndindex(*shape[:-2]) if len(shape) > 2 else iter([()])
    return max((int(_plane(data, coords).max(initial=0)) for coords in planes), default=0)


def write_labels_tiff(path: str, data: Any, attributes: Mapping[str, Any]) -> list[str]:
    """Save a Labels layer as an ImageJ hyperstack TIFF (uint16, or float32 for ids above 65535)."""
    names = _axis_names(tuple(data.shape), attributes)
    shape = tuple(int(s) for s in data.shape)
    top = _max_label(data, shape)
    write_imagej_tiff(path, names, shape, lambda coords: _plane(data, coords), top, str(path))
    return [str(path)]


def _physical(attributes: Mapping[str, Any], names: list[str], out_axes: list[str]) -> dict[str, Any]:
    """The layer's scale, units and translation, in ``out_axes`` order, as ``multiscales_entry`` takes them."""

    def per_axis(key: str, default: Any) -> list[Any]:
        values = attributes.get(key)
        values = list(values) if values is not None and len(values) == len(names) else [default] * len(names)
        return [values[names.index(a)] for a in out_axes]

    return {
        "scales": [[float(v) for v in per_axis("scale", 1.0)]],
        "units": [ome_unit(a, u) for a, u in zip(out_axes, per_axis("units", None), strict=True)],
        "translation": [float(v) for v in per_axis("translate", 0.0)],
    }


def write_labels_ome_zarr(path: str, data: Any, attributes: Mapping[str, Any]) -> list[str]:
    """Save a Labels layer as an OME-Zarr 0.5 label image (axes reordered to t, c, z, y, x)."""
    names = list(_axis_names(tuple(data.shape), attributes))
    try:
        out_axes = ome_order(names)
    except ValueError as exc:
        raise LabelStoreError(f"{path}: {exc}") from exc
    target = Path(path)
    if target.exists():
        raise LabelStoreError(f"{target} already exists; choose a new path")
    shape = [int(data.shape[names.index(a)]) for a in out_axes]
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.sam2-tmp"
    try:
        group = zarr.create_group(store=AtomicLocalStore(tmp), zarr_format=3)
        array = group.create_array(
            "0",
            shape=shape,
            chunks=[1] * (len(shape) - 2) + shape[-2:],
            dtype="uint32",
            fill_value=0,
            dimension_names=out_axes,
        )
        for index in np.ndindex(*shape[:-2]):
            at = dict(zip(out_axes, index, strict=False))
            plane = _plane(data, tuple(at.get(a, slice(None)) for a in names))
            if names.index("y") > names.index("x"):
                plane = plane.T
            if plane.any():
                array[(*index, slice(None), slice(None))] = plane.astype(np.uint32)
        physical = _physical(attributes, names, out_axes)
        entry = multiscales_entry(out_axes, ["0"], physical.pop("scales"), name=target.name, version="0.5", **physical)
        group.attrs.update(wrap_ome("0.5", {"multiscales": [entry], "image-label": {}}))
        os.replace(tmp, target)
    except OSError as exc:
        raise write_error("write the OME-Zarr labels", target, exc) from exc
    finally:
        if tmp.exists():
            remove_tree(tmp)
    return [str(target)]
