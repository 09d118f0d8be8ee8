"""The tracking memory kept in a label store: written as a new array then the record naming it, read back checked,
older arrays removed, a failed write leaving the previous state intact."""

from __future__ import annotations

import errno

import numpy as np
import pytest
import zarr

from napari_sam2.io import session_memory
from napari_sam2.io.errors import StoreWriteError
from napari_sam2.io.label_store import LabelStore
from napari_sam2.io.session_memory import SavedMemory, memory_view_key


@pytest.fixture
def store(tmp_path):
    return LabelStore.create(tmp_path / "s.zarr", (3, 4, 8, 8), dimension_names=("t", "z", "y", "x"))


def test_states_round_trip_and_only_the_newest_is_kept(store):
    memory = SavedMemory(store.path, memory_view_key("z", {"t": 1}))
    assert memory.about() is None and memory.folder.name == "z_t1"
    memory.write(b"first state", {"prompts": "a"})
    memory.write(b"second state", {"prompts": "b"})
    assert memory.read() == b"second state" and memory.about()["prompts"] == "b"
    assert sorted(p.name for p in memory.folder.iterdir()) == ["state_000001", "zarr.json"]
    group = zarr.open_group(store.path, mode="r")  # still a valid zarr hierarchy, labels untouched
    assert group["labels"].shape == (3, 4, 8, 8)
    assert np.asarray(group[f"session/memory/z_t1/{memory.about()['state']['name']}"][:]).tobytes() == b"second state"


def test_a_state_written_without_its_record_is_ignored_and_removed(store):
    memory = SavedMemory(store.path, "t")
    memory.write(b"kept", {"prompts": "a"})
    zarr.create_array(store=str(store.path), name="session/memory/t/state_000007", data=np.zeros(4, np.uint8))
    assert memory.read() == b"kept"  # the record names the complete one
    memory.write(b"next", {"prompts": "b"})
    assert sorted(p.name for p in memory.folder.iterdir()) == ["state_000008", "zarr.json"]


def test_a_damaged_state_is_refused(store):
    memory = SavedMemory(store.path, "t")
    memory.write(b"0123456789", {})
    chunk = next(p for p in (memory.folder / memory.about()["state"]["name"]).rglob("*") if p.is_file()
                 and p.name != "zarr.json")
    chunk.write_bytes(chunk.read_bytes()[:-1] + b"X")
    with pytest.raises(ValueError, match="damaged"):
        memory.read()


def test_a_failed_write_names_the_folder_and_keeps_the_previous_state(store, monkeypatch):
    memory = SavedMemory(store.path, "t")
    memory.write(b"before", {"prompts": "a"})

    def full(*_, **__):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(session_memory, "atomic_write_json", full)
    with pytest.raises(StoreWriteError, match="disk is full") as info:
        memory.write(b"after", {"prompts": "b"})
    assert str(memory.folder) in str(info.value)
    monkeypatch.undo()
    assert memory.read() == b"before" and memory.about()["prompts"] == "a"
    assert sorted(p.name for p in memory.folder.iterdir()) == ["state_000000", "zarr.json"]
