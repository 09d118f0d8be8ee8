"""Finding a truncated or damaged TIFF when it is opened, not at frame 300 of a run: everything that can be checked
without reading pixels — the frames its ImageJ metadata announces, and where each page's data lies in the file."""

from __future__ import annotations

from math import prod
from pathlib import Path
from typing import Any

import tifffile

from napari_sam2.io.errors import StackError

_PLANE_AXES = "YXS"  # axes of one page's image: rows, columns, samples (RGB)


def _planes(series: Any) -> int:
    """How many 2D planes (pages' images) the series holds."""
    return prod(n for n, axis in zip(series.shape, series.axes, strict=True) if axis not in _PLANE_AXES)


def _page_end(page: Any) -> int:
    """The byte just after the last strip or tile of ``page``'s data."""
    return max((o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=True)), default=0)


def check_tiff_complete(path: Path, tif: tifffile.TiffFile, series: Any, complaints: list[str]) -> None:
    """Raise :class:`StackError` naming ``path`` (and the page) if the data of ``series`` cannot all be in the file.

    ``complaints``: what tifffile logged while opening it, quoted in the message. Costs one small directory read per
    page of a series whose pages are not stored in one block; no pixel data is read.
    """
    size = path.stat().st_size
    said = f" (tifffile: {complaints[0]})" if complaints else ""

    def fail(problem: str) -> None:
        raise StackError(f"{path} is truncated or corrupt: {problem}{said}")

    announced = (tif.imagej_metadata or {}).get("images") if tif.is_imagej else None
    if isinstance(announced, int) and announced > _planes(series):
        fail(f"its ImageJ metadata announces {announced} images, but only {_planes(series)} can be read from its "
             f"{size} bytes")
    offset = getattr(series, "dataoffset", None)
    if offset is not None:  # one contiguous block
        if offset + series.nbytes > size:
            fail(f"its image data should end at byte {offset + series.nbytes}, but the file has {size} bytes")
        return
    pages = series.pages
    for index in range(len(pages)):
        try:
            page = pages[index]
        except (IndexError, ValueError, OSError, tifffile.TiffFileError):
            page = None
        if page is None:
            fail(f"page {index} of {len(pages)} is missing (the file ends at byte {size})")
        if page.parent is tif and _page_end(page) > size:  # pages in other files (multi-file OME) are theirs
            fail(f"the data of page {index} of {len(pages)} should end at byte {_page_end(page)}, but the file has "
                 f"{size} bytes")
