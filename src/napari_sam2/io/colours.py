"""Object colours: normalised to ``"#rrggbb"``; distinct defaults derived from the object id."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

from napari_sam2.io.errors import LabelStoreError

_GOLDEN = 0.618033988749895


def default_colour(obj_id: int) -> str:
    """A bright colour for ``obj_id``; neighbouring ids get well separated hues."""
    r, g, b = colorsys.hsv_to_rgb((int(obj_id) * _GOLDEN) % 1.0, 0.65, 0.95)
    return "#{:02x}{:02x}{:02x}".format(*(round(v * 255) for v in (r, g, b)))


def normalise_colour(colour: str | Sequence[float]) -> str:
    """``"#rrggbb"`` from ``"#rrggbb"``/``"#rrggbbaa"``, RGB(A) floats in [0, 1] or ints in 0..255 (alpha dropped)."""
    if isinstance(colour, str):
        text = colour.strip().lstrip("#")
        try:
            if len(text) in (6, 8):
                int(text, 16)
                return "#" + text[:6].lower()
        except ValueError:
            pass
        raise LabelStoreError(f"colour {colour!r} is not '#rrggbb'")
    values = [float(v) for v in colour]
    if len(values) not in (3, 4):
        raise LabelStoreError(f"colour {tuple(colour)} needs 3 (RGB) or 4 (RGBA) values")
    scale = 255.0 if all(0.0 <= v <= 1.0 for v in values) else 1.0  # all in [0, 1]: floats; else 0..255
    rgb = [round(v * scale) for v in values[:3]]
    if not all(0 <= v <= 255 for v in rgb):
        raise LabelStoreError(f"colour {tuple(colour)} is outside 0..1 (floats) or 0..255 (ints)")
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def colour_rgba(colour: str) -> list[int]:
    """``[r, g, b, 255]`` ints for a ``"#rrggbb"`` colour."""
    text = colour.lstrip("#")
    return [int(text[i : i + 2], 16) for i in (0, 2, 4)] + [255]
