"""The session kept next to the labels: objects, prompts and per-frame provenance, each record durable on return.

Every record is a small zarr v3 group document (``zarr.json`` with the record in ``attributes``), written atomically
(temporary file, fsync, ``os.replace``), so plain zarr sees a valid hierarchy and a crash never leaves half a record::

    session/objects/<id>/zarr.json        {"id", "name", "colour", "status", "parent", "removed"}
    session/prompts/<seq>/zarr.json       {"seq", "obj_id", "axis", "frame", "coords", "points", "labels", "box", …}
    session/prompts/<seq>/mask            (H, W) bool zarr array, written before the document that commits it
    session/frames/<i_j…>/zarr.json       {"coords", "objects", "pending": {"crc", "objects"}}

A frame's provenance and its label chunk are two files. The record is written first and keeps the previous
provenance in ``objects`` and the new one in ``pending`` with the CRC-32 of the new frame; the chunk is written
second. On reading, ``pending`` applies only if the stored frame has that CRC — so after a crash between the two
writes, provenance always describes the pixels actually stored.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import Store

from napari_sam2.io.atomic_store import atomic_write_json, read_json, remove_tree

SESSION = "session"
_SEQ_WIDTH = 9


OBJECT_STATUSES = ("automatic", "verified", "rejected", "corrected")
"""A masklet's review status: found automatically, checked and accepted, checked and rejected, or fixed by hand."""


@dataclass(frozen=True)
class ObjectInfo:
    """One segmented object: label value ``id``, display ``name``, ``colour`` (``"#rrggbb"``), review ``status``
    (one of :data:`OBJECT_STATUSES`, or None where none was recorded) and lineage ``parent`` (the id of the object it
    divided from, or None)."""

    id: int
    name: str
    colour: str
    status: str | None = None
    parent: int | None = None


@dataclass(frozen=True)
class Prompt:
    """A prompt given for object ``obj_id`` on one 2D frame.

    ``coords``: the frame's index on every non-spatial axis of the label array (e.g. ``{"t": 3, "z": 12}``);
    ``axis``/``frame``: the axis it was given along and the index on it (a frame view along another axis reports
    its own index). ``points``: (N, 2) float64 pixel coordinates (y, x); ``labels``: (N,) int8, 1 positive,
    0 negative; ``box``: (y0, x0, y1, x1) or None; ``mask``: (H, W) bool or None.
    """

    seq: int
    obj_id: int
    axis: str
    frame: int
    coords: dict[str, int]
    points: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = field(default=None, repr=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Prompt):
            return NotImplemented
        same_mask = (self.mask is None and other.mask is None) or (
            self.mask is not None and other.mask is not None and np.array_equal(self.mask, other.mask)
        )
        return (
            (self.seq, self.obj_id, self.axis, self.frame, self.coords, self.box)
            == (other.seq, other.obj_id, other.axis, other.frame, other.coords, other.box)
            and np.array_equal(self.points, other.points)
            and np.array_equal(self.labels, other.labels)
            and same_mask
        )

    __hash__ = None  # type: ignore[assignment]


def frame_crc(labels: np.ndarray) -> int:
    """CRC-32 of a label frame's little-endian uint32 bytes."""
    return zlib.crc32(np.ascontiguousarray(labels, dtype="<u4").tobytes())


def resolve_provenance(record: Mapping[str, Any] | None, crc: int) -> dict[int, str]:
    """Provenance of a stored frame with CRC ``crc`` from its record (see the module docstring)."""
    if not record:
        return {}
    pending = record.get("pending")
    chosen = pending["objects"] if pending and pending.get("crc") == crc else record.get("objects", {})
    return {int(k): str(v) for k, v in chosen.items()}


