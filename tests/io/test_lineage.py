"""Lineage in the label store (parents) and out of it: track spans, napari Tracks data, CTC with parents and
statuses, GEFF with division edges."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_sam2.io import LabelStore, LabelStoreError, export_ctc, export_geff, lineage, tracks_layer_data
from napari_sam2.io.exports import ctc_tracks
from napari_sam2.io.lineage import TrackSpan

SIDE = 12


def _square(y: int, x: int, size: int = 3) -> tuple[slice, slice]:
    return slice(y, y + size), slice(x, x + size)


def _dividing_store(tmp_path, *, gap: bool = False) -> LabelStore:
    """Object 1 on frames 0–2 at the left; it divides: objects 2 and 3 on frames 3–5 (object 2 missing on frame 4
    with ``gap``); object 4 on every frame at the right, never divides."""
    frames = np.zeros((6, SIDE, SIDE), np.uint32)
    for t in range(6):
        frames[t][_square(8, 8)] = 4
        if t < 3:
            frames[t][_square(1, 1 + t)] = 1
        else:
            if not (gap and t == 4):
                frames[t][_square(0, 3)] = 2
            frames[t][_square(4, 3)] = 3
    store = LabelStore.create(tmp_path / "s.zarr", frames.shape, dimension_names=("t", "y", "x"))
    for t, plane in enumerate(frames):
        store.write_manual(t, plane)
    store.set_object_parent(2, 1)
    store.set_object_parent(3, 1)
    store.set_object_status(1, "verified")
    store.set_object_status(2, "rejected")
    store.set_object_status(3, "corrected")
    return store


def test_parent_is_stored_read_back_and_survives_renaming(tmp_path):
    store = LabelStore.create(tmp_path / "s.zarr", (2, 4, 4), dimension_names=("t", "y", "x"))
    store.add_object(1)
    store.add_object(2)
    assert store.objects[2].parent is None
    store.set_object_parent(2, 1)
    store.rename_object(2, "daughter")
    info = LabelStore.open(tmp_path / "s.zarr", read_only=True).objects[2]
    assert (info.name, info.parent) == ("daughter", 1)
    store.set_object_parent(2, None)
    assert LabelStore.open(tmp_path / "s.zarr", read_only=True).objects[2].parent is None


def test_store_written_before_parents_existed_reads_no_parent(tmp_path):
    store = LabelStore.create(tmp_path / "s.zarr", (2, 4, 4), dimension_names=("t", "y", "x"))
    store.add_object(3)
    doc_path = tmp_path / "s.zarr" / "session" / "objects" / "3" / "zarr.json"
    doc = json.loads(doc_path.read_text())
    del doc["attributes"]["parent"]
    doc_path.write_text(json.dumps(doc))
    assert LabelStore.open(tmp_path / "s.zarr").objects[3].parent is None


def test_bad_parents_are_refused_in_one_line(tmp_path):
    store = LabelStore.create(tmp_path / "s.zarr", (2, 4, 4), dimension_names=("t", "y", "x"))
    store.add_object(1)
    with pytest.raises(LabelStoreError, match="cannot be its own parent"):
        store.set_object_parent(1, 1)
    with pytest.raises(LabelStoreError, match="has no object 5"):
        store.set_object_parent(5, 1)
    with pytest.raises(LabelStoreError, match="object ids must be"):
        store.set_object_parent(1, 0)


def test_lineage_gives_spans_from_pixels_and_parents_from_the_store(tmp_path):
    spans = lineage(_dividing_store(tmp_path))
    assert spans == {
        1: TrackSpan(1, 0, 2, None),
        2: TrackSpan(2, 3, 5, 1),
        3: TrackSpan(3, 3, 5, 1),
        4: TrackSpan(4, 0, 5, None),
    }


def test_tracks_layer_data_has_centroids_and_the_division_graph(tmp_path):
    data, graph = tracks_layer_data(_dividing_store(tmp_path))
    assert graph == {2: [1], 3: [1]}
    assert data.shape == (3 + 3 + 3 + 6, 4)
    np.testing.assert_allclose(data[data[:, 0] == 1][:, 1:], [[0, 2, 2], [1, 2, 3], [2, 2, 4]])


def test_ctc_export_writes_parents_and_statuses(tmp_path):
    out = export_ctc(_dividing_store(tmp_path), tmp_path / "RES")
    tracks = sorted(tuple(map(int, line.split())) for line in (out / "res_track.txt").read_text().splitlines())
    assert tracks == [(1, 0, 2, 0), (2, 3, 5, 1), (3, 3, 5, 1), (4, 0, 5, 0)]
    statuses = json.loads((out / "statuses.json").read_text())
    assert statuses == {"1": {"object": 1, "status": "verified"}, "2": {"object": 2, "status": "rejected"},
                        "3": {"object": 3, "status": "corrected"}, "4": {"object": 4, "status": None}}
    assert tifffile.imread(out / "mask004.tif")[1, 4] == 2


def test_ctc_export_of_a_daughter_with_a_gap_links_her_second_stretch_to_her_first(tmp_path):
    out = export_ctc(_dividing_store(tmp_path, gap=True), tmp_path / "RES")
    tracks = sorted(tuple(map(int, line.split())) for line in (out / "res_track.txt").read_text().splitlines())
    assert tracks == [(1, 0, 2, 0), (2, 3, 3, 1), (3, 3, 5, 1), (4, 0, 5, 0), (5, 5, 5, 2)]
    assert tifffile.imread(out / "mask005.tif")[1, 4] == 5
    assert json.loads((out / "statuses.json").read_text())["5"] == {"object": 2, "status": "rejected"}


def test_ctc_parent_is_the_stretch_that_ended_before_the_daughter_began():
    presence = [{1}, set(), {1}, {1, 2}, {2}]  # 1 has two stretches; 2 begins while 1's second one goes on
    tracks, _ = ctc_tracks(presence, {2: 1})
    assert sorted(tracks) == [[1, 0, 0, 0], [2, 3, 4, 1], [3, 2, 3, 1]]
    tracks, _ = ctc_tracks([{1}, {1}, {2}], {2: 1})
    assert sorted(tracks) == [[1, 0, 1, 0], [2, 2, 2, 1]]


def test_geff_export_has_nodes_with_status_and_division_edges(tmp_path):
    import geff

    path = export_geff(_dividing_store(tmp_path), tmp_path / "tracks.geff")
    graph, _ = geff.read(path)
    nodes = {n: graph.nodes[n] for n in graph.nodes}
    assert len(nodes) == 15
    by_key = {(int(p["track_id"]), int(p["t"])): n for n, p in nodes.items()}
    assert nodes[by_key[(2, 3)]]["status"] == "rejected" and nodes[by_key[(4, 0)]]["status"] == ""
    assert nodes[by_key[(1, 0)]]["area"] == 9
    np.testing.assert_allclose([nodes[by_key[(1, 1)]]["y"], nodes[by_key[(1, 1)]]["x"]], [2, 3])
    edges = {(int(nodes[a]["track_id"]), int(nodes[a]["t"]), int(nodes[b]["track_id"]), int(nodes[b]["t"]))
             for a, b in graph.edges}
    assert (1, 2, 2, 3) in edges and (1, 2, 3, 3) in edges  # the division
    assert (1, 0, 1, 1) in edges and (4, 4, 4, 5) in edges  # within tracks
    assert len(edges) == 2 + 2 + 2 + 5 + 2
    with pytest.raises(LabelStoreError, match="already exists"):
        export_geff(LabelStore.open(tmp_path / "s.zarr"), path)
