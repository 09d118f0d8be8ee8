"""The physical size of a stack's pixels, planes and time steps, read from its metadata (no pixel data).

OME-Zarr: the full-resolution level's ``scale`` and the axes' units. OME-TIFF: ``PhysicalSizeX/Y/Z`` and
``TimeIncrement`` with their units (OME's defaults µm and s). ImageJ TIFF: the X/Y resolution tags, ``spacing``
(the z step), ``finterval`` (the time step) and ``unit``. Axes without a known size get 1.0 and no unit.
"""

from __future__ import annotations

import re
from typing import Any

from napari_sam2.io.ome_metadata import ome_unit
from napari_sam2.io.stack_formats import RawStack

_LENGTH = {"µm": "micrometer", "um": "micrometer", "micron": "micrometer", "microns": "micrometer",
           "\\u00B5m": "micrometer", "nm": "nanometer", "mm": "millimeter", "cm": "centimeter", "m": "meter",
           "Å": "angstrom"}
_TIME = {"s": "second", "sec": "second", "ms": "millisecond", "min": "minute", "h": "hour"}


def _unit(axis: str, name: Any) -> str | None:
    text = str(name or "").strip()
    text = _TIME.get(text, text) if axis == "t" else _LENGTH.get(text, text)
    return ome_unit(axis, text)


def physical_scale(raw: RawStack) -> tuple[dict[str, float], dict[str, str | None]]:
    """``({axis: size of one step}, {axis: OME-Zarr unit or None})`` for the axes t, z, y, x of ``raw`` that have
    one in the metadata."""
    names = list(raw.axes.names)
    if raw.ome is not None:
        scale = dict(zip(names, raw.ome.scales[0], strict=False)) if raw.ome.scales else {}
        units = dict(zip(names, raw.ome.units, strict=False)) if raw.ome.units else {}
        return ({a: float(v) for a, v in scale.items() if a in "tzyx"},
                {a: _unit(a, u) for a, u in units.items() if a in "tzyx"})
    handle = raw.handle
    if handle is None:
        return {}, {}
    if getattr(handle, "ome_metadata", None):
        return _from_ome_xml(handle.ome_metadata)
    if getattr(handle, "imagej_metadata", None) is not None:
        return _from_imagej(handle)
    return {}, {}


def _from_ome_xml(xml: str) -> tuple[dict[str, float], dict[str, str | None]]:
    pixels = re.search(r"<(?:\w+:)?Pixels\b([^>]*)>", xml)
    attrs = dict(re.findall(r'(\w+)="([^"]*)"', pixels.group(1))) if pixels else {}
    sizes, units = {}, {}
    for axis, key, default in (("x", "PhysicalSizeX", "µm"), ("y", "PhysicalSizeY", "µm"),
                               ("z", "PhysicalSizeZ", "µm"), ("t", "TimeIncrement", "s")):
        if key in attrs:
            try:
                sizes[axis] = float(attrs[key])
            except ValueError:
                continue
            units[axis] = _unit(axis, attrs.get(f"{key}Unit", default))
    return sizes, units


def _from_imagej(handle: Any) -> tuple[dict[str, float], dict[str, str | None]]:
    meta = handle.imagej_metadata or {}
    length = _unit("x", meta.get("unit"))
    sizes: dict[str, float] = {}
    tags = handle.pages[0].tags
    for axis, tag in (("x", "XResolution"), ("y", "YResolution")):
        if tag in tags:
            num, den = tags[tag].value
            if num and den and (num, den) != (1, 1):
                sizes[axis] = den / num
    if meta.get("spacing"):
        sizes["z"] = float(meta["spacing"])
    if meta.get("finterval"):
        sizes["t"] = float(meta["finterval"])
    units = {a: (_unit("t", "s") if a == "t" else length) for a in sizes}
    return sizes, units
