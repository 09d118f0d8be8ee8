"""``FrameSource``: a lazy sequence of 2D frames along one axis of a stack, and ``open_stack`` which makes one.

The engine consumes any FrameSource as ``len(src)``, ``src[i]`` → ``np.ndarray`` (H, W) or (H, W, 3),
``src.dtype``, ``src.shape2d`` and ``src.intensity_range()``. Reading frame ``i`` reads only that frame's chunks
(zarr), pages (TIFF) or file (folder of TIFFs).
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_sam2.io.axes import CHANNEL, SPATIAL
from napari_sam2.io.errors import StackError
from napari_sam2.io.intensity import (
    DEFAULT_MAX_FRAMES,
    DEFAULT_PERCENTILES,
    composite_rgb,
    robust_range,
    sample_indices,
)
from napari_sam2.io.stack_formats import RawStack, open_raw
from napari_sam2.io.tifffile_log import quiet_tifffile

ChannelSpec = int | str | None


class FrameSource:
    """Frames ``src[i]`` along ``frame_axis`` of a stack, the other non-spatial axes fixed by ``position``.

    ``channel``: None (no channel axis, or one of size 1), an index, or ``"rgb"`` — 3 or 4 channels give the native
    (H, W, 3) frame in the stack's dtype; other channel counts are composited to float32 RGB in [0, 1] (each channel
    normalised by its own intensity range; 2 channels: green + magenta); a stack without channels is repeated ×3.
    Frames of numpy sources are read-only views; copy before changing them.
    """

    def __init__(
        self,
        raw: RawStack,
        *,
        axis: str | int = "t",
        channel: ChannelSpec = None,
        position: Mapping[str | int, int] | None = None,
    ) -> None:
        self._raw = raw
        self._names = raw.axes.names
        self._shape = tuple(int(s) for s in raw.array.shape)
        self._frame_axis = self._resolve_axis(axis)
        self._position = self._resolve_position(position or {})
        self._channel_mode, self._channel_index = self._resolve_channel(channel)
        self._ranges: dict[tuple[Any, ...], tuple[float, float]] = {}
        self._channel_ranges: list[tuple[float, float]] | None = None

    # ----------------------------------------------------------------- selection
    def _resolve_axis(self, axis: str | int) -> int:
        where, names = self._raw.where, self._names
        candidates = [n for n in names if n not in (*SPATIAL, CHANNEL)]
        if isinstance(axis, (int, np.integer)):
            if not -len(names) <= int(axis) < len(names):
                raise StackError(f"{where}: axis index {axis} out of range for axes {names}")
            index = int(axis) % len(names)
        elif str(axis).lower() in names:
            index = names.index(str(axis).lower())
        else:
            raise StackError(
                f"{where} has no axis {axis!r}: its axes are {names} ({self._raw.axes.note}); "
                f"frames can run along {candidates}"
            )
        if names[index] in (*SPATIAL, CHANNEL):
            raise StackError(f"{where}: frames cannot run along the {names[index]!r} axis; choose one of {candidates}")
        return index

    def _resolve_position(self, position: Mapping[str | int, int]) -> dict[int, int]:
        where, names, shape = self._raw.where, self._names, self._shape
        resolved: dict[int, int] = {}
        for key, value in position.items():
            if isinstance(key, (int, np.integer)) and -len(names) <= int(key) < len(names):
                index = int(key) % len(names)
            elif str(key).lower() in names:
                index = names.index(str(key).lower())
            else:
                raise StackError(f"{where}: position names axis {key!r}, but the axes are {names}")
            name = names[index]
            if index == self._frame_axis or name in (*SPATIAL, CHANNEL):
                raise StackError(f"{where}: position cannot fix the {name!r} axis (frame axis, y, x or channel)")
            value = operator.index(value)
            if not 0 <= value < shape[index]:
                raise StackError(f"{where}: position {name}={value} is outside 0..{shape[index] - 1}")
            resolved[index] = value
        for index, name in enumerate(names):
            if index == self._frame_axis or name in (*SPATIAL, CHANNEL) or index in resolved:
                continue
            if shape[index] != 1:
                hint = f" ({self._raw.axes.note}; pass axes=... to name them)" if self._raw.axes.inferred else ""
                raise StackError(
                    f"{where}: axis {name!r} has {shape[index]} entries and frames run along "
                    f"{names[self._frame_axis]!r}; fix it with position={{{name!r}: index}}{hint}"
                )
            resolved[index] = 0
        return resolved

    def _resolve_channel(self, channel: ChannelSpec) -> tuple[str, int | None]:
        where, c = self._raw.where, self._raw.axes.channel
        n = self._shape[c] if c is not None else 0
        if channel is None:
            if n > 1:
                raise StackError(f"{where} has {n} channels on axis 'c': pass channel=<index> or channel='rgb'")
            return "gray", 0 if c is not None else None
        if isinstance(channel, str):
            if channel.lower() != "rgb":
                raise StackError(f"{where}: channel must be None, an index or 'rgb', got {channel!r}")
            if c is None or n == 1:
                return "repeat", 0 if c is not None else None
            return ("rgb", None) if n in (3, 4) else ("composite", None)
        index = operator.index(channel)
        if c is None:
            raise StackError(f"{where} has no channel axis (axes {self._names}); leave channel=None")
        if not -n <= index < n:
            raise StackError(f"{where}: channel {index} out of range, the stack has {n} channels")
        return "gray", index % n

    # ----------------------------------------------------------------- reading
    def _index(self, frame: int, channel: int | slice | None) -> tuple[Any, ...]:
        index: list[Any] = []
        for i, name in enumerate(self._names):
            if i == self._frame_axis:
                index.append(frame)
            elif name in SPATIAL:
                index.append(slice(None))
            elif name == CHANNEL:
                index.append(channel)
            else:
                index.append(self._position[i])
        return tuple(index)

    def _read(self, frame: int, channel: int | slice) -> np.ndarray:
        """Plane ``frame`` as (H, W) for an int ``channel`` or (H, W, C) for a slice."""
        key = self._index(frame, channel)
        with quiet_tifffile():  # a damaged page: our error line says it, without tifffile's own log lines
            data = self._raw.array[key]
            if hasattr(data, "compute"):
                data = data.compute()
            data = np.asarray(data)
        kept = [n for n, k in zip(self._names, key, strict=True) if isinstance(k, slice)]
        order = [kept.index(n) for n in (*SPATIAL, CHANNEL) if n in kept]
        return data.transpose(order) if order != list(range(len(kept))) else data

    def _check_frame(self, frame: Any) -> int:
        try:
            i = operator.index(frame)
        except TypeError:
            raise TypeError(f"frames are indexed by an int, got {type(frame).__name__}") from None
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"frame {i} out of range for {n} frames of {self._raw.where}")
        return i % n

    def __getitem__(self, frame: int) -> np.ndarray:
        """Frame ``frame``: (H, W) in the stack's dtype, or (H, W, 3) with ``channel="rgb"``."""
        i = self._check_frame(frame)
        try:
            if self._channel_mode == "gray":
                out = self._read(i, self._channel_index)
            elif self._channel_mode == "repeat":
                out = np.repeat(self._read(i, self._channel_index)[..., None], 3, axis=-1)
            elif self._channel_mode == "rgb":
                out = self._read(i, slice(0, 3))
            else:
                out = composite_rgb(self._read(i, slice(None)), self._composite_ranges())
        except StackError:
            raise
        except Exception as exc:
            raise StackError(f"cannot read frame {i} of {self._raw.where} (corrupt file?): {exc}") from exc
        if out.base is not None and isinstance(self._raw.array, np.ndarray):
            out = out.view()
            out.flags.writeable = False
        return out

    def __len__(self) -> int:
        return self._shape[self._frame_axis]

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    # ----------------------------------------------------------------- intensity
    def intensity_range(
        self, percentiles: tuple[float, float] = DEFAULT_PERCENTILES, *, max_frames: int = DEFAULT_MAX_FRAMES
    ) -> tuple[float, float]:
        """Robust ``(lo, hi)`` intensity percentiles from at most ``max_frames`` evenly spread frames; ``hi > lo``.

        Composited RGB frames are already in [0, 1]: their range is ``(0.0, 1.0)``.
        """
        if self._channel_mode == "composite":
            return 0.0, 1.0
        key = (tuple(percentiles), max_frames)
        if key not in self._ranges:
            frames = (self[i] for i in sample_indices(len(self), max_frames))
            self._ranges[key] = robust_range(frames, percentiles)
        return self._ranges[key]

    def _composite_ranges(self) -> list[tuple[float, float]]:
        if self._channel_ranges is None:
            c = self._raw.axes.channel
            assert c is not None
            samples = sample_indices(len(self))
            self._channel_ranges = [robust_range(self._read(i, k) for i in samples) for k in range(self._shape[c])]
        return self._channel_ranges

    # ----------------------------------------------------------------- description
    @property
    def shape2d(self) -> tuple[int, int]:
        """(H, W) of every frame."""
        return self._shape[self._names.index("y")], self._shape[self._names.index("x")]

    @property
    def dtype(self) -> np.dtype:
        """dtype of the frames (float32 for composited RGB)."""
        return np.dtype(np.float32) if self._channel_mode == "composite" else np.dtype(self._raw.array.dtype)

    @property
    def axes(self) -> tuple[str, ...]:
        """Names of every axis of the full stack (see ``axes_inferred`` / ``axes_note`` for where they came from)."""
        return self._names

    @property
    def axes_inferred(self) -> bool:
        return self._raw.axes.inferred

    @property
    def axes_note(self) -> str:
        return self._raw.axes.note

    @property
    def full_shape(self) -> tuple[int, ...]:
        """Shape of the full-resolution stack, all axes (channel included)."""
        return self._shape

    @property
    def frame_axis(self) -> str:
        return self._names[self._frame_axis]

    @property
    def position(self) -> dict[str, int]:
        """Index on every non-spatial, non-channel axis other than the frame axis."""
        return {self._names[i]: v for i, v in sorted(self._position.items())}

    @property
    def channel(self) -> ChannelSpec:
        return "rgb" if self._channel_mode in ("rgb", "composite", "repeat") else self._channel_index

    @property
    def is_rgb(self) -> bool:
        return self._channel_mode != "gray"

    @property
    def label_axes(self) -> tuple[str, ...]:
        """Axes of a label image for this stack: ``axes`` without the channel axis."""
        return self._raw.axes.without_channel()

    @property
    def label_shape(self) -> tuple[int, ...]:
        """Shape of a label image for this stack: ``full_shape`` without the channel axis."""
        return tuple(s for s, n in zip(self._shape, self._names, strict=True) if n != CHANNEL)

    def coords(self, frame: int) -> dict[str, int]:
        """Index of frame ``frame`` on every axis of the label image except y and x."""
        i = self._check_frame(frame)
        out = {self.frame_axis: i, **self.position}
        return {n: out[n] for n in self.label_axes if n in out}

    @property
    def path(self) -> Path | None:
        return self._raw.path

    @property
    def kind(self) -> str:
        """Where the stack came from: "tiff", "ome-tiff", "imagej-tiff", "tiff-sequence", "zarr", "ome-zarr"…"""
        return self._raw.kind

    @property
    def raw(self) -> RawStack:
        """The opened stack: full-resolution ``array``, pyramid ``levels``, OME metadata."""
        return self._raw

    def close(self) -> None:
        """Close the file handle of a TIFF source (other sources hold none)."""
        self._raw.close()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        pos = f", position={self.position}" if self.position else ""
        return (
            f"FrameSource({self._raw.where}, {len(self)} frames along {self.frame_axis!r}{pos}, "
            f"shape2d={self.shape2d}, dtype={self.dtype}, axes={self._names})"
        )


def open_stack(
    source: Any,
    *,
    axis: str | int = "t",
    channel: ChannelSpec = None,
    position: Mapping[str | int, int] | None = None,
    axes: str | list[str] | None = None,
) -> FrameSource:
    """Open ``source`` lazily as frames along ``axis``.

    ``source``: a path (.tif, .tiff, .ome.tif, a .zarr / OME-Zarr folder, a folder of single-frame TIFFs) or an
    array (numpy, dask, zarr array or group, xarray). ``axis``: an axis name such as ``"t"`` or ``"z"``, or an index.
    ``position``: the index on every other non-spatial axis of size > 1, e.g. ``{"t": 3}``. ``channel``: see
    :class:`FrameSource`. ``axes``: names for every axis (e.g. ``"tzyx"``), overriding metadata and inference.
    OME-Zarr and OME-TIFF pyramids: frames come from the full-resolution level.

    Raises :class:`StackError` naming the problem and the path.
    """
    raw = open_raw(source, axes=axes)
    try:
        return FrameSource(raw, axis=axis, channel=channel, position=position)
    except BaseException:
        raw.close()
        raise
