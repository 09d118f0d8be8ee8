"""OME-Zarr (NGFF) metadata: reading ``multiscales`` of versions 0.4 (zarr v2) and 0.5 (zarr v3), and writing them.

0.5 keeps its metadata under ``attributes["ome"]`` with the version there; 0.4 keeps it at the top level of the
attributes with the version inside each entry. Axes must be ordered time, channel, space (2 or 3 space axes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
_ORDER = {"time": 0, "channel": 1, "space": 2}
_METRIC = ("yocto", "zepto", "atto", "femto", "pico", "nano", "micro", "milli", "centi", "deci", "", "hecto",
           "kilo", "mega", "giga", "tera", "peta", "exa", "zetta", "yotta")
UNITS = {  # the unit names OME-Zarr allows (UDUNITS-2), by axis type
    "space": {f"{p}meter" for p in _METRIC} | {"angstrom", "foot", "inch", "mile", "parsec", "yard"},
    "time": {f"{p}second" for p in _METRIC} | {"minute", "hour", "day"},
}


def ome_unit(axis: str, unit: Any) -> str | None:
    """``unit`` (a name, or a pint unit as napari gives) if OME-Zarr allows it on ``axis``; None otherwise
    (e.g. napari's default ``pixel``)."""
    name = str(unit) if unit is not None else ""
    return name if name in UNITS.get(AXIS_TYPES.get(axis, ""), set()) else None


@dataclass(frozen=True)
class OmeMultiscales:
    """The first ``multiscales`` entry of an OME-Zarr image group. ``paths[0]`` is the full-resolution level."""

    version: str
    axes: tuple[str, ...]
    axis_types: tuple[str | None, ...]
    paths: tuple[str, ...]
    scales: tuple[tuple[float, ...], ...]
    name: str | None = None
    units: tuple[str | None, ...] = ()  # per axis, where the metadata gives one


def ome_attributes(attrs: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any]]:
    """``(version, namespace)``: the OME keys of a group's attributes, for 0.5 (``ome``) and 0.4 (top level)."""
    if isinstance(attrs.get("ome"), Mapping):
        ome = attrs["ome"]
        return str(ome.get("version")) if ome.get("version") is not None else None, ome
    version = None
    entries = attrs.get("multiscales")
    if isinstance(entries, list) and entries and isinstance(entries[0], Mapping):
        version = entries[0].get("version")
    elif isinstance(attrs.get("image-label"), Mapping):
        version = attrs["image-label"].get("version")
    return (str(version) if version is not None else None), attrs


def read_multiscales(attrs: Mapping[str, Any]) -> OmeMultiscales | None:
    """The image's multiscales metadata, or None if the attributes have none."""
    version, ns = ome_attributes(attrs)
    entries = ns.get("multiscales")
    if not isinstance(entries, list) or not entries:
        return None
    entry = entries[0]
    datasets = entry.get("datasets") or []
    if not datasets:
        return None
    raw_axes = entry.get("axes") or []
    names = [str(a.get("name")) if isinstance(a, Mapping) else str(a) for a in raw_axes]
    types = [a.get("type") if isinstance(a, Mapping) else AXIS_TYPES.get(str(a)) for a in raw_axes]
    if "c" not in names:  # a channel axis with another name is the channel axis all the same
        names = ["c" if t == "channel" else n for n, t in zip(names, types, strict=True)]
    scales = []
    for ds in datasets:
        scale = next(
            (t.get("scale") for t in ds.get("coordinateTransformations", []) if t.get("type") == "scale"), None
        )
        scales.append(tuple(float(s) for s in scale) if scale else tuple(1.0 for _ in names))
    return OmeMultiscales(
        version=str(version or entry.get("version") or "0.4"),
        axes=tuple(names),
        axis_types=tuple(types),
        paths=tuple(str(ds["path"]) for ds in datasets),
        scales=tuple(scales),
        name=entry.get("name"),
        units=tuple(a.get("unit") if isinstance(a, Mapping) and isinstance(a.get("unit"), str) else None
                    for a in raw_axes),
    )


def label_names(attrs: Mapping[str, Any]) -> list[str]:
    """The label images listed by a ``labels`` group's attributes."""
    _version, ns = ome_attributes(attrs)
    names = ns.get("labels")
    return [str(n) for n in names] if isinstance(names, list) else []


def check_axis_order(axes: Sequence[str]) -> None:
    """Raise ``ValueError`` unless ``axes`` are valid OME-Zarr axes (≤ 5, time, channel, then 2–3 space axes)."""
    types = [AXIS_TYPES.get(a) for a in axes]
    if None in types or len(axes) > 5:
        raise ValueError(f"axes {tuple(axes)} cannot be written as OME-Zarr (allowed: t, c, z, y, x; at most 5)")
    if [_ORDER[t] for t in types] != sorted(_ORDER[t] for t in types):
        raise ValueError(f"axes {tuple(axes)} are not in OME-Zarr order (time, channel, space)")


def ome_order(axes: Sequence[str]) -> list[str]:
    """``axes`` sorted into OME-Zarr order: t, c, z, y, x."""
    order = ["t", "c", "z", "y", "x"]
    unknown = [a for a in axes if a not in order]
    if unknown:
        raise ValueError(f"axes {unknown} cannot be written as OME-Zarr (allowed: t, c, z, y, x)")
    return sorted(axes, key=order.index)


def multiscales_entry(
    axes: Sequence[str],
    paths: Sequence[str],
    scales: Sequence[Sequence[float]],
    *,
    name: str,
    version: str,
    units: Sequence[str | None] | None = None,
    translation: Sequence[float] | None = None,
) -> dict[str, Any]:
    """One ``multiscales`` entry (``version`` is included only for 0.4, where it lives in the entry).

    ``units``: per axis, an OME-Zarr unit name or None; ``translation``: the position of the first pixel, per axis
    (written only where it is not all zero)."""
    check_axis_order(axes)
    units = list(units) if units is not None else [None] * len(axes)
    shift = [float(v) for v in translation] if translation is not None and any(translation) else None

    def transforms(scale: Sequence[float]) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = [{"type": "scale", "scale": [float(v) for v in scale]}]
        return steps + ([{"type": "translation", "translation": shift}] if shift else [])

    entry: dict[str, Any] = {
        "name": name,
        "axes": [{"name": a, "type": AXIS_TYPES[a], **({"unit": u} if u else {})}
                 for a, u in zip(axes, units, strict=True)],
        "datasets": [{"path": p, "coordinateTransformations": transforms(s)}
                     for p, s in zip(paths, scales, strict=True)],
    }
    if version != "0.5":
        entry = {"version": version, **entry}
    return entry


def wrap_ome(version: str, content: dict[str, Any]) -> dict[str, Any]:
    """Group attributes holding ``content`` the way ``version`` wants it (0.5: under ``ome``; 0.4: top level)."""
    return {"ome": {"version": version, **content}} if version == "0.5" else dict(content)
