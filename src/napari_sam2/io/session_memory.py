"""The tracking memory of a napari session, kept in its label store so that a reopened session continues exactly
where the live one was: the bytes of the engine's saved state (``Session.save_state``) and what they belong to.
No torch here: states are opaque bytes.

Layout, a valid zarr v3 hierarchy inside the store's ``session`` group::

    session/memory/zarr.json             group
    session/memory/<view>/zarr.json      group; attributes["napari_sam2_memory"] = {"state": {"name", "crc", "size"},
                                         …what the state belongs to (model, image, prompts)}
    session/memory/<view>/state_<n>/     uint8 array: the state's bytes

``<view>`` names the frames the session tracks (``t``, or ``z_t3`` for frames along z at t=3). A state is written as a
new array, then the record that names it, then older arrays are removed: a kill at any moment leaves the record
naming a complete state (the new or the previous one).
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from napari_sam2.io.atomic_store import AtomicLocalStore, atomic_write_json, read_json, remove_tree
from napari_sam2.io.errors import write_error
from napari_sam2.io.session_records import SESSION

MEMORY = "memory"
RECORD_KEY = "napari_sam2_memory"
_PREFIX = "state_"


def memory_view_key(axis: str, position: Mapping[str, int]) -> str:
    """Folder name of the memory of frames along ``axis`` at ``position``: ``t``, ``z_t3``."""
    return "_".join([axis] + [f"{name}{value}" for name, value in sorted(position.items())])


def _group_doc(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {"zarr_format": 3, "node_type": "group", "attributes": dict(attributes)}


class SavedMemory:
    """The saved state of one view of the label store at ``store_path`` (see the module docstring)."""

    def __init__(self, store_path: Path | str, view: str) -> None:
        self.store_path = Path(store_path)
        self.rel = f"{SESSION}/{MEMORY}/{view}"
        self.folder = self.store_path / self.rel

    def about(self) -> dict[str, Any] | None:
        """What the saved state belongs to (as given to :meth:`write`), or None when there is none."""
        doc = read_json(self.folder / "zarr.json")
        record = (doc or {}).get("attributes", {}).get(RECORD_KEY)
        return dict(record) if record and record.get("state") else None

    def read(self) -> bytes:
        """The saved state's bytes, checked against the record; ValueError if there is none or it is damaged."""
        about = self.about()
        if about is None:
            raise ValueError(f"no saved tracking memory in {self.folder}")
        ref = about["state"]
        try:
            array = zarr.open_array(store=AtomicLocalStore(self.store_path), path=f"{self.rel}/{ref['name']}", mode="r")
            data = np.asarray(array[:], dtype=np.uint8).tobytes()
        except Exception as exc:  # a missing or damaged array: zarr raises several kinds
            raise ValueError(f"the saved tracking memory {self.folder / ref['name']} cannot be read ({exc})") from exc
        if len(data) != ref["size"] or zlib.crc32(data) != ref["crc"]:
            raise ValueError(f"the saved tracking memory {self.folder / ref['name']} is damaged (checksum mismatch)")
        return data

    def write(self, data: bytes, about: Mapping[str, Any]) -> None:
        """Store ``data`` as the view's state, described by ``about`` (JSON values); durable on return.

        Raises ``StoreWriteError`` (full disk, read-only folder…); the previous state is then intact."""
        name = self._next_name()
        array = np.frombuffer(data, dtype=np.uint8)
        try:
            for rel in (SESSION, f"{SESSION}/{MEMORY}"):
                if read_json(self.store_path / rel / "zarr.json") is None:
                    atomic_write_json(self.store_path / rel / "zarr.json", _group_doc({}))
            zarr.create_array(store=AtomicLocalStore(self.store_path), name=f"{self.rel}/{name}", data=array,
                              chunks=(max(1, array.size),), compressors=None, overwrite=True)
            ref = {"name": name, "crc": zlib.crc32(data), "size": len(data)}
            atomic_write_json(self.folder / "zarr.json", _group_doc({RECORD_KEY: {**about, "state": ref}}))
        except OSError as exc:
            with contextlib.suppress(OSError):
                remove_tree(self.folder / name)
            raise write_error("save the tracking memory in", self.folder, exc) from exc
        with contextlib.suppress(OSError):
            self.remove_unreferenced()

    def remove_unreferenced(self) -> None:
        """Delete state arrays the record does not name (left by a kill between writing and removing)."""
        about = self.about()
        keep = about["state"]["name"] if about else None
        if self.folder.is_dir():
            for child in self.folder.iterdir():
                if child.is_dir() and child.name.startswith(_PREFIX) and child.name != keep:
                    remove_tree(child)

    def _next_name(self) -> str:
        children = self.folder.iterdir() if self.folder.is_dir() else ()
        taken = [p.name[len(_PREFIX):] for p in children if p.name.startswith(_PREFIX)]
        return f"{_PREFIX}{max((int(n) for n in taken if n.isdigit()), default=-1) + 1:06d}"
