"""napari reader contribution (npe2 ``napari-sam2.get_reader``), without importing napari.

Handles .tif/.tiff/.ome.tif files and .zarr / OME-Zarr folders (including napari-sam2 label stores) and returns None
for anything else. Data stay lazy (zarr arrays over the files); OME-Zarr and OME-TIFF pyramids are passed whole as
multiscale data for display; OME-Zarr label images under ``labels/`` become Labels layers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from napari_sam2.io.errors import StackError
from napari_sam2.io.ome_metadata import label_names, read_multiscales
from napari_sam2.io.stack_formats import RawStack, is_zarr_path, open_raw
from napari_sam2.io.tiff_sequence import TIFF_SUFFIXES

LayerData = tuple[Any, dict[str, Any], str]


def napari_get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """``read_stack`` if ``path`` is a TIFF file or a zarr folder, else None (napari then asks other readers)."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    try:
        p = Path(str(path).rstrip("/\\"))
        if p.is_file() and p.suffix.lower() in TIFF_SUFFIXES:
            return read_stack
        if p.is_dir() and is_zarr_path(p):
            return read_stack
    except (OSError, ValueError):
        return None
    return None


def _lazy(array: Any) -> Any:
    """An array napari can slice lazily (a dask array for array-likes that are not numpy/zarr)."""
    if isinstance(array, (np.ndarray, zarr.Array)):
        return array
    import dask.array as da

    return da.from_array(array, chunks=(1, *array.shape[1:]), meta=np.empty((0,) * array.ndim, dtype=array.dtype))


def _units(units: list[str | None]) -> dict[str, Any]:
    """napari's ``units`` keyword for the OME-Zarr units of the axes (``pixel`` where none is given), if any is."""
    return {"units": [u or "pixel" for u in units]} if any(units) else {}


def _image_layer(raw: RawStack, name: str) -> LayerData:
    names = list(raw.axes.names)
    levels = [_lazy(level) for level in raw.levels]
    kwargs: dict[str, Any] = {
        "name": name,
        "metadata": {"axes": tuple(names), "axes_inferred": raw.axes.inferred, "source": str(raw.path or "")},
    }
    scale = list(raw.ome.scales[0]) if raw.ome is not None else [1.0] * len(names)
    units = list(raw.ome.units) if raw.ome is not None and raw.ome.units else [None] * len(names)
    c = raw.axes.channel
    if c is not None and c == len(names) - 1 and raw.array.shape[c] in (3, 4) and raw.array.dtype == np.uint8:
        kwargs["rgb"] = True
        names, scale, units = names[:-1], scale[:-1], units[:-1]
    elif c is not None and raw.array.shape[c] > 1:
        kwargs["channel_axis"] = c
        names, scale, units = (v[:c] + v[c + 1 :] for v in (names, scale, units))
    kwargs["scale"] = scale
    kwargs.update(_units(units))
    if "channel_axis" not in kwargs:
        kwargs["axis_labels"] = tuple(names)
    if len(levels) > 1:
        kwargs["multiscale"] = True
        return levels, kwargs, "image"
    return levels[0], kwargs, "image"


def _ome_label_layers(path: Path, raw: RawStack) -> list[LayerData]:
    group = zarr.open_group(store=LocalStore(path, read_only=True), mode="r")
    if "labels" not in group:
        return []
    layers = []
    for label in label_names(group["labels"].attrs):
        if label not in group["labels"]:
            continue
        label_group = group["labels"][label]
        ms = read_multiscales(label_group.attrs)
        if ms is None:
            continue
        levels: list[Any] = [label_group[p] for p in ms.paths]
        scale = list(ms.scales[0])
        units = list(ms.units) or [None] * len(scale)
        if "c" in ms.axes and levels[0].shape[ms.axes.index("c")] == 1:  # labels have no channels: drop that axis
            import dask.array as da

            c = ms.axes.index("c")
            index = tuple(0 if i == c else slice(None) for i in range(len(ms.axes)))
            levels = [da.from_zarr(level)[index] for level in levels]
            scale.pop(c)
            units.pop(c)
        kwargs = {"name": label, "scale": scale, "metadata": {"source": str(path / "labels" / label)}, **_units(units)}
        layers.append((levels if len(levels) > 1 else levels[0], {**kwargs, "multiscale": len(levels) > 1}, "labels"))
    return layers


def read_stack(path: str | list[str]) -> list[LayerData]:
    """Layers for a TIFF, zarr / OME-Zarr or label store path: ``[(data, kwargs, "image" | "labels"), …]``."""
    p = Path(str(path[0] if isinstance(path, (list, tuple)) else path).rstrip("/\\"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = open_raw(p)
    name = p.name.split(".")[0] or p.name
    if raw.kind == "label-store":
        names = tuple(raw.axes.names)
        return [(raw.array, {"name": name, "axis_labels": names, "metadata": {"source": str(p)}}, "labels")]
    layers = [_image_layer(raw, name)]
    if raw.kind == "ome-zarr":
        try:
            layers += _ome_label_layers(p, raw)
        except (StackError, KeyError, ValueError):
            pass  # a broken label group must not hide the image
    return layers
