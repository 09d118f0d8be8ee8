"""The progress of a ``segment`` run, kept inside its label store so that re-running the command continues it.

Layout, a valid zarr v3 hierarchy next to the store's ``labels`` and ``session``::

    runs/zarr.json                 group
    runs/<view>/zarr.json          group; attributes["napari_sam2_run"] = the record below
    runs/<view>/state_<n>/         uint8 array: the engine's session state (``Session.save_state``) for resuming
    runs/<view>/seed_<n>/          uint8 array: the state the backward pass of a "both" run starts from

``<view>`` names the frames the run segments (``t``, or ``z_t3`` for frames along z at t=3), so the planes of a
T,Z,Y,X stack can be segmented by separate runs into one store. The record holds the run's inputs, its passes,
the pass in progress, the frame it continues from and the state array to load. Each state is written as a new
array before the record that names it (both crash-safe), and the previous one is removed after: a kill at any
moment leaves a record naming a complete state.
"""

from __future__ import annotations

import contextlib
import io
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from napari_sam2.io.atomic_store import AtomicLocalStore, atomic_write_json, read_json, remove_tree
from napari_sam2.io.errors import write_error

RUNS = "runs"
RECORD_KEY = "napari_sam2_run"
VERSION = 1


def view_key(axis: str, position: dict[str, int]) -> str:
    """Folder name of the run over frames along ``axis`` at ``position``: ``t``, ``z_t3``."""
    return "_".join([axis] + [f"{name}{value}" for name, value in sorted(position.items())])


def _group_doc(attributes: dict[str, Any]) -> dict[str, Any]:
    return {"zarr_format": 3, "node_type": "group", "attributes": attributes}


class RunRecord:
    """The record of one run (see the module docstring); ``data`` is its JSON content."""

    def __init__(self, store_path: Path, key: str, data: dict[str, Any]) -> None:
        self.store_path = Path(store_path)
        self.key = key
        self.folder = self.store_path / RUNS / key
        self.data = data

    @classmethod
    def load(cls, store_path: Path, key: str) -> RunRecord | None:
        """The record of run ``key`` in the store at ``store_path``, or None if there is none."""
        doc = read_json(Path(store_path) / RUNS / key / "zarr.json")
        if not doc or RECORD_KEY not in (doc.get("attributes") or {}):
            return None
        return cls(store_path, key, dict(doc["attributes"][RECORD_KEY]))

    @classmethod
    def create(cls, store_path: Path, key: str, inputs: dict[str, Any], **fields: Any) -> RunRecord:
        record = cls(store_path, key, {"version": VERSION, "inputs": inputs, "complete": False, "pass": 0,
                                       "next_frame": None, "state": None, "seed": None, "frames_written": 0,
                                       "exports": [], **fields})
        if read_json(record.store_path / RUNS / "zarr.json") is None:
            try:
                atomic_write_json(record.store_path / RUNS / "zarr.json", _group_doc({}))
            except OSError as exc:
                raise write_error("record the run in", record.store_path / RUNS, exc) from exc
        record.save()
        return record

    def save(self) -> None:
        """Write the record (atomically); a failed write raises ``StoreWriteError`` and leaves the previous one."""
        try:
            atomic_write_json(self.folder / "zarr.json", _group_doc({RECORD_KEY: self.data}))
        except OSError as exc:
            raise write_error("save the run's progress in", self.folder, exc) from exc

    def differences(self, inputs: dict[str, Any]) -> list[str]:
        """Names of the inputs that differ from the recorded ones."""
        old = self.data.get("inputs", {})
        return [k for k in sorted(set(old) | set(inputs)) if old.get(k) != inputs.get(k)]

    # ------------------------------------------------------------------------------------------ states
    def _next_name(self, prefix: str) -> str:
        taken = [p.name for p in self.folder.iterdir() if p.name.startswith(prefix)] if self.folder.is_dir() else []
        numbers = [int(n[len(prefix):]) for n in taken if n[len(prefix):].isdigit()]
        return f"{prefix}{max(numbers, default=-1) + 1:06d}"

    def write_blob(self, prefix: str, data: bytes) -> dict[str, Any]:
        """Store ``data`` as a new array ``<prefix><n>``; returns its reference ``{"name", "crc", "size"}``."""
        name = self._next_name(prefix)
        array = np.frombuffer(data, dtype=np.uint8)
        try:
            zarr.create_array(store=AtomicLocalStore(self.store_path), name=f"{RUNS}/{self.key}/{name}", data=array,
                              chunks=(max(1, array.size),), compressors=None, overwrite=True)
        except OSError as exc:
            with contextlib.suppress(OSError):  # a part written: the record never names it
                remove_tree(self.folder / name)
            raise write_error("save the resume state in", self.folder, exc) from exc
        return {"name": name, "crc": zlib.crc32(data), "size": len(data)}

    def read_blob(self, ref: dict[str, Any]) -> io.BytesIO:
        """The bytes of a stored array, checked against its reference."""
        try:
            array = zarr.open_array(store=AtomicLocalStore(self.store_path), path=f"{RUNS}/{self.key}/{ref['name']}",
                                    mode="r")
            data = np.asarray(array[:], dtype=np.uint8).tobytes()
        except Exception as exc:  # a missing or damaged array: zarr raises several kinds
            raise ValueError(f"the saved run state {self.folder / ref['name']} cannot be read ({exc})") from exc
        if len(data) != ref["size"] or zlib.crc32(data) != ref["crc"]:
            raise ValueError(f"the saved run state {self.folder / ref['name']} is damaged (checksum mismatch)")
        return io.BytesIO(data)

    def drop_blob(self, ref: dict[str, Any] | None) -> None:
        if ref:
            remove_tree(self.folder / ref["name"])

    def remove_unreferenced(self) -> None:
        """Delete state arrays that the record no longer names (left by a kill between writing and removing)."""
        keep = {ref["name"] for ref in (self.data.get("state"), self.data.get("seed")) if ref}
        if self.folder.is_dir():
            for child in self.folder.iterdir():
                if child.is_dir() and child.name.startswith(("state_", "seed_")) and child.name not in keep:
                    remove_tree(child)

    def delete(self) -> None:
        """Remove the whole record and its states."""
        remove_tree(self.folder)


def existing_record(out: Path, source: Any, key: str) -> RunRecord | None:
    """Check an existing LABELS against the stack whose frame source is ``source`` (read-only); its record under
    ``key`` (this run's frames), if any. A store killed while being created is none: this run completes it."""
    from napari_sam2.cli.errors import CliError
    from napari_sam2.io import LabelStore, UnfinishedStoreError

    if out.exists() and not out.is_dir():
        raise CliError(f"{out} is a file; LABELS must be a label store folder (e.g. labels.zarr)")
    if not out.is_dir() or not any(out.iterdir()):
        return None
    try:
        store = LabelStore.open(out, read_only=True)
    except UnfinishedStoreError:
        return None
    store.view_for(source)  # raises LabelStoreError when the store belongs to another stack
    return RunRecord.load(out, key)


def restore_state(target: Any, record: RunRecord, errors: tuple[type[Exception], ...]) -> None:
    """Load the run's saved engine state into ``target`` (a session or tracker with ``load_state`` and ``close``);
    a state it refuses (one of ``errors``) closes it and stops the run in one line."""
    from napari_sam2.cli.errors import CliError

    try:
        target.load_state(record.read_blob(record.data["state"]))
    except errors as exc:
        target.close()
        raise CliError(f"{exc}; add --restart to segment again from the prompts") from None
