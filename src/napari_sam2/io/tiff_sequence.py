"""A folder of single-frame TIFFs (``t000.tif, t001.tif, …`` as in the Cell Tracking Challenge) as one lazy array."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from napari_sam2.io.errors import StackError
from napari_sam2.io.lzw import ensure_lzw_decoder
from napari_sam2.io.tifffile_log import quiet_tifffile

TIFF_SUFFIXES = (".tif", ".tiff")


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def list_tiff_files(folder: Path) -> list[Path]:
    """The TIFF files directly in ``folder``, in natural order (``t2`` before ``t10``); hidden files skipped."""
    files = [p for p in folder.iterdir() if p.suffix.lower() in TIFF_SUFFIXES and not p.name.startswith(".")]
    return sorted(files, key=_natural_key)


class TiffSequenceArray:
    """Array-like of shape ``(n_files, *frame_shape)``; indexing reads only the files it selects.

    Only the first file is opened up front; a file whose shape or dtype differs raises :class:`StackError` when read.
    """

    def __init__(self, files: list[Path]) -> None:
        if not files:
            raise StackError("no TIFF files to stack")
        self.files = list(files)
        ensure_lzw_decoder()
        try:
            with quiet_tifffile(), tifffile.TiffFile(files[0]) as tif:
                series = tif.series[0]
                self.frame_shape = tuple(int(s) for s in series.shape)
                self.dtype = np.dtype(series.dtype)
                self.frame_axes = series.axes
        except (tifffile.TiffFileError, OSError, ValueError, IndexError) as exc:
            raise StackError(f"cannot read TIFF {files[0]}: {exc}") from exc
        self.shape = (len(files), *self.frame_shape)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return len(self.files)

    def read_file(self, index: int) -> np.ndarray:
        """The frame stored in file ``index`` (shape ``frame_shape``)."""
        path = self.files[index]
        try:
            with quiet_tifffile():
                data = tifffile.imread(path)
        except (tifffile.TiffFileError, OSError, ValueError) as exc:
            raise StackError(f"cannot read TIFF {path}: {exc}") from exc
        if data.shape != self.frame_shape or data.dtype != self.dtype:
            raise StackError(
                f"{path} holds {data.shape} {data.dtype}, but the sequence's first file {self.files[0].name} "
                f"holds {self.frame_shape} {self.dtype}"
            )
        return data

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        first, rest = key[0], key[1:]
        if isinstance(first, (int, np.integer)):
            return self.read_file(int(first))[rest]
        indices = range(len(self.files))[first]
        frames = [self.read_file(i)[rest] for i in indices]
        if not frames:
            return np.empty((0, *self.frame_shape), self.dtype)[(slice(None), *rest)]
        return np.stack(frames)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self[:]
        return data if dtype is None else data.astype(dtype)
