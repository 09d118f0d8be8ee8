"""Objects carry a review status (automatic, verified, rejected, corrected) that survives reopening, renaming and
recolouring; stores written before statuses existed still open, with no status."""

from __future__ import annotations

import json

import pytest

from napari_sam2.io import OBJECT_STATUSES, LabelStore, LabelStoreError


def _store(tmp_path):
    store = LabelStore.create(tmp_path / "s.zarr", (2, 4, 4), dimension_names=("t", "y", "x"))
    store.add_object(1)
    store.add_object(2)
    return store


def test_status_is_stored_and_read_back(tmp_path):
    store = _store(tmp_path)
    assert store.objects[1].status is None
    store.set_object_status(1, "verified")
    store.set_object_status(2, "rejected")
    reopened = LabelStore.open(tmp_path / "s.zarr", read_only=True)
    assert reopened.objects[1].status == "verified"
    assert reopened.objects[2].status == "rejected"


def test_renaming_and_recolouring_keep_the_status(tmp_path):
    store = _store(tmp_path)
    store.set_object_status(1, "corrected")
    store.rename_object(1, "mother")
    store.set_object_colour(1, "#00ff00")
    info = LabelStore.open(tmp_path / "s.zarr").objects[1]
    assert (info.name, info.colour, info.status) == ("mother", "#00ff00", "corrected")


def test_status_can_be_cleared(tmp_path):
    store = _store(tmp_path)
    store.set_object_status(1, "automatic")
    store.set_object_status(1, None)
    assert LabelStore.open(tmp_path / "s.zarr").objects[1].status is None


def test_an_unknown_status_or_object_is_refused(tmp_path):
    store = _store(tmp_path)
    with pytest.raises(LabelStoreError, match="status"):
        store.set_object_status(1, "approved")
    with pytest.raises(LabelStoreError, match="no object 7"):
        store.set_object_status(7, "verified")
    assert set(OBJECT_STATUSES) == {"automatic", "verified", "rejected", "corrected"}


def test_a_store_written_without_statuses_still_opens(tmp_path):
    store = _store(tmp_path)
    doc_path = tmp_path / "s.zarr" / "session" / "objects" / "1" / "zarr.json"
    doc = json.loads(doc_path.read_text())
    del doc["attributes"]["status"]  # the record as stores wrote it before statuses existed
    doc_path.write_text(json.dumps(doc))
    del store
    reopened = LabelStore.open(tmp_path / "s.zarr")
    assert reopened.objects[1].status is None
    assert reopened.objects[1].name == "object 1"
    reopened.set_object_status(1, "verified")
    assert LabelStore.open(tmp_path / "s.zarr").objects[1].status == "verified"
