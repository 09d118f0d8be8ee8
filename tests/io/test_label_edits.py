"""A hand edit made in place (a brush stroke, a fill, an undo) stored through ``LabelStore.write_edit_at``: only
the objects whose pixels changed change provenance, and an undo can give them back their earlier provenance."""

from __future__ import annotations

import numpy as np

from napari_sam2.io.label_store import LabelStore


def _store(tmp_path) -> LabelStore:
    return LabelStore.create(tmp_path / "s.zarr", (3, 8, 8), dimension_names=("t", "y", "x"))


def _square(value: int, y: int, x: int, size: int = 3):
    def edit(plane: np.ndarray) -> np.ndarray:
        plane[y : y + size, x : x + size] = value
        return plane

    return edit


def test_an_edit_marks_only_the_objects_it_changed(tmp_path):
    store = _store(tmp_path)
    logits = np.full((1, 8, 8), -1.0, np.float32)
    logits[0, :4, :4] = 1.0
    store.write_result(1, [1], logits, source="prompt")
    changed, before = store.write_edit_at((1,), _square(2, 5, 5))
    assert changed == {2} and before == {1: "prompt"}
    assert store.provenance(1) == {1: "prompt", 2: "manual"}  # object 1 was not touched: still a prompt result
    changed, _ = store.write_edit_at((1,), _square(2, 2, 2))  # object 2 paints over part of object 1
    assert changed == {1, 2} and store.provenance(1) == {1: "manual", 2: "manual"}
    assert store.write_edit_at((1,), lambda plane: plane) == (set(), {1: "manual", 2: "manual"})


def test_an_edit_can_restore_the_provenance_of_before_a_stroke(tmp_path):
    store = _store(tmp_path)
    logits = np.full((1, 8, 8), -1.0, np.float32)
    logits[0, :4, :4] = 1.0
    store.write_result(2, [1], logits, source="propagation")
    store.write_edit_at((2,), _square(1, 4, 4))  # a stroke extends object 1 and paints object 3
    store.write_edit_at((2,), _square(3, 0, 5))
    assert store.provenance(2) == {1: "manual", 3: "manual"}

    def undo(plane: np.ndarray) -> np.ndarray:
        plane[4:7, 4:7] = 0
        plane[0:3, 5:8] = 0
        return plane

    changed, _ = store.write_edit_at((2,), undo, restore={1: "propagation", 3: None})
    assert changed == {1, 3} and store.provenance(2) == {1: "propagation"}
    assert set(np.unique(store.read_frame(2))) == {0, 1}
