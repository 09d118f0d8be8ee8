"""Prompt files: the prompts of a segmentation run, as written by the napari widget and read by the command line.

Two formats (full description with examples in ``docs/cli.md``):

- JSON (``.json``)::

      {"version": 1, "axis": "t", "position": {},
       "objects": [{"id": 1, "name": "cell A", "prompts": [
           {"frame": 3, "points": [[y, x], ...], "labels": [1, 0]},
           {"frame": 9, "box": [y0, x0, y1, x1]},
           {"frame": 12, "mask": "path/to/mask.tif"}]}]}

  ``frame`` indexes the propagation axis; coordinates are pixels of the frame, (y, x) as in napari. ``labels``
  defaults to all positive; a box may carry ``points``/``labels`` too; a mask path is relative to the JSON file
  (a 2D TIFF or ``.npy``, > 0 inside). ``version``, ``axis``, ``position`` and ``channel`` are optional and say
  which frames of the stack the prompts were made on.
- CSV (``.csv``): a napari Points layer saved by napari, with an ``object_id`` and a ``positive`` feature
  column. Coordinate columns are ``axis-0 … axis-(D-1)`` (napari's writer) or ``frame, y, x``.

No torch here: the widget and the command line share this module.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from napari_sam2.io.atomic_store import atomic_write_bytes

VERSION = 1
MAX_OBJECT_ID = 2**32 - 1
MASK_SUFFIXES = (".tif", ".tiff", ".npy")


class PromptFileError(ValueError):
    """A prompt file that cannot be read, or prompts that do not fit the stack; the message names the place."""


@dataclass(frozen=True, eq=False)
class FramePrompt:
    """The prompts of one object on one frame: clicks, a box (with optional clicks), or a mask.

    ``points``: (P, 2) float64 (y, x) pixels; ``labels``: (P,) int8, 1 positive / 0 negative; ``box``:
    (y0, x0, y1, x1) pixels; ``mask``: (H, W) bool. ``mask_path``: where the mask was read from (as written in
    the file), or None.
    """

    frame: int
    points: np.ndarray | None = field(default=None, repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = field(default=None, repr=False)
    mask_path: str | None = None

    @property
    def kind(self) -> str:
        """``"mask"``, ``"box"`` (possibly with clicks) or ``"points"``."""
        return "mask" if self.mask is not None else "box" if self.box is not None else "points"

    def canonical(self) -> dict[str, Any]:
        """A JSON-able description of the content (the mask as a hash), for fingerprints and equality."""
        out: dict[str, Any] = {"frame": self.frame}
        if self.points is not None and len(self.points):
            out["points"] = [[float(v) for v in p] for p in self.points]
            out["labels"] = [int(v) for v in self.labels]
        if self.box is not None:
            out["box"] = [float(v) for v in self.box]
        if self.mask is not None:
            packed = np.packbits(self.mask.astype(bool)).tobytes()
            out["mask"] = [list(self.mask.shape), hashlib.sha256(packed).hexdigest()]
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FramePrompt) and self.canonical() == other.canonical()

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class ObjectPrompts:
    """One object: label value ``id`` (1 … 2**32 - 1), an optional ``name``, its prompts by frame."""

    id: int
    name: str | None = None
    prompts: tuple[FramePrompt, ...] = ()


@dataclass(frozen=True)
class PromptSet:
    """The prompts of a run. ``axis``/``position``/``channel``: the stack's frames they were made on, if known."""

    objects: tuple[ObjectPrompts, ...]
    axis: str | int | None = None
    position: dict[str, int] | None = None
    channel: int | str | None = None
    source: str = "prompts"  # where the set came from, for messages

    @property
    def frames(self) -> list[int]:
        """Every prompted frame, sorted."""
        return sorted({p.frame for o in self.objects for p in o.prompts})

    def fingerprint(self) -> str:
        """SHA-256 of the prompts' content (ids, frames, coordinates, mask pixels); names are not part of it."""
        content = [[o.id, [p.canonical() for p in o.prompts]] for o in self.objects]
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def check_fits(self, num_frames: int, height: int, width: int, *, axis_name: str = "frame") -> None:
        """Raise :class:`PromptFileError` unless every prompt lies inside a stack of ``num_frames`` frames of
        ``height`` × ``width`` pixels (napari's half-pixel edge tolerance applies to points and boxes)."""
        if not self.objects:
            raise PromptFileError(f"{self.source}: no objects to segment (the prompt list is empty)")
        low, high_y, high_x = -0.5, height - 0.5, width - 0.5
        for obj in self.objects:
            if not obj.prompts:
                raise PromptFileError(f"{self.source}: object {obj.id} has no prompts")
            for p in obj.prompts:
                where = f"{self.source}: object {obj.id}, frame {p.frame}"
                if not 0 <= p.frame < num_frames:
                    raise PromptFileError(
                        f"{where}: the frame is outside the stack ({num_frames} frames along {axis_name!r}, "
                        f"0 … {num_frames - 1})"
                    )
                corners = [] if p.box is None else [p.box[:2], p.box[2:]]
                for what, yx in [("point", q) for q in (p.points if p.points is not None else [])] + [
                    ("box corner", c) for c in corners
                ]:
                    y, x = float(yx[0]), float(yx[1])
                    if not (low <= y <= high_y and low <= x <= high_x):
                        raise PromptFileError(
                            f"{where}: {what} (y={y:g}, x={x:g}) lies outside the frame of {height} × {width} "
                            "pixels (coordinates are (y, x) pixels)"
                        )
                if p.mask is not None and p.mask.shape != (height, width):
                    raise PromptFileError(
                        f"{where}: the mask {p.mask_path or ''} has shape {p.mask.shape}, frames are "
                        f"{(height, width)}"
                    )


