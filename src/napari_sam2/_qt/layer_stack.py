"""What the widget needs to know about an image layer: axis names, the propagation axis, channels, the file behind
it and where its labels are saved by default. No Qt here, and nothing is read from the pixels."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_sam2.io.axes import CHANNEL, SPATIAL, axes_from_names, infer_axes

_AXIS_ALIASES = {"t": "t", "time": "t", "z": "z", "depth": "z", "slice": "z", "c": "c", "channel": "c",
                 "y": "y", "x": "x"}
_STACK_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr", ".npz", ".npy")
STORE_SUFFIX = ".sam2.zarr"
SINGLE_IMAGE_AXIS = "t"  # the frame axis given to a single 2D image (one frame)
IN_MEMORY_FOLDER = Path.home() / "napari-sam2-labels"


def layer_array(layer: Any) -> Any:
    """The full-resolution array of an image layer (level 0 of a multiscale layer)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


class OneFrame:
    """A single 2D image (H, W[, C]) seen as a stack of one frame (1, H, W[, C]), read lazily from ``array``."""

    def __init__(self, array: Any) -> None:
        self.array = array
        self.shape = (1, *(int(s) for s in array.shape))
        self.dtype = array.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        first, rest = (key[0], key[1:]) if key else (slice(None), ())
        plane = np.asarray(self.array[rest]) if rest else np.asarray(self.array)
        return np.asarray(np.expand_dims(plane, 0)[first])


def layer_axes(layer: Any) -> tuple[str, ...]:
    """Names of every axis of the layer's array (``c`` last for RGB layers), from its axis labels where they are
    meaningful (``t``, ``time``, ``z``, ``c``, ``y``, ``x``…), else by the I/O layer's inference rule."""
    shape = tuple(int(s) for s in layer_array(layer).shape)
    rgb = bool(getattr(layer, "rgb", False))
    n_dims = len(shape) - rgb
    if n_dims == 2:  # a single image (grey, or an RGB photo)
        return ("y", "x", CHANNEL) if rgb else ("y", "x")
    labels = [str(label).strip().lower() for label in getattr(layer, "axis_labels", ())]
    from_reader = [str(a) for a in (getattr(layer, "metadata", None) or {}).get("axes", ()) if a != CHANNEL or rgb]
    if len(from_reader) == len(shape) and all(a in _AXIS_ALIASES for a in from_reader):
        labels = from_reader[: len(shape) - rgb]  # our reader's axis names (channels split into layers)
    known: list[str | None] = [_AXIS_ALIASES.get(label) for label in labels]
    named = [n for n in known if n]
    if len(known) != n_dims or len(set(named)) != len(named) or (rgb and CHANNEL in named):
        known = [None] * n_dims  # missing or contradictory labels: ignore them
    if n_dims >= 2 and "y" not in known and "x" not in known and known[-2:] == [None, None]:
        known[-2:] = ["y", "x"]  # napari shows the last two axes of a layer as its rows and columns
    if rgb:
        known.append(CHANNEL)
    if None not in known:
        return axes_from_names(known, shape, origin="layer axis labels", where=f"layer {layer.name!r}").names
    return infer_axes(shape, known, where=f"layer {layer.name!r}").names


def frame_axis_choices(axes: tuple[str, ...]) -> list[str]:
    """Axes frames can run along: every axis but y, x and the channel."""
    return [a for a in axes if a not in (*SPATIAL, CHANNEL)]


def default_frame_axis(axes: tuple[str, ...]) -> str | None:
    """``t`` if present, else ``z``, else the first other candidate (None for a 2D image)."""
    choices = frame_axis_choices(axes)
    for preferred in ("t", "z"):
        if preferred in choices:
            return preferred
    return choices[0] if choices else None


def channel_choices(layer: Any, axes: tuple[str, ...]) -> list[tuple[str, Any]]:
    """``[(label, channel spec for open_stack)]``; empty when the layer has no channel axis."""
    if CHANNEL not in axes:
        return []
    n = int(layer_array(layer).shape[axes.index(CHANNEL)])
    names = ("red", "green", "blue", "alpha") if getattr(layer, "rgb", False) else ()
    single = [(f"{i} ({names[i]})" if i < len(names) else str(i), i) for i in range(n)]
    return [("all (colour)", "rgb"), *single]


def layer_file(layer: Any) -> Path | None:
    """The file or folder the layer was read from, if napari knows it."""
    source = getattr(layer, "source", None)
    path = getattr(source, "path", None)
    return Path(path) if path else None


def _stem(path: Path) -> str:
    name = path.name
    for suffix in _STACK_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def default_store_path(layer: Any) -> tuple[Path, bool]:
    """``(path, beside_file)``: ``<image>.sam2.zarr`` next to the layer's file; for a layer with no file (or a file
    in a read-only folder), a folder in ``~/napari-sam2-labels`` named after the layer and its shape (so reopening
    finds it again)."""
    path = layer_file(layer)
    if path is not None and os.access(path.parent, os.W_OK):
        return path.parent / f"{_stem(path)}{STORE_SUFFIX}", True
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(layer.name)).strip("_") or "image"
    shape = "x".join(str(s) for s in layer_array(layer).shape)
    digest = hashlib.sha1(f"{layer.name}|{shape}".encode()).hexdigest()[:8]
    return IN_MEMORY_FOLDER / f"{safe}-{digest}{STORE_SUFFIX}", False


@dataclass(frozen=True)
class StackChoice:
    """The stack a session works on: which layer, along which axis, which channel, where the other axes stand.
    ``single_image``: the layer is one 2D image (``axes`` then start with a frame axis of length 1 that the layer
    does not have; see :class:`OneFrame`)."""

    axes: tuple[str, ...]
    frame_axis: str
    channel: Any
    position: dict[str, int]
    single_image: bool = False

    @property
    def label_axes(self) -> tuple[str, ...]:
        """Axes of the label image (and of the Points, Shapes and Labels layers): the image's, without ``c``."""
        return tuple(a for a in self.axes if a != CHANNEL)

    @property
    def frame_dim(self) -> int:
        """Index of the frame axis among the label axes."""
        return self.label_axes.index(self.frame_axis)

    def frames_of(self, layer: Any) -> Any:
        """The array to open as the stack (the layer's, with a leading frame axis for a single image)."""
        return OneFrame(layer_array(layer)) if self.single_image else layer_array(layer)

    def describe(self) -> str:
        if self.single_image:
            return "a single image"
        where = ", ".join(f"{k}={v}" for k, v in self.position.items())
        return f"frames along {self.frame_axis}" + (f" at {where}" if where else "")


def position_at(axes: tuple[str, ...], frame_axis: str, data_point: Any) -> dict[str, int]:
    """Index on every non-spatial axis other than the frame axis, from a point in label-layer data coordinates."""
    label_axes = [a for a in axes if a != CHANNEL]
    return {a: int(round(float(data_point[i]))) for i, a in enumerate(label_axes)
            if a not in (*SPATIAL, frame_axis)}
