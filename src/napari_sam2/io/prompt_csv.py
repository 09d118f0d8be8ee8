"""Click prompts from a napari Points layer saved as CSV (``File > Save Selected Layer(s)`` → ``.csv``).

napari writes ``index, axis-0, …, axis-(D-1)`` and then one column per feature; the layer needs an ``object_id``
feature (the label value of the object each point belongs to) and a ``positive`` feature (True/1 for a positive
click, False/0 for a negative one). A hand-written file may name its coordinate columns ``frame, y, x`` instead.
The points' coordinates are the layer's data coordinates, which are the image's pixels when the layer was made
over the image (napari's default).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_sam2.io.prompt_file import (
    MAX_OBJECT_ID,
    FramePrompt,
    ObjectPrompts,
    PromptFileError,
    PromptSet,
    merge_frame_prompts,
)

_AXIS_COLUMN = re.compile(r"axis-(\d+)")
_TRUE = {"1", "1.0", "true", "yes"}
_FALSE = {"0", "0.0", "false", "no"}


def _coordinate_columns(header: list[str], path: Path) -> list[str]:
    numbered = sorted((int(m.group(1)), name) for name in header if (m := _AXIS_COLUMN.fullmatch(name)))
    if numbered:
        if [i for i, _ in numbered] != list(range(len(numbered))):
            raise PromptFileError(f"{path}: coordinate columns {[n for _, n in numbered]} are not axis-0 … axis-N")
        return [name for _, name in numbered]
    if {"frame", "y", "x"} <= set(header):
        return ["frame", "y", "x"]
    raise PromptFileError(
        f"{path}: no coordinate columns: expected napari's axis-0, axis-1, … (or frame, y, x); found {header}"
    )


def _frame_column(
    n_coords: int, path: Path, axes: Sequence[str] | None, frame_axis: str | None, position: Mapping[str, int],
    free: Sequence[str] = (),
) -> tuple[int, dict[int, tuple[str, int]]]:
    """Which coordinate column is the frame, and which other columns must equal which fixed index."""
    if n_coords < 3:
        raise PromptFileError(f"{path}: points have {n_coords} coordinates; a stack's points have a frame, y and x")
    if n_coords == 3 and (axes is None or len(axes) != 3):
        return 0, {}
    if axes is None or frame_axis is None:
        raise PromptFileError(f"{path}: points have {n_coords} coordinates; say which axis frames run along")
    if len(axes) != n_coords:
        raise PromptFileError(
            f"{path}: points have {n_coords} coordinates but the stack's label axes are {tuple(axes)}: was the "
            "Points layer made over this image?"
        )
    fixed = {i: (name, int(position.get(name, 0))) for i, name in enumerate(axes[:-2])
             if name != frame_axis and name not in free}
    return list(axes).index(frame_axis), fixed


def _flag(value: str, row: int, path: Path) -> int:
    text = value.strip().lower()
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    raise PromptFileError(f"{path}, row {row}: 'positive' must be True/False or 1/0, got {value!r}")


def _number(value: str, column: str, row: int, path: Path) -> float:
    try:
        number = float(value)
    except ValueError:
        raise PromptFileError(f"{path}, row {row}: {column} must be a number, got {value!r}") from None
    if not np.isfinite(number):
        raise PromptFileError(f"{path}, row {row}: {column} must be finite, got {value!r}")
    return number


def _index(value: float, column: str, row: int, path: Path) -> int:
    if abs(value - round(value)) > 1e-6:
        raise PromptFileError(f"{path}, row {row}: {column} = {value:g} is not a whole frame index")
    return int(round(value))


@dataclass(frozen=True)
class Click:
    """One row of a Points CSV: object, frame, the indices on the ``free`` axes, (1, 2) (y, x), (1,) label."""

    obj_id: int
    frame: int
    free: dict[str, int]
    yx: np.ndarray
    label: np.ndarray


def read_clicks(
    path: str | Path,
    *,
    axes: Sequence[str] | None = None,
    frame_axis: str | None = None,
    position: Mapping[str, int] | None = None,
    free: Sequence[str] = (),
) -> tuple[list[Click], dict[str, int] | None]:
    """Every click of a napari Points CSV (see :func:`read_points_csv`), and the indices its points were checked to
    lie at (None for (frame, y, x) points); the columns of the ``free`` axes may hold any index (a 3D-over-time
    run's z), the others must equal ``position``. Raises :class:`PromptFileError`."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PromptFileError(f"{path} is not a readable CSV file: {exc}") from exc
    if not rows:
        raise PromptFileError(f"{path} is empty: no points, so no prompts")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in ("object_id", "positive") if c not in header]
    if missing:
        raise PromptFileError(
            f"{path}: missing feature column(s) {missing}; give the Points layer 'object_id' and 'positive' features"
        )
    coords = _coordinate_columns(header, path)
    frame_col, fixed = _frame_column(len(coords), path, axes, frame_axis, position or {}, free)
    full = axes is not None and len(axes) == len(coords)  # else the points are (frame, y, x)
    free_cols = {name: i for i, name in enumerate(axes or ()) if name in free} if full else {}
    col = {name: header.index(name) for name in (*coords, "object_id", "positive")}
    clicks: list[Click] = []
    for row_number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise PromptFileError(f"{path}, row {row_number}: {len(row)} values for {len(header)} columns")
        values = [_number(row[col[c]], c, row_number, path) for c in coords]
        for i, (name, expected) in fixed.items():
            if _index(values[i], coords[i], row_number, path) != expected:
                raise PromptFileError(
                    f"{path}, row {row_number}: the point lies at {name}={values[i]:g}, but the segmented plane is "
                    f"{name}={expected} (choose it with --position {name}=…)"
                )
        obj_id = _index(_number(row[col["object_id"]], "object_id", row_number, path), "object_id", row_number, path)
        if not 0 < obj_id <= MAX_OBJECT_ID:
            raise PromptFileError(
                f"{path}, row {row_number}: object_id {obj_id} is not a label value 1 … {MAX_OBJECT_ID}"
            )
        frame = _index(values[frame_col], coords[frame_col], row_number, path)
        at = {name: _index(values[i], coords[i], row_number, path) for name, i in free_cols.items()}
        clicks.append(Click(obj_id, frame, at, np.asarray([values[-2:]], np.float64),
                            np.asarray([_flag(row[col["positive"]], row_number, path)], np.int8)))
    return clicks, ({name: value for name, value in fixed.values()} if fixed else None)


def read_points_csv(
    path: str | Path,
    *,
    axes: Sequence[str] | None = None,
    frame_axis: str | None = None,
    position: Mapping[str, int] | None = None,
) -> PromptSet:
    """Click prompts from a napari Points CSV (see the module docstring); raises :class:`PromptFileError`.

    Points with 3 coordinates are (frame, y, x). With more, ``axes`` (the stack's label axes, e.g. ``("t", "z",
    "y", "x")``) and ``frame_axis`` say which column is the frame; every other column must equal ``position``
    (default 0), so a point on another plane is an error rather than a silent miss.
    """
    path = Path(path)
    found, plane = read_clicks(path, axes=axes, frame_axis=frame_axis, position=position)
    clicks: dict[int, list[FramePrompt]] = {}
    for click in found:
        clicks.setdefault(click.obj_id, []).append(FramePrompt(click.frame, click.yx, click.label))
    if not clicks:
        raise PromptFileError(f"{path} has no points, so no prompts")
    objects = tuple(
        ObjectPrompts(obj_id, None, merge_frame_prompts(found, f"{path}: object {obj_id}"))
        for obj_id, found in sorted(clicks.items())
    )
    return PromptSet(objects, frame_axis if plane else None, plane, None, str(path))
