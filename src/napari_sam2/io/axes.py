"""Axis names of a stack: read from metadata where present, else inferred by one stated rule.

Names are lower case: ``t`` time, ``c`` channel, ``z`` depth, ``y``/``x`` the 2D frame; any other name (``p``,
``a``…) is a further axis that ``position`` must fix. Inference rule (arrays without names, and TIFF axes ``Q``/``I``
which tifffile uses for "unknown"): the last two axes are ``y, x`` — except that a trailing axis of size 3 or 4 after
two axes of at least 8 pixels is an RGB(A) channel ``c`` — and the remaining leading axes are, in order, ``t`` (one),
``t, z`` (two), ``t, c, z`` (three, the OME-Zarr order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from napari_sam2.io.errors import StackError

SPATIAL = ("y", "x")
CHANNEL = "c"
MAX_DIMS = 6
_TIFF_NAMES = {"T": "t", "Z": "z", "C": "c", "Y": "y", "X": "x"}
_TIFF_UNKNOWN = {"Q", "I"}
_LEADING_GUESSES = {1: ("t",), 2: ("t", "z"), 3: ("t", "c", "z")}


@dataclass(frozen=True)
class AxesInfo:
    """Names of every axis of an N-D array, and whether (and how) they were inferred."""

    names: tuple[str, ...]
    inferred: bool
    note: str

    @property
    def channel(self) -> int | None:
        """Index of the channel axis, or None."""
        return self.names.index(CHANNEL) if CHANNEL in self.names else None

    def without_channel(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if n != CHANNEL)


def _check_ndim(shape: Sequence[int], where: str) -> None:
    if len(shape) < 3:
        raise StackError(
            f"{where} has shape {tuple(shape)}: a stack needs at least 3 dimensions (frames, y, x); "
            "a single 2D image is not supported"
        )
    if len(shape) > MAX_DIMS:
        raise StackError(f"{where} has {len(shape)} dimensions {tuple(shape)}; at most {MAX_DIMS} are supported")


def _validate(names: Sequence[str], shape: Sequence[int], where: str) -> tuple[str, ...]:
    names = tuple(str(n) for n in names)
    if len(names) != len(shape):
        raise StackError(f"{where}: {len(names)} axis names {names} for {len(shape)} dimensions {tuple(shape)}")
    if len(set(names)) != len(names):
        raise StackError(f"{where}: axis names {names} are not unique")
    missing = [s for s in SPATIAL if s not in names]
    if missing:
        raise StackError(f"{where}: axes {names} have no {' or '.join(missing)} axis")
    return names


def infer_axes(shape: Sequence[int], known: Sequence[str | None] | None = None, *, where: str = "array") -> AxesInfo:
    """Names for ``shape``; ``known`` gives names already certain (None where unknown). See the module rule."""
    _check_ndim(shape, where)
    ndim = len(shape)
    names: list[str | None] = list(known) if known is not None else [None] * ndim
    if all(n is None for n in names):
        rgb = shape[-1] in (3, 4) and shape[-2] >= 8 and shape[-3] >= 8
        if rgb and ndim == 3:
            raise StackError(f"{where} has shape {tuple(shape)}: a single RGB image is not a stack")
        tail = ["y", "x", CHANNEL] if rgb else ["y", "x"]
        names[ndim - len(tail) :] = tail
    elif "y" not in names and "x" not in names and names[-2:] == [None, None]:
        names[-2:] = ["y", "x"]
    unknown = [i for i, n in enumerate(names) if n is None]
    if unknown:
        pool = [n for n in ("t", "z", "c") if n not in names]
        guesses = _LEADING_GUESSES.get(len(unknown), ())
        chosen = [g for g in guesses if g in pool]
        if len(chosen) < len(unknown):
            chosen = pool[: len(unknown)]
        chosen += [f"dim{i}" for i in unknown[len(chosen) :]]
        order = ("t", "c", "z")
        chosen.sort(key=lambda n: order.index(n) if n in order else len(order))
        for i, name in zip(unknown, chosen, strict=True):
            names[i] = name
    final = _validate([str(n) for n in names], shape, where)
    note = (
        f"axes {''.join(final) if all(len(n) == 1 for n in final) else final} inferred from shape {tuple(shape)}"
        if unknown or known is None
        else "axes from metadata"
    )
    return AxesInfo(final, inferred=bool(unknown) or known is None, note=note)


def axes_from_names(names: Sequence[str | None], shape: Sequence[int], *, origin: str, where: str) -> AxesInfo:
    """Axes given by metadata (``origin`` says which); missing names (None) are inferred."""
    _check_ndim(shape, where)
    cleaned: list[str | None] = [None if n is None or str(n) == "" else str(n).lower() for n in names]
    if any(n is None for n in cleaned):
        info = infer_axes(shape, cleaned, where=where)
        return AxesInfo(info.names, True, f"{info.note} (partly from {origin})")
    return AxesInfo(_validate([str(n) for n in cleaned], shape, where), False, f"axes from {origin}")


def axes_from_tiff(code: str, shape: Sequence[int], *, where: str) -> AxesInfo:
    """Axes from a tifffile series code such as ``"TZCYX"`` or ``"QYX"`` (``S`` samples become ``c``)."""
    names: list[str | None] = []
    for letter in code.upper():
        if letter in _TIFF_UNKNOWN:
            names.append(None)
        elif letter == "S":
            names.append("c" if "C" not in code.upper() else "s")
        else:
            names.append(_TIFF_NAMES.get(letter, letter.lower()))
    return axes_from_names(names, shape, origin="TIFF metadata", where=where)


def axes_override(axes: str | Sequence[str], shape: Sequence[int], *, where: str) -> AxesInfo:
    """Axes named by the caller: a string of one-letter names (``"tzyx"``) or a sequence of names."""
    names = list(axes) if isinstance(axes, str) else [str(a) for a in axes]
    _check_ndim(shape, where)
    return AxesInfo(_validate([n.lower() for n in names], shape, where), False, "axes given by the caller")
