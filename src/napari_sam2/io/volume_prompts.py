"""Prompts of a 3D-over-time run: each prompt sits on one (t, z) plane.

The prompt file formats of ``prompt_file`` (see ``docs/cli.md``), with the plane's z:

- JSON: each prompt has ``"frame"`` (the index along the frame axis, t) and ``"z"`` (the index along the volume
  axis): ``{"frame": 0, "z": 14, "points": [[y, x]]}``; everything else as for a 2D run.
- CSV: a napari Points layer saved over the T,Z,Y,X image: its columns ``axis-0 … axis-3`` are t, z, y, x (in the
  stack's label axes order), one click per row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from napari_sam2.io.prompt_file import (
    FramePrompt,
    ObjectPrompts,
    PromptFileError,
    PromptSet,
    merge_frame_prompts,
    prompts_from_dict,
)


@dataclass(frozen=True)
class VolumePrompt:
    """One object's prompt on the plane (t, z); ``prompt.frame`` is t."""

    obj_id: int
    z: int
    prompt: FramePrompt

    @property
    def t(self) -> int:
        return self.prompt.frame


@dataclass(frozen=True)
class VolumePromptSet:
    prompts: tuple[VolumePrompt, ...]
    names: dict[int, str | None]
    source: str

    @property
    def obj_ids(self) -> list[int]:
        return sorted(self.names)

    def fingerprint(self) -> str:
        content = [[p.obj_id, p.z, p.prompt.canonical()] for p in self.prompts]
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def check_fits(self, shape: Sequence[int], frame_axis: str, volume_axis: str) -> None:
        """Raise :class:`PromptFileError` unless every prompt lies inside a stack (T, Z, H, W)."""
        times, depth, height, width = shape
        if not self.prompts:
            raise PromptFileError(f"{self.source}: no objects to segment (the prompt list is empty)")
        for p in self.prompts:
            if not 0 <= p.z < depth:
                raise PromptFileError(f"{self.source}: object {p.obj_id}, {frame_axis}={p.t}: {volume_axis}={p.z} is "
                                      f"outside the stack ({depth} planes along {volume_axis!r}, 0 … {depth - 1})")
        for obj_id in self.obj_ids:
            mine = tuple(p.prompt for p in self.prompts if p.obj_id == obj_id)
            PromptSet((ObjectPrompts(obj_id, None, mine),), source=self.source).check_fits(
                times, height, width, axis_name=frame_axis)


def load_volume_prompts(path: str | Path, *, axes: Sequence[str], frame_axis: str, volume_axis: str,
                        position: Mapping[str, int] | None = None) -> VolumePromptSet:
    """Read a JSON or napari Points CSV prompt file of a 3D-over-time run; raises :class:`PromptFileError`."""
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"prompt file {path} does not exist")
    if path.suffix.lower() == ".json":
        return _from_json(path)
    if path.suffix.lower() == ".csv":
        return _from_csv(path, list(axes), frame_axis, volume_axis, dict(position or {}))
    raise PromptFileError(f"{path}: prompt files are .json or a napari Points layer saved as .csv")


def _from_json(path: Path) -> VolumePromptSet:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PromptFileError(f"{path} is not a readable JSON prompt file: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("objects"), list):
        raise PromptFileError(f"{path}: expected a JSON object with an \"objects\" list")
    by_z: dict[int, dict] = {}
    for i, obj in enumerate(document["objects"]):
        entries = obj.get("prompts", []) if isinstance(obj, dict) else []
        for k, entry in enumerate(entries if isinstance(entries, list) else []):
            z = entry.get("z") if isinstance(entry, dict) else None
            if isinstance(z, bool) or not isinstance(z, int):
                raise PromptFileError(f"{path}: objects[{i}], prompts[{k}]: a prompt of a 3D-over-time run needs "
                                      f"\"z\", the plane's index along the volume axis (got {z!r})")
            objects = by_z.setdefault(z, {"objects": [dict(o, prompts=[]) for o in document["objects"]]})["objects"]
            objects[i]["prompts"].append({key: v for key, v in entry.items() if key != "z"})
    plain = prompts_from_dict(dict(document, objects=[dict(o, prompts=[]) for o in document["objects"]]),
                              base_dir=path.parent, source=str(path))  # ids and names checked once
    prompts = []
    for z, doc in sorted(by_z.items()):
        for obj in prompts_from_dict(doc, base_dir=path.parent, source=str(path)).objects:
            prompts += [VolumePrompt(obj.id, z, p) for p in obj.prompts]
    return VolumePromptSet(tuple(sorted(prompts, key=lambda p: (p.t, p.obj_id, p.z))),
                           {o.id: o.name for o in plain.objects}, str(path))


def _from_csv(path: Path, axes: list[str], frame_axis: str, volume_axis: str,
              position: dict[str, int]) -> VolumePromptSet:
    """The clicks of a Points CSV over the T,Z,Y,X image: each row's plane from its t and z columns."""
    from napari_sam2.io.prompt_csv import read_clicks

    clicks, _ = read_clicks(path, axes=axes, frame_axis=frame_axis, position=position, free=(volume_axis,))
    if not clicks or volume_axis not in clicks[0].free:
        raise PromptFileError(f"{path}: its points have no {volume_axis!r} coordinate; save the Points layer made "
                              f"over the {''.join(axes)} image (columns axis-0 … axis-{len(axes) - 1})")
    grouped: dict[tuple[int, int], list[FramePrompt]] = {}
    for c in clicks:
        grouped.setdefault((c.obj_id, c.free[volume_axis]), []).append(FramePrompt(c.frame, c.yx, c.label))
    prompts = [VolumePrompt(obj_id, z, p) for (obj_id, z), found in grouped.items()
               for p in merge_frame_prompts(found, f"{path}: object {obj_id}")]
    return VolumePromptSet(tuple(sorted(prompts, key=lambda p: (p.t, p.obj_id, p.z))),
                           {c.obj_id: None for c in clicks}, str(path))
