"""napari readers and writers of napari_sam2.io, and their registration in napari.yaml."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from napari_sam2.io import LabelStore, open_stack
from napari_sam2.io.napari_readers import napari_get_reader, read_stack
from napari_sam2.io.napari_writers import write_label_store, write_labels_ome_zarr, write_labels_tiff
from tests.io.helpers import shared

MANIFEST = Path(__file__).resolve().parents[2] / "src" / "napari_sam2" / "napari.yaml"


def _pyramid(path: Path) -> np.ndarray:
    """A 2-level OME-Zarr 0.5 image (t, c, y, x) written with plain zarr; returns level 0."""
    root = zarr.open_group(path, mode="w")
    full = np.random.default_rng(0).integers(0, 255, size=(2, 2, 16, 16), dtype=np.uint8)
    root.create_array("0", data=full, dimension_names=("t", "c", "y", "x"))
    root.create_array("1", data=full[:, :, ::2, ::2], dimension_names=("t", "c", "y", "x"))
    axes = [{"name": n, "type": t} for n, t in zip("tcyx", ("time", "channel", "space", "space"), strict=True)]
    datasets = [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 0.5, 0.5]}]},
        {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1.0, 1.0]}]},
    ]
    root.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}
    return full


def test_reader_declines_what_it_does_not_handle(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG")
    (tmp_path / "not_zarr.zarr").mkdir()
    (tmp_path / "folder").mkdir()
    for path in ["a.png", "not_zarr.zarr", "folder", "missing.tif"]:
        assert napari_get_reader(str(tmp_path / path)) is None
    tifffile.imwrite(tmp_path / "x.tif", np.zeros((2, 8, 8), np.uint8))
    assert napari_get_reader([str(tmp_path / "x.tif"), str(tmp_path / "x.tif")]) is None
    assert napari_get_reader(str(tmp_path / "x.tif")) is read_stack
    assert napari_get_reader([str(tmp_path / "x.tif")]) is read_stack


def test_reader_keeps_a_multiscale_pyramid_and_splits_channels(tmp_path):
    full = _pyramid(tmp_path / "p.ome.zarr")
    ((data, kwargs, kind),) = read_stack(str(tmp_path / "p.ome.zarr"))
    assert kind == "image" and kwargs["multiscale"] is True and kwargs["channel_axis"] == 1
    assert [level.shape for level in data] == [(2, 2, 16, 16), (2, 2, 8, 8)]
    np.testing.assert_array_equal(data[0][1, 0], full[1, 0])
    assert kwargs["scale"] == [1, 0.5, 0.5]


def test_reader_on_a_real_ome_zarr_gives_image_and_labels():
    path = shared("qcanet_mouse_embryo_3d/derived/embryo_t262_t350.ome.zarr")
    layers = read_stack(str(path))
    assert [kind for *_, kind in layers] == ["image", "labels"]
    (image, kwargs, _), (labels, label_kwargs, _) = layers
    assert kwargs["axis_labels"] == ("t", "z", "y", "x") and label_kwargs["name"] == "nuclei"
    truth = tifffile.imread(shared("qcanet_mouse_embryo_3d/derived/embryo_t262_t350_labels_TZYX.ome.tif"))
    np.testing.assert_array_equal(np.asarray(labels[1, 20]), truth[1, 20])
    assert image.shape == (2, 51, 120, 122)


def test_reader_on_tiff_and_label_store(tmp_path):
    data = np.arange(3 * 10 * 12, dtype=np.uint16).reshape(3, 10, 12)
    tifffile.imwrite(tmp_path / "s.ome.tif", data, metadata={"axes": "TYX"})
    ((image, kwargs, kind),) = read_stack(str(tmp_path / "s.ome.tif"))
    assert kind == "image" and kwargs["axis_labels"] == ("t", "y", "x")
    np.testing.assert_array_equal(np.asarray(image[2]), data[2])
    store = LabelStore.create(tmp_path / "l.zarr", (3, 10, 12), dimension_names=("t", "y", "x"))
    store.write_manual(1, np.ones((10, 12), np.uint32))
    ((labels, label_kwargs, kind),) = read_stack(str(tmp_path / "l.zarr"))
    assert kind == "labels" and label_kwargs["axis_labels"] == ("t", "y", "x")
    np.testing.assert_array_equal(np.asarray(labels[1]), np.ones((10, 12)))


def test_reader_output_builds_napari_layers(tmp_path):
    layers_module = pytest.importorskip("napari.layers")
    _pyramid(tmp_path / "p.ome.zarr")
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((5, 10, 12), np.uint16))
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((5, 10, 12, 3), np.uint8), photometric="rgb")
    for path in ("p.ome.zarr", "s.tif", "rgb.tif"):
        for data, kwargs, kind in read_stack(str(tmp_path / path)):
            kwargs = dict(kwargs)
            channel_axis = kwargs.pop("channel_axis", None)
            if channel_axis is not None:  # napari's viewer splits channels; build one channel's layer here
                index = (slice(None),) * channel_axis + (0,)
                data = [level[index] for level in data] if kwargs.get("multiscale") else data[index]
            layer = layers_module.Layer.create(data, kwargs, kind)
            assert layer.ndim == 3


def test_label_writers_round_trip(tmp_path):
    labels = np.zeros((2, 3, 8, 9), np.uint32)
    labels[1, 2, 2:5, 3:7] = 4
    labels[0, 0, 0, 0] = 70000
    attributes = {"axis_labels": ("t", "z", "y", "x"), "name": "cells"}

    assert write_label_store(str(tmp_path / "a.zarr"), labels, attributes) == [str(tmp_path / "a.zarr")]
    store = LabelStore.open(tmp_path / "a.zarr")
    assert store.dimension_names == ("t", "z", "y", "x") and set(store.objects) == {4, 70000}
    np.testing.assert_array_equal(store.labels[:], labels)

    write_labels_ome_zarr(str(tmp_path / "b.ome.zarr"), labels, attributes)
    root = zarr.open_group(tmp_path / "b.ome.zarr", mode="r")
    np.testing.assert_array_equal(root["0"][:], labels)
    assert "image-label" in root.attrs["ome"]
    assert [a["name"] for a in root.attrs["ome"]["multiscales"][0]["axes"]] == ["t", "z", "y", "x"]

    small = np.where(labels > 5000, 0, labels)
    write_labels_tiff(str(tmp_path / "c.tif"), small, {"axis_labels": ("-4", "-3", "-2", "-1")})
    with tifffile.TiffFile(tmp_path / "c.tif") as tif:  # napari's default labels: axes inferred as t, z, y, x
        assert tif.series[0].axes == "TZYX" and tif.series[0].dtype == np.uint16
        np.testing.assert_array_equal(tif.asarray(), small)
    write_labels_tiff(str(tmp_path / "d.tif"), labels, attributes)
    assert tifffile.imread(tmp_path / "d.tif").dtype == np.float32  # ids above 65535: ImageJ has no uint32
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "d.tif"), labels)


def test_manifest_registers_the_io_contributions():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    readers = {r.command for r in manifest.contributions.readers}
    writers = {w.command: set(w.layer_types) for w in manifest.contributions.writers}
    assert readers == {"napari-sam2.get_reader"}
    assert writers == {
        "napari-sam2.write_label_store": {"labels"},
        "napari-sam2.write_labels_ome_zarr": {"labels"},
        "napari-sam2.write_labels_tiff": {"labels"},
    }
    for command in readers | set(writers):
        module, name = commands[command].split(":")
        assert callable(getattr(importlib.import_module(module), name))


def test_ome_tiff_pyramid_is_multiscale_for_display_and_full_resolution_for_frames(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, size=(3, 32, 40), dtype=np.uint8)
    with tifffile.TiffWriter(tmp_path / "pyr.ome.tif", ome=True) as tif:
        tif.write(data, subifds=1, metadata={"axes": "TYX"})
        tif.write(data[:, ::2, ::2], subfiletype=1)
    ((levels, kwargs, _),) = read_stack(str(tmp_path / "pyr.ome.tif"))
    assert kwargs["multiscale"] is True and [level.shape for level in levels] == [(3, 32, 40), (3, 16, 20)]
    np.testing.assert_array_equal(np.asarray(levels[1][2]), data[2, ::2, ::2])
    src = open_stack(tmp_path / "pyr.ome.tif")
    assert src.shape2d == (32, 40)
    np.testing.assert_array_equal(src[2], data[2])
