"""Opening a source lazily as an N-D array with named axes: TIFF / OME-TIFF, zarr / OME-Zarr, a folder of TIFFs,
or an array already in memory (numpy, dask, zarr, xarray). Nothing here reads pixel data.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tifffile
import zarr
from zarr.storage import LocalStore

from napari_sam2.io.axes import AxesInfo, axes_from_names, axes_from_tiff, axes_override, infer_axes
from napari_sam2.io.errors import StackError
from napari_sam2.io.lzw import ensure_lzw_decoder
from napari_sam2.io.ome_metadata import OmeMultiscales, read_multiscales
from napari_sam2.io.tiff_integrity import check_tiff_complete
from napari_sam2.io.tiff_sequence import TIFF_SUFFIXES, TiffSequenceArray, list_tiff_files
from napari_sam2.io.tifffile_log import quiet_tifffile

ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray")
LABEL_STORE_KEY = "napari_sam2"


@dataclass
class RawStack:
    """A lazily opened N-D image: full-resolution ``array``, its pyramid ``levels`` (``levels[0] is array``)."""

    array: Any
    axes: AxesInfo
    levels: tuple[Any, ...]
    kind: str  # "array", "zarr", "ome-zarr", "tiff", "ome-tiff", "imagej-tiff", "tiff-sequence", "label-store"
    path: Path | None = None
    ome: OmeMultiscales | None = None
    handle: Any = None  # an open tifffile.TiffFile, closed by close()

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else f"array of shape {tuple(self.array.shape)}"

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def is_zarr_path(path: Path) -> bool:
    """Whether ``path`` is a folder holding zarr (v2 or v3) metadata."""
    return path.is_dir() and any((path / m).is_file() for m in ZARR_MARKERS)


def open_raw(source: Any, *, axes: str | list[str] | None = None) -> RawStack:
    """Open ``source`` (path, zarr array/group, or array-like) without reading pixels."""
    if isinstance(source, (str, os.PathLike)):
        raw = _open_path(Path(source))
    elif isinstance(source, zarr.Group):
        raw = _from_zarr_group(source, None)
    elif isinstance(source, zarr.Array):
        raw = _from_zarr_array(source, None)
    elif all(hasattr(source, a) for a in ("shape", "dtype", "__getitem__")):
        raw = _from_array_like(source)
    else:
        raise StackError(f"cannot open {type(source).__name__} as a stack: give a path, or a numpy/dask/zarr array")
    if axes is not None:
        raw.axes = axes_override(axes, raw.array.shape, where=raw.where)
    return raw


def _open_path(path: Path) -> RawStack:
    if not path.exists():
        raise StackError(f"{path} does not exist")
    if path.is_file():
        if path.suffix.lower() in TIFF_SUFFIXES:
            return _open_tiff(path)
        raise StackError(
            f"{path} is not a stack: expected a .tif/.tiff/.ome.tif file, "
            "a .zarr / OME-Zarr folder or a folder of TIFFs"
        )
    if is_zarr_path(path):
        return _open_zarr_path(path)
    files = list_tiff_files(path)
    if files:
        return _open_tiff_sequence(path, files)
    raise StackError(f"{path} is not a stack: a folder with neither zarr metadata nor TIFF files")


def _open_tiff(path: Path) -> RawStack:
    ensure_lzw_decoder()
    with quiet_tifffile() as complaints:  # tifffile's own log lines would precede our one-line message
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tif = tifffile.TiffFile(path)
        except (tifffile.TiffFileError, OSError, ValueError, IndexError) as exc:
            raise StackError(f"{path} is not a readable TIFF (corrupt or not a TIFF?): {exc}") from exc
        try:
            if not tif.series:
                raise StackError(f"{path} holds no image series")
            series = tif.series[0]
            check_tiff_complete(path, tif, series, complaints)  # a cut file is said now, not on frame 300
            axes = axes_from_tiff(series.axes, series.shape, where=str(path))
            levels = tuple(zarr.open(series.aszarr(level=i), mode="r") for i in range(len(series.levels)))
            kind = "ome-tiff" if tif.is_ome else "imagej-tiff" if tif.is_imagej else "tiff"
            return RawStack(levels[0], axes, levels, kind, path, handle=tif)
        except StackError:
            tif.close()
            raise
        except Exception as exc:
            tif.close()
            raise StackError(f"cannot read TIFF {path}: {exc}") from exc


def _open_tiff_sequence(path: Path, files: list[Path]) -> RawStack:
    array = TiffSequenceArray(files)
    if len(array.frame_shape) == 2:
        names = ["t", "y", "x"]
    elif len(array.frame_shape) == 3:  # RGB frames (YXS) or 3D frames (ZYX) as in 3D CTC data sets
        letters = {"S": "c", "C": "c", "Y": "y", "X": "x"}
        names = ["t", *(letters.get(a, "z") for a in array.frame_axes.upper())]
    else:
        raise StackError(
            f"{path}: the TIFFs hold {array.frame_shape} frames; a folder of 2D, RGB or 3D frames is needed"
        )
    axes = axes_from_names(names, array.shape, origin="the file sequence (one file per time point)", where=str(path))
    return RawStack(array, axes, (array,), "tiff-sequence", path)


def _open_zarr_path(path: Path) -> RawStack:
    try:
        zarr_format = 3 if (path / "zarr.json").is_file() else 2  # no probing of the other format's files
        node = zarr.open(store=LocalStore(path, read_only=True), mode="r", zarr_format=zarr_format)
    except Exception as exc:
        raise StackError(f"{path} is not a readable zarr array or group: {exc}") from exc
    if isinstance(node, zarr.Group):
        return _from_zarr_group(node, path)
    return _from_zarr_array(node, path)


def _zarr_dimension_names(array: zarr.Array) -> list[str | None] | None:
    names = getattr(array.metadata, "dimension_names", None)
    if names is None:
        names = array.attrs.get("_ARRAY_DIMENSIONS")  # xarray's convention in zarr v2
    return list(names) if names is not None and len(names) == array.ndim else None


def _from_zarr_array(array: zarr.Array, path: Path | None) -> RawStack:
    where = str(path) if path else f"zarr array {array.shape}"
    names = _zarr_dimension_names(array)
    if names is not None:
        axes = axes_from_names(names, array.shape, origin="zarr dimension_names", where=where)
    else:
        axes = infer_axes(array.shape, where=where)
    return RawStack(array, axes, (array,), "zarr", path)


def _from_zarr_group(group: zarr.Group, path: Path | None) -> RawStack:
    where = str(path) if path else "zarr group"
    ome = read_multiscales(group.attrs)
    if ome is not None:
        try:
            levels = tuple(group[p] for p in ome.paths)
        except KeyError as exc:
            raise StackError(f"{where}: OME-Zarr multiscales names a missing array {exc}") from exc
        axes = axes_from_names(ome.axes, levels[0].shape, origin=f"OME-Zarr {ome.version} metadata", where=where)
        return RawStack(levels[0], axes, levels, "ome-zarr", path, ome=ome)
    if LABEL_STORE_KEY in group.attrs and "labels" in group:
        raw = _from_zarr_array(group["labels"], path)
        raw.kind = "label-store"
        return raw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arrays = list(group.arrays())
    if len(arrays) == 1:
        return _from_zarr_array(arrays[0][1], path)
    names = ", ".join(name for name, _ in arrays) or "none"
    raise StackError(
        f"{where} is a zarr group without OME-Zarr multiscales metadata and with {len(arrays)} arrays ({names}); "
        "open one array, e.g. <path>/<name>"
    )


def _from_array_like(array: Any) -> RawStack:
    shape = tuple(int(s) for s in array.shape)
    where = f"{type(array).__name__} of shape {shape}"
    dims = getattr(array, "dims", None)  # xarray
    if isinstance(dims, tuple) and all(isinstance(d, str) for d in dims) and len(dims) == len(shape):
        axes = axes_from_names(list(dims), shape, origin="array dims", where=where)
    else:
        axes = infer_axes(shape, where=where)
    return RawStack(array, axes, (array,), "array", None)