# ----------------------------------------------------------------------------------------------- reading
def load_prompts(
    path: str | Path,
    *,
    axes: Sequence[str] | None = None,
    frame_axis: str | None = None,
    position: Mapping[str, int] | None = None,
) -> PromptSet:
    """Read a prompt file: JSON (``.json``) or a napari Points CSV (``.csv``).

    ``axes``, ``frame_axis`` and ``position`` (the label axes of the stack, e.g. ``("t", "z", "y", "x")``, the
    propagation axis and the indices on the other axes) are needed only for a CSV whose points have more than
    three coordinates: they say which column is the frame and check that every point lies on the segmented plane.
    Raises :class:`PromptFileError`.
    """
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"prompt file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PromptFileError(f"{path} is not a readable JSON prompt file: {exc}") from exc
        return prompts_from_dict(document, base_dir=path.parent, source=str(path))
    if suffix == ".csv":
        from napari_sam2.io.prompt_csv import read_points_csv

        return read_points_csv(path, axes=axes, frame_axis=frame_axis, position=position)
    raise PromptFileError(f"{path}: prompt files are .json or a napari Points layer saved as .csv")


def _integer(value: Any, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise PromptFileError(f"{where}: {what} must be an integer, got {value!r}")
    return int(value)


def _numbers(value: Any, shape: tuple[int, ...], what: str, where: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise PromptFileError(f"{where}: {what} must be numbers, got {value!r}") from None
    if array.ndim != len(shape) or any(s not in (-1, n) for s, n in zip(shape, array.shape, strict=True)):
        raise PromptFileError(f"{where}: {what} must be {'[[y, x], ...]' if len(shape) == 2 else shape}, got {value!r}")
    if not np.isfinite(array).all():
        raise PromptFileError(f"{where}: {what} must be finite numbers, got {value!r}")
    return array


def _labels(value: Any, count: int, where: str) -> np.ndarray:
    if value is None:
        return np.ones(count, np.int8)
    if not isinstance(value, list) or len(value) != count:
        raise PromptFileError(f"{where}: 'labels' must be a list of {count} values (1 positive, 0 negative)")
    bad = [v for v in value if not isinstance(v, (bool, int, float)) or v not in (0, 1)]
    if bad:
        raise PromptFileError(f"{where}: point labels are 1 (positive) or 0 (negative), got {bad[0]!r}")
    return np.asarray([int(v) for v in value], np.int8)


def read_mask(path: Path, where: str) -> np.ndarray:
    """A 2D mask prompt from a TIFF or ``.npy`` file, as bool (> 0 inside)."""
    if not path.is_file():
        raise PromptFileError(f"{where}: mask file {path} does not exist")
    if path.suffix.lower() not in MASK_SUFFIXES:
        raise PromptFileError(f"{where}: mask {path} must be a 2D TIFF or .npy file")
    try:
        array = np.load(path, allow_pickle=False) if path.suffix.lower() == ".npy" else tifffile.imread(path)
    except Exception as exc:  # tifffile and numpy raise many kinds for corrupt files
        raise PromptFileError(f"{where}: cannot read mask {path}: {exc}") from exc
    array = np.squeeze(np.asarray(array))
    if array.ndim != 2:
        raise PromptFileError(f"{where}: mask {path} must be 2D (one frame), got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise PromptFileError(f"{where}: mask {path} must hold numbers, got {array.dtype}")
    mask = np.nan_to_num(array) > 0
    if not mask.any():
        raise PromptFileError(f"{where}: mask {path} is empty (no pixel > 0)")
    return mask


def _frame_prompt(entry: Any, base_dir: Path, where: str) -> FramePrompt:
    if not isinstance(entry, dict):
        raise PromptFileError(f"{where}: a prompt is an object like {{\"frame\": 3, \"points\": [[y, x]]}}")
    unknown = set(entry) - {"frame", "points", "labels", "box", "mask"}
    if unknown:
        raise PromptFileError(f"{where}: unknown keys {sorted(unknown)} (expected frame, points, labels, box, mask)")
    if "frame" not in entry:
        raise PromptFileError(f"{where}: the prompt has no 'frame'")
    frame = _integer(entry["frame"], "'frame'", where)
    where = f"{where} (frame {frame})"
    points = labels = box = mask = None
    if entry.get("points") is not None:
        points = _numbers(entry["points"], (-1, 2), "'points'", where)
        if not len(points):
            raise PromptFileError(f"{where}: 'points' is empty")
        labels = _labels(entry.get("labels"), len(points), where)
    elif entry.get("labels") is not None:
        raise PromptFileError(f"{where}: 'labels' without 'points'")
    if entry.get("box") is not None:
        corners = _numbers(entry["box"], (4,), "'box' [y0, x0, y1, x1]", where)
        if corners[2] == corners[0] or corners[3] == corners[1]:
            raise PromptFileError(f"{where}: the box {corners.tolist()} has no area")
        box = tuple(float(v) for v in corners)
    mask_path = entry.get("mask")
    if mask_path is not None:
        if not isinstance(mask_path, str) or not mask_path:
            raise PromptFileError(f"{where}: 'mask' must be the path of a mask file, got {mask_path!r}")
        if points is not None or box is not None:
            raise PromptFileError(f"{where}: a mask prompt cannot be combined with points or a box on one frame")
        mask = read_mask(base_dir / mask_path, where)
    if points is None and box is None and mask is None:
        raise PromptFileError(f"{where}: the prompt has no points, box or mask")
    return FramePrompt(frame, points, labels, box, mask, mask_path)


def merge_frame_prompts(prompts: Iterable[FramePrompt], where: str) -> tuple[FramePrompt, ...]:
    """One prompt per frame, sorted by frame: clicks on one frame are joined, a box keeps them."""
    by_frame: dict[int, list[FramePrompt]] = {}
    for p in prompts:
        by_frame.setdefault(p.frame, []).append(p)
    merged = []
    for frame in sorted(by_frame):
        group = by_frame[frame]
        if len(group) == 1:
            merged.append(group[0])
            continue
        if any(p.mask is not None for p in group):
            raise PromptFileError(f"{where}, frame {frame}: a mask prompt cannot be combined with other prompts")
        boxes = [p.box for p in group if p.box is not None]
        if len(boxes) > 1:
            raise PromptFileError(f"{where}, frame {frame}: more than one box for one object on one frame")
        clicks = [p for p in group if p.points is not None]
        points = np.concatenate([p.points for p in clicks]) if clicks else None
        labels = np.concatenate([p.labels for p in clicks]) if clicks else None
        merged.append(FramePrompt(frame, points, labels, boxes[0] if boxes else None))
    return tuple(merged)


def prompts_from_dict(document: Any, *, base_dir: str | Path = ".", source: str = "prompts") -> PromptSet:
    """A :class:`PromptSet` from the JSON document (mask paths relative to ``base_dir``)."""
    if not isinstance(document, dict) or not isinstance(document.get("objects"), list):
        raise PromptFileError(f"{source}: expected a JSON object with an \"objects\" list")
    version = document.get("version", VERSION)
    if not isinstance(version, int) or version > VERSION:
        raise PromptFileError(f"{source}: prompt file version {version!r} is newer than this napari-sam2 reads")
    base_dir = Path(base_dir)
    objects, seen = [], set()
    for i, entry in enumerate(document["objects"]):
        if not isinstance(entry, dict) or "id" not in entry:
            raise PromptFileError(f"{source}: objects[{i}] must be an object with an \"id\"")
        obj_id = _integer(entry["id"], "an object id", f"{source}: objects[{i}]")
        where = f"{source}: object {obj_id}"
        if not 0 < obj_id <= MAX_OBJECT_ID:
            raise PromptFileError(f"{where}: object ids are label values from 1 to {MAX_OBJECT_ID}")
        if obj_id in seen:
            raise PromptFileError(f"{where}: the id is used by two objects")
        seen.add(obj_id)
        name = entry.get("name")
        if name is not None and not isinstance(name, str):
            raise PromptFileError(f"{where}: 'name' must be text, got {name!r}")
        raw = entry.get("prompts", [])
        if not isinstance(raw, list):
            raise PromptFileError(f"{where}: 'prompts' must be a list")
        prompts = [_frame_prompt(p, base_dir, f"{where}, prompts[{k}]") for k, p in enumerate(raw)]
        objects.append(ObjectPrompts(obj_id, name, merge_frame_prompts(prompts, where)))
    position = document.get("position")
    if position is not None and (
        not isinstance(position, dict) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                   for v in position.values())
    ):
        raise PromptFileError(f"{source}: 'position' must map axis names to indices, got {position!r}")
    axis = document.get("axis")
    if axis is not None and (isinstance(axis, bool) or not isinstance(axis, (str, int))):
        raise PromptFileError(f"{source}: 'axis' must be an axis name or index, got {axis!r}")
    channel = document.get("channel")
    if channel is not None and (isinstance(channel, bool) or not isinstance(channel, (str, int))):
        raise PromptFileError(f"{source}: 'channel' must be an index or \"rgb\", got {channel!r}")
    return PromptSet(tuple(sorted(objects, key=lambda o: o.id)), axis, position, channel, source)


def prompt_set_from_records(
    records: Iterable[Any],
    *,
    names: Mapping[int, str] | None = None,
    axis: str | None = None,
    position: Mapping[str, int] | None = None,
    channel: int | str | None = None,
) -> PromptSet:
    """A :class:`PromptSet` from label-store prompt records (``napari_sam2.io.Prompt``, e.g. ``view.prompts()``):
    records of one object on one frame are joined; ``names`` gives object names (e.g. from ``store.objects``)."""
    by_object: dict[int, list[FramePrompt]] = {}
    for r in records:
        points = np.asarray(r.points, np.float64).reshape(-1, 2)
        has_points = len(points) > 0
        prompt = FramePrompt(
            int(r.frame),
            points if has_points else None,
            np.asarray(r.labels, np.int8).reshape(-1) if has_points else None,
            tuple(float(v) for v in r.box) if r.box is not None else None,
            np.asarray(r.mask, bool) if r.mask is not None else None,
        )
        by_object.setdefault(int(r.obj_id), []).append(prompt)
    objects = tuple(
        ObjectPrompts(obj_id, (names or {}).get(obj_id), merge_frame_prompts(found, f"object {obj_id}"))
        for obj_id, found in sorted(by_object.items())
    )
    return PromptSet(objects, axis, dict(position) if position is not None else None, channel)


# ----------------------------------------------------------------------------------------------- writing
def prompts_to_dict(prompts: PromptSet, mask_paths: Mapping[tuple[int, int], str] | None = None) -> dict[str, Any]:
    """The JSON document of ``prompts``; ``mask_paths[(obj_id, frame)]`` names each mask prompt's file
    (default: the ``mask_path`` it was read from)."""
    objects = []
    for obj in prompts.objects:
        entries = []
        for p in obj.prompts:
            entry: dict[str, Any] = {"frame": int(p.frame)}
            if p.points is not None and len(p.points):
                entry["points"] = [[float(v) for v in q] for q in p.points]
                entry["labels"] = [int(v) for v in p.labels]
            if p.box is not None:
                entry["box"] = [float(v) for v in p.box]
            if p.mask is not None:
                path = (mask_paths or {}).get((obj.id, p.frame), p.mask_path)
                if path is None:
                    raise PromptFileError(f"object {obj.id}, frame {p.frame}: the mask prompt has no file name")
                entry["mask"] = str(path)
            entries.append(entry)
        objects.append({"id": int(obj.id), **({"name": obj.name} if obj.name is not None else {}),
                        "prompts": entries})
    document: dict[str, Any] = {"version": VERSION}
    for key in ("axis", "position", "channel"):
        value = getattr(prompts, key)
        if value is not None:
            document[key] = dict(value) if key == "position" else value
    document["objects"] = objects
    return document


def save_prompts(path: str | Path, prompts: PromptSet) -> Path:
    """Write ``prompts`` as a JSON prompt file at ``path``; returns ``path``.

    Mask prompts are written as TIFF files in ``<name>.masks/`` next to it (``object<id>_frame<frame>.tif``) and
    referenced relative to the JSON file. Every file is written atomically (a crash leaves the old one).
    """
    path = Path(path)
    if path.suffix.lower() != ".json":
        raise PromptFileError(f"{path}: prompt files are written as .json")
    mask_dir = path.with_name(f"{path.stem}.masks")
    mask_paths = {}
    for obj in prompts.objects:
        for p in obj.prompts:
            if p.mask is None:
                continue
            name = f"object{obj.id}_frame{p.frame}.tif"
            buffer = io.BytesIO()
            tifffile.imwrite(buffer, p.mask.astype(np.uint8))
            atomic_write_bytes(mask_dir / name, buffer.getvalue())
            mask_paths[(obj.id, p.frame)] = f"{mask_dir.name}/{name}"
    text = json.dumps(prompts_to_dict(prompts, mask_paths), indent=2)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))
    return path
