"""Export labels as OME-Zarr: into the image's own ``labels`` group when the image is OME-Zarr already, else as a
new OME-Zarr 0.5 image (written plane by plane, never whole in memory) with the labels in its ``labels`` group.

The label image has the image's axes (channel axis of size 1), the same number of resolution levels (coarser levels
by nearest-neighbour subsampling), ``image-label`` colours and names from the store's objects. An export is written
under a temporary name and renamed into place, so a failure (full disk…) leaves no half export and no lost labels.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from napari_sam2.io.atomic_store import AtomicLocalStore, remove_tree
from napari_sam2.io.colours import colour_rgba
from napari_sam2.io.errors import LabelStoreError, write_error
from napari_sam2.io.label_store import LabelStore
from napari_sam2.io.ome_metadata import label_names, multiscales_entry, ome_order, wrap_ome
from napari_sam2.io.physical_scale import physical_scale
from napari_sam2.io.stack_formats import RawStack, open_raw

OME_VERSION = "0.5"


def _raw_of(image_source: Any) -> RawStack:
    raw = getattr(image_source, "raw", None)
    return raw if isinstance(raw, RawStack) else open_raw(image_source)


def _plane_indices(shape: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """Every index over all axes but the last two."""
    yield from np.ndindex(*shape[:-2]) if len(shape) > 2 else iter([()])


def _index_map(n_out: int, n_in: int, factor: float) -> np.ndarray:
    """Full-resolution index of each of ``n_out`` samples along an axis of ``n_in`` downsampled by ``factor``
    (from the levels' scales; the shape ratio where the scales do not say)."""
    if factor == 1.0 and n_out != n_in:
        factor = n_in / n_out
    return np.minimum(np.floor(np.arange(n_out) * factor + 1e-9).astype(np.int64), n_in - 1)


def _write_labels(
    group: zarr.Group,
    store: LabelStore,
    image_axes: Sequence[str],
    out_axes: Sequence[str],
    level_shapes: Sequence[Sequence[int]],
    scales: Sequence[Sequence[float]],
    name: str,
    version: str,
    units: Sequence[str | None] | None = None,
) -> None:
    """Write the label image ``name`` (all levels, ``out_axes`` order) with its metadata into ``group``; ``units``:
    the image's, per axis (the labels share its physical space)."""
    zarr_format = 3 if version == "0.5" else 2
    label_group = group.create_group(name, overwrite=True)
    frame_axes = [a for a in image_axes if a not in ("c", "y", "x")]  # the store's frame axes, in its order
    full = dict(zip(out_axes, level_shapes[0], strict=True))
    for level, shape in enumerate(level_shapes):
        shape = [1 if a == "c" else s for a, s in zip(out_axes, shape, strict=True)]
        extra = {"dimension_names": list(out_axes)} if zarr_format == 3 else {}
        arr = label_group.create_array(
            str(level), shape=shape, chunks=[1] * (len(shape) - 2) + shape[-2:], dtype="uint32", fill_value=0, **extra
        )
        factors = [s_k / s_0 if s_0 else 1.0 for s_k, s_0 in zip(scales[level], scales[0], strict=True)]
        maps = {
            a: _index_map(s, 1 if a == "c" else full[a], f) for a, s, f in zip(out_axes, shape, factors, strict=True)
        }
        for index in _plane_indices(shape):
            out_index = {a: int(maps[a][i]) for a, i in zip(out_axes, index, strict=False)}
            plane = store.read_plane(tuple(out_index[a] for a in frame_axes))
            plane = plane[np.ix_(maps["y"], maps["x"])] if plane.shape != tuple(shape[-2:]) else plane
            if plane.any():
                arr[(*index, slice(None), slice(None))] = plane
    colours = [{"label-value": o.id, "rgba": colour_rgba(o.colour)} for o in store.objects.values()]
    properties = [{"label-value": o.id, "name": o.name} for o in store.objects.values()]
    image_label: dict[str, Any] = {"source": {"image": "../../"}}
    if version != "0.5":
        image_label["version"] = version
    if colours:
        image_label.update(colors=colours, properties=properties)
    paths = [str(i) for i in range(len(level_shapes))]
    entry = multiscales_entry(out_axes, paths, scales, name=name, version=version, units=units or None)
    label_group.attrs.update(wrap_ome(version, {"multiscales": [entry], "image-label": image_label}))


def _check_fit(raw: RawStack, store: LabelStore) -> None:
    expected = tuple(s for s, a in zip(raw.array.shape, raw.axes.names, strict=True) if a != "c")
    if tuple(store.shape) != expected:
        raise LabelStoreError(
            f"label store {store.path} has shape {store.shape}, but the image {raw.where} needs {expected}"
        )


def export_ome_zarr(
    image_source: Any, store: LabelStore, path: Path | str | None = None, *, name: str = "sam2"
) -> Path:
    """Write the labels of ``store`` as OME-Zarr; returns the OME-Zarr image path.

    ``image_source``: a FrameSource or anything ``open_stack`` accepts. If it is OME-Zarr and ``path`` is None or its
    own path, the labels go into its ``labels/<name>`` (same version, 0.4 or 0.5) and the image is not rewritten.
    Otherwise a new OME-Zarr 0.5 is written at ``path`` (which must not exist) with the image and the labels.
    """
    raw = _raw_of(image_source)
    _check_fit(raw, store)
    in_place = (
        raw.kind == "ome-zarr" and raw.path is not None and (path is None or Path(path).resolve() == raw.path.resolve())
    )
    if in_place:
        _add_labels_in_place(raw, store, name)
        return raw.path
    if path is None:
        raise LabelStoreError(f"{raw.where} is not OME-Zarr: give the path of the OME-Zarr to write")
    path = Path(path)
    if path.exists():
        raise LabelStoreError(f"{path} already exists; choose a new path for the OME-Zarr export")
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.sam2-tmp"
    try:
        _write_new_image(raw, store, tmp, name)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp.exists():
            remove_tree(tmp)
        raise write_error("write the OME-Zarr", path, exc) from exc
    except BaseException:
        if tmp.exists():
            remove_tree(tmp)
        raise
    return path


def _ome_axes(raw: RawStack) -> list[str]:
    try:
        return ome_order(raw.axes.names)
    except ValueError as exc:
        raise LabelStoreError(f"{raw.where}: {exc}; name the axes (open_stack(..., axes=...)) to export") from exc


def _write_new_image(raw: RawStack, store: LabelStore, root: Path, name: str) -> None:
    axes = list(raw.axes.names)
    out_axes = _ome_axes(raw)
    shape = [int(raw.array.shape[axes.index(a)]) for a in out_axes]
    group = zarr.create_group(store=AtomicLocalStore(root), zarr_format=3)
    image = group.create_array(
        "0",
        shape=shape,
        chunks=[1] * (len(shape) - 2) + shape[-2:],
        dtype=raw.array.dtype,
        fill_value=0,
        dimension_names=out_axes,
    )
    yx_swapped = axes.index("y") > axes.index("x")
    for index in _plane_indices(shape):
        where = dict(zip(out_axes, index, strict=False))
        key = tuple(where[a] if a in where else slice(None) for a in axes)
        plane = raw.array[key]
        plane = np.asarray(plane.compute() if hasattr(plane, "compute") else plane)
        image[(*index, slice(None), slice(None))] = plane.T if yx_swapped else plane
    sizes, known_units = physical_scale(raw)  # the source's pixel size, z step and time step, where it says them
    scales = [[sizes.get(a, 1.0) for a in out_axes]]
    units = [known_units.get(a) for a in out_axes]
    group.attrs.update(
        wrap_ome(
            OME_VERSION,
            {"multiscales": [multiscales_entry(out_axes, ["0"], scales, name="image", version=OME_VERSION,
                                               units=units)]},
        )
    )
    labels = group.create_group("labels")
    _write_labels(labels, store, axes, out_axes, [shape], scales, name, OME_VERSION, units)
    labels.attrs.update(wrap_ome(OME_VERSION, {"labels": [name]}))


def _add_labels_in_place(raw: RawStack, store: LabelStore, name: str) -> None:
    assert raw.ome is not None and raw.path is not None
    version = raw.ome.version
    zarr_format = 3 if version == "0.5" else 2
    try:
        group = zarr.open_group(store=AtomicLocalStore(raw.path), mode="r+", zarr_format=zarr_format)
        labels = group.require_group("labels")
        tmp_name = f".{name}.{uuid.uuid4().hex}.sam2-tmp"
        level_shapes = [tuple(level.shape) for level in raw.levels]
        _write_labels(labels, store, raw.axes.names, raw.axes.names, level_shapes, raw.ome.scales, tmp_name, version,
                      raw.ome.units)
        target, tmp = raw.path / "labels" / name, raw.path / "labels" / tmp_name
        old = target.with_name(f".{name}.{uuid.uuid4().hex}.old.sam2-tmp")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        _fix_label_name(target, name, zarr_format)
        if old.exists():
            remove_tree(old)
        names = label_names(labels.attrs)
        if name not in names:
            labels.attrs.update(wrap_ome(version, {"labels": [*names, name]}))
    except OSError as exc:
        raise write_error(f"add labels {name!r} to the OME-Zarr", raw.path, exc) from exc


def _fix_label_name(label_path: Path, name: str, zarr_format: int) -> None:
    """Rename the multiscales entry written under the temporary name."""
    group = zarr.open_group(store=AtomicLocalStore(label_path), mode="r+", zarr_format=zarr_format)
    attrs = group.attrs.asdict()
    ns = attrs["ome"] if "ome" in attrs else attrs
    ns["multiscales"][0]["name"] = name
    group.attrs.update(attrs)
