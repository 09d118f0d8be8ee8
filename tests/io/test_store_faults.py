"""A label store whose creation was killed is completed, not refused; frame indices outside 0 … n-1 are refused."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zarr

from napari_sam2.io import LabelStore, LabelStoreError, UnfinishedStoreError, atomic_store, open_stack
from napari_sam2.io.atomic_store import TEMP_SUFFIX

SHAPE = (3, 16, 20)
CREATION_WRITES = 6  # the group, the labels array, the four session groups


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no cleanup (it is no OSError)."""


def _killed_creation(path, monkeypatch, completed: int) -> None:
    """``LabelStore.create`` cut after ``completed`` files, while writing the next one (its temporary file stays).

    zarr writes some files from several threads at once: writes are taken one at a time here, and once the process
    is "killed" no other thread writes anything."""
    done, dead, lock = [], [], threading.Lock()

    def write(target, data, *, exclusive=False):
        target = atomic_store.Path(target)
        with lock:
            if not dead and len(done) == completed:
                atomic_store.make_dirs(target.parent)
                (target.parent / f".{target.name}.cut{TEMP_SUFFIX}").write_bytes(bytes(data)[:5])
                dead.append(target)
            if dead:
                raise Killed
            real_write(target, data, exclusive=exclusive)  # an existing file, written exclusively, is no write
            done.append(target)

    real_write = atomic_store.atomic_write_bytes
    monkeypatch.setattr(atomic_store, "atomic_write_bytes", write)
    with pytest.raises(Killed):
        LabelStore.create(path, SHAPE, dimension_names=("t", "y", "x"))
    monkeypatch.setattr(atomic_store, "atomic_write_bytes", real_write)


@pytest.mark.parametrize("completed", range(CREATION_WRITES))
def test_a_store_whose_creation_was_killed_is_completed_for_its_image(tmp_path, monkeypatch, completed):
    path = tmp_path / "labels.zarr"
    _killed_creation(path, monkeypatch, completed)
    source = open_stack(np.zeros(SHAPE, np.uint8))
    if completed < 2:  # no labels array yet: only an image can say its shape
        with pytest.raises(UnfinishedStoreError, match="interrupted"):
            LabelStore.open(path)
    store = LabelStore.for_source(path, source)
    store.write_result(2, [4], np.ones((1, *SHAPE[1:]), np.float32))
    assert not [p for p in path.rglob("*") if TEMP_SUFFIX in p.name]
    group = zarr.open_group(path, mode="r")  # a complete zarr hierarchy, as plain zarr sees it
    assert group["labels"].shape == SHAPE and sorted(group["session"].group_keys()) == ["frames", "objects", "prompts"]
    reopened = LabelStore.open(path)
    assert reopened.provenance(2) == {4: "propagation"} and reopened.read_frame(2).all()


def test_a_tagged_group_without_labels_but_with_records_is_damaged_not_unfinished(tmp_path):
    path = tmp_path / "labels.zarr"
    store = LabelStore.create(path, SHAPE, dimension_names=("t", "y", "x"))
    store.add_object(3, name="kept")
    atomic_store.remove_tree(path / "labels")
    with pytest.raises(LabelStoreError, match="damaged") as info:
        LabelStore.for_source(path, open_stack(np.zeros(SHAPE, np.uint8)))
    assert not isinstance(info.value, UnfinishedStoreError)
    assert (path / "session" / "objects" / "3" / "zarr.json").is_file(), "nothing of the user's was touched"


@pytest.fixture
def store(tmp_path):
    store = LabelStore.create(tmp_path / "labels.zarr", SHAPE, dimension_names=("t", "y", "x"))
    store.write_result(SHAPE[0] - 1, [1], np.ones((1, *SHAPE[1:]), np.float32))
    return store


@pytest.mark.parametrize("frame", [-1, -SHAPE[0], SHAPE[0], 99])
def test_frame_indices_outside_the_stack_are_refused_and_change_nothing(store, frame):
    logits = np.full((1, *SHAPE[1:]), 5.0, np.float32)
    before = [store.read_frame(f).copy() for f in range(SHAPE[0])]
    calls = [
        lambda: store.write_result(frame, [2], logits),
        lambda: store.write_manual(frame, np.full(SHAPE[1:], 2, np.uint32)),
        lambda: store.add_prompt(2, frame, points=[[1, 1]]),
        lambda: store.read_frame(frame),
        lambda: store.provenance(frame),
    ]
    for call in calls:
        with pytest.raises(IndexError, match=rf"frame {frame} is outside the {SHAPE[0]} frames \(0 … 2\)"):
            call()
    for f in range(SHAPE[0]):
        np.testing.assert_array_equal(store.read_frame(f), before[f])
    assert store.prompts() == [] and 2 not in store.objects


def test_a_bool_is_no_frame_index(store):
    with pytest.raises(TypeError):
        store.write_result(True, [2], np.ones((1, *SHAPE[1:]), np.float32))
