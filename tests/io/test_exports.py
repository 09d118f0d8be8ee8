"""Exports: ImageJ TIFF, OME-Zarr (new and into an existing image), Cell Tracking Challenge, napari Tracks —
checked against real ground truth read independently with tifffile / plain zarr."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import tifffile
import zarr

from napari_sam2.io import LabelStore, export_ctc, export_ome_zarr, export_tiff, open_stack, tracks_from_labels
from napari_sam2.io.napari_readers import read_stack
from tests.io.helpers import shared

EMBRYO = "qcanet_mouse_embryo_3d/derived/"


def _store_from(path, labels: np.ndarray, names) -> LabelStore:
    """A store holding ``labels`` (…, Y, X), written frame by frame as hand edits."""
    store = LabelStore.create(path, labels.shape, dimension_names=names)
    for coords in np.ndindex(*labels.shape[:-2]):
        if labels[coords].any():
            store.write_manual_at(coords, labels[coords])
    return store


@pytest.fixture(scope="module")
def embryo(tmp_path_factory):
    """The real TZYX embryo: its OME-TIFF image and a label store holding its instance ground truth."""
    image = shared(EMBRYO + "embryo_t262_t350_TZYX.ome.tif")
    truth = tifffile.imread(shared(EMBRYO + "embryo_t262_t350_labels_TZYX.ome.tif"))
    store = _store_from(tmp_path_factory.mktemp("embryo") / "l.zarr", truth, ("t", "z", "y", "x"))
    return image, truth, store


def test_imagej_tiff_has_axes_and_the_labels(embryo, tmp_path):
    _image, truth, store = embryo
    export_tiff(store, tmp_path / "labels.tif")
    with tifffile.TiffFile(tmp_path / "labels.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == "TZYX" and tif.series[0].dtype == np.uint16
        np.testing.assert_array_equal(tif.asarray(), truth)


def test_new_ome_zarr_from_an_ome_tiff(embryo, tmp_path):
    image_path, truth, store = embryo
    src = open_stack(image_path, axis="z", position={"t": 0})
    out = export_ome_zarr(src, store, tmp_path / "embryo.ome.zarr")
    root = zarr.open_group(out, mode="r")
    ome = root.attrs["ome"]
    assert ome["version"] == "0.5"
    assert [a["name"] for a in ome["multiscales"][0]["axes"]] == ["t", "z", "y", "x"]
    assert [a["type"] for a in ome["multiscales"][0]["axes"]] == ["time", "space", "space", "space"]
    np.testing.assert_array_equal(root["0"][:], tifffile.imread(image_path))
    assert root["0"].metadata.dimension_names == ("t", "z", "y", "x")
    assert root["labels"].attrs["ome"]["labels"] == ["sam2"]
    label_attrs = root["labels/sam2"].attrs["ome"]
    assert label_attrs["image-label"]["source"] == {"image": "../../"}
    assert {c["label-value"] for c in label_attrs["image-label"]["colors"]} == set(np.unique(truth)) - {0}
    assert all(len(c["rgba"]) == 4 for c in label_attrs["image-label"]["colors"])
    np.testing.assert_array_equal(root["labels/sam2/0"][:], truth)
    with pytest.raises(Exception, match="already exists"):
        export_ome_zarr(src, store, out)


def _hash_files(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def test_labels_go_into_an_existing_ome_zarr_without_rewriting_the_image(embryo, tmp_path):
    _image, truth, store = embryo
    copy = tmp_path / "embryo.ome.zarr"
    shutil.copytree(shared(EMBRYO + "embryo_t262_t350.ome.zarr"), copy)
    before = _hash_files(copy)
    src = open_stack(copy, axis="z", position={"t": 1})
    assert export_ome_zarr(src, store, copy) == copy
    after = _hash_files(copy)
    assert all(after[key] == digest for key, digest in before.items() if key.parts[0] != "labels")
    assert all(after[key] == digest for key, digest in before.items() if key.parts[:2] == ("labels", "nuclei"))
    root = zarr.open_group(copy, mode="r")
    assert root["labels"].attrs["labels"] == ["nuclei", "sam2"]  # OME-Zarr 0.4: top-level attributes
    assert root["labels/sam2"].attrs["image-label"]["version"] == "0.4"
    np.testing.assert_array_equal(root["labels/sam2/0"][:], truth)
    np.testing.assert_array_equal(root["labels/sam2/0"][:], root["labels/nuclei/0"][:])  # same as their labels
    layers = read_stack(str(copy))
    assert [(kwargs["name"], kind) for _d, kwargs, kind in layers] == [
        ("embryo", "image"),
        ("nuclei", "labels"),
        ("sam2", "labels"),
    ]


def test_labels_of_a_pyramid_have_every_level(tmp_path):
    root = zarr.open_group(tmp_path / "pyr.ome.zarr", mode="w")
    full = np.random.default_rng(0).integers(0, 255, size=(3, 9, 12), dtype=np.uint8)
    root.create_array("0", data=full, chunks=(1, 9, 12), dimension_names=("t", "y", "x"))
    root.create_array("1", data=full[:, ::2, ::2], chunks=(1, 5, 6), dimension_names=("t", "y", "x"))
    axes = [{"name": "t", "type": "time"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    datasets = [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 1.0]}]},
        {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 2.0, 2.0]}]},
    ]
    root.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}
    labels = np.random.default_rng(1).integers(0, 4, size=(3, 9, 12), dtype=np.uint32)
    store = _store_from(tmp_path / "l.zarr", labels, ("t", "y", "x"))
    src = open_stack(tmp_path / "pyr.ome.zarr")
    np.testing.assert_array_equal(src[2], full[2])  # segmentation uses the full-resolution level
    export_ome_zarr(src, store)
    out = zarr.open_group(tmp_path / "pyr.ome.zarr/labels/sam2", mode="r")
    np.testing.assert_array_equal(out["0"][:], labels)
    np.testing.assert_array_equal(out["1"][:], labels[:, ::2, ::2])
    assert [d["path"] for d in out.attrs["ome"]["multiscales"][0]["datasets"]] == ["0", "1"]


def test_ctc_export_matches_the_real_tracking_ground_truth(tmp_path):
    tra = shared("ctc_gowt1_01/01_GT/TRA")
    truth = np.stack([tifffile.imread(tra / f"man_track{t:03d}.tif")[::4, ::4] for t in range(40)])
    store = _store_from(tmp_path / "l.zarr", truth.astype(np.uint32), ("t", "y", "x"))
    export_ctc(store, tmp_path / "01_RES")
    expected = {tuple(map(int, line.split()[:3])) for line in (tra / "man_track.txt").read_text().splitlines()}
    got = [tuple(map(int, line.split())) for line in (tmp_path / "01_RES" / "res_track.txt").read_text().splitlines()]
    assert {row[:3] for row in got} == expected  # label, begin, end of all 25 tracks
    assert all(row[3] == 0 for row in got)
    masks = sorted(p.name for p in (tmp_path / "01_RES").glob("mask*.tif"))
    assert masks == [f"mask{t:03d}.tif" for t in range(40)]
    mask = tifffile.imread(tmp_path / "01_RES" / "mask021.tif")
    assert mask.dtype == np.uint16
    np.testing.assert_array_equal(mask, truth[21])


def test_ctc_export_splits_an_object_that_disappears_and_returns(tmp_path):
    labels = np.zeros((4, 1, 3), np.uint32)
    labels[[0, 1, 3], 0, 0] = 5  # object 5 is absent at t = 2
    labels[:, 0, 2] = 7
    store = _store_from(tmp_path / "l.zarr", labels, ("t", "y", "x"))
    export_ctc(store, tmp_path / "res")
    lines = (tmp_path / "res" / "res_track.txt").read_text().splitlines()
    assert lines == ["5 0 1 0", "7 0 3 0", "8 3 3 5"]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "res" / "mask003.tif"), [[8, 0, 7]])


def test_tracks_are_centroids_of_the_real_labels(tmp_path):
    labels = tifffile.imread(shared("cancer_cell_migration_bian/cancer_cell_migration_voronoi_otsu_labeling_crop.tif"))
    store = _store_from(tmp_path / "l.zarr", labels[:12].astype(np.uint32), ("t", "y", "x"))
    tracks = tracks_from_labels(store)
    expected = []
    for t in range(12):
        for obj in np.unique(labels[t]):
            if obj:
                ys, xs = np.nonzero(labels[t] == obj)
                expected.append((obj, t, ys.mean(), xs.mean()))
    expected = np.array(sorted(expected))
    assert tracks.shape == expected.shape and tracks.shape[1] == 4
    np.testing.assert_allclose(tracks, expected)


def test_tracks_of_a_volume_have_a_z_column(tmp_path):
    labels = np.zeros((2, 3, 4, 4), np.uint32)
    labels[0, 1:3, 0, 0] = 2  # t=0: z 1 and 2 at (0, 0)
    labels[1, 0, 3, 1] = 2
    store = _store_from(tmp_path / "l.zarr", labels, ("t", "z", "y", "x"))
    np.testing.assert_allclose(tracks_from_labels(store), [[2, 0, 1.5, 0, 0], [2, 1, 0, 3, 1]])