def _group_doc(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {"zarr_format": 3, "node_type": "group", "attributes": dict(attributes)}


class SessionRecords:
    """Reads and writes the session records under ``<store>/session`` (see the module docstring)."""

    def __init__(self, root: Path, zarr_store: Store) -> None:
        self.root = Path(root)
        self.base = self.root / SESSION
        self._zarr_store = zarr_store

    def initialise(self) -> None:
        """Create the (empty) session groups of a new store."""
        for rel in ("", "objects", "prompts", "frames"):
            atomic_write_json(self.base / rel / "zarr.json", _group_doc({}))

    def _write(self, rel: str, attributes: Mapping[str, Any]) -> None:
        atomic_write_json(self.base / rel / "zarr.json", _group_doc(attributes))

    def _read(self, rel: str) -> dict[str, Any] | None:
        doc = read_json(self.base / rel / "zarr.json")
        return None if doc is None else dict(doc.get("attributes") or {})

    def _children(self, rel: str) -> list[str]:
        folder = self.base / rel
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    # ----------------------------------------------------------------- objects
    def load_objects(self) -> tuple[dict[int, ObjectInfo], list[int]]:
        """``(objects, removed)``: live objects by id, and ids whose removal was started but not finished."""
        objects, removed = {}, []
        for name in self._children("objects"):
            doc = self._read(f"objects/{name}")
            if not doc or "id" not in doc:
                continue
            if doc.get("removed"):
                removed.append(int(doc["id"]))
            else:
                status = doc.get("status")  # stores written before statuses (or parents) existed have none
                parent = doc.get("parent")
                objects[int(doc["id"])] = ObjectInfo(
                    int(doc["id"]), str(doc["name"]), str(doc["colour"]), status if status in OBJECT_STATUSES else None,
                    int(parent) if isinstance(parent, int) and not isinstance(parent, bool) else None,
                )
        return objects, removed

    def save_object(self, info: ObjectInfo, *, removed: bool = False) -> None:
        self._write(
            f"objects/{info.id}",
            {"id": info.id, "name": info.name, "colour": info.colour, "status": info.status, "parent": info.parent,
             "removed": removed},
        )

    def delete_object(self, obj_id: int) -> None:
        remove_tree(self.base / "objects" / str(int(obj_id)))

    # ----------------------------------------------------------------- prompts
    def load_prompts(self) -> tuple[list[Prompt], list[str]]:
        """``(prompts, uncommitted)``: committed prompts in order, and folders of prompts never committed."""
        prompts, uncommitted = [], []
        for name in self._children("prompts"):
            doc = self._read(f"prompts/{name}")
            if not doc or "obj_id" not in doc:
                uncommitted.append(name)
                continue
            mask = None
            if doc.get("has_mask"):
                mask = np.asarray(zarr.open_array(store=self._zarr_store, path=f"{SESSION}/prompts/{name}/mask")[...])
            prompts.append(
                Prompt(
                    seq=int(doc["seq"]),
                    obj_id=int(doc["obj_id"]),
                    axis=str(doc["axis"]),
                    frame=int(doc["frame"]),
                    coords={str(k): int(v) for k, v in doc["coords"].items()},
                    points=np.asarray(doc["points"], dtype=np.float64).reshape(-1, 2),
                    labels=np.asarray(doc["labels"], dtype=np.int8).reshape(-1),
                    box=tuple(float(v) for v in doc["box"]) if doc.get("box") is not None else None,
                    mask=mask,
                )
            )
        prompts.sort(key=lambda p: p.seq)
        return prompts, uncommitted

    def next_seq(self) -> int:
        names = [n for n in self._children("prompts") if re.fullmatch(r"\d+", n)]
        return max((int(n) for n in names), default=-1) + 1

    def save_prompt(self, prompt: Prompt) -> None:
        """Write the mask array (if any), then the document that commits the prompt."""
        name = f"{prompt.seq:0{_SEQ_WIDTH}d}"
        if prompt.mask is not None:
            zarr.create_array(
                store=self._zarr_store,
                name=f"{SESSION}/prompts/{name}/mask",
                data=np.ascontiguousarray(prompt.mask, dtype=bool),
                chunks=prompt.mask.shape,
                overwrite=True,
            )
        self._write(
            f"prompts/{name}",
            {
                "seq": prompt.seq,
                "obj_id": prompt.obj_id,
                "axis": prompt.axis,
                "frame": prompt.frame,
                "coords": prompt.coords,
                "points": prompt.points.tolist(),
                "labels": prompt.labels.tolist(),
                "box": list(prompt.box) if prompt.box is not None else None,
                "has_mask": prompt.mask is not None,
            },
        )

    def delete_prompt(self, seq_or_name: int | str) -> None:
        """Remove a prompt: its document first (uncommitting it), then its folder."""
        name = f"{seq_or_name:0{_SEQ_WIDTH}d}" if isinstance(seq_or_name, int) else seq_or_name
        folder = self.base / "prompts" / name
        remove_tree(folder / "zarr.json")
        remove_tree(folder)

    # ----------------------------------------------------------------- frame provenance
    @staticmethod
    def frame_key(coords: tuple[int, ...]) -> str:
        return "_".join(str(int(c)) for c in coords)

    def frame_record(self, coords: tuple[int, ...]) -> dict[str, Any] | None:
        return self._read(f"frames/{self.frame_key(coords)}")

    def save_frame_record(self, coords: tuple[int, ...], record: Mapping[str, Any]) -> None:
        self._write(f"frames/{self.frame_key(coords)}", {"coords": [int(c) for c in coords], **record})

    def frame_records(self) -> list[tuple[tuple[int, ...], dict[str, Any]]]:
        """Every frame record as ``(coords, record)``."""
        out = []
        for name in self._children("frames"):
            record = self._read(f"frames/{name}")
            if record and "coords" in record:
                out.append((tuple(int(c) for c in record["coords"]), record))
        return out
