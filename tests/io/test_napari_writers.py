"""The plugin's napari writers on the plugin's own layers: labels backed by the zarr label store (never loaded whole),
and the layer's physical scale, units and translation kept in OME-Zarr."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_sam2.io import LabelStore
from napari_sam2.io.napari_readers import read_stack
from napari_sam2.io.napari_writers import write_labels_ome_zarr, write_labels_tiff

Labels = pytest.importorskip("napari.layers").Labels
SHAPE = (3, 16, 20)


@pytest.fixture
def store(tmp_path) -> LabelStore:
    store = LabelStore.create(tmp_path / "labels.zarr", SHAPE, dimension_names=("t", "y", "x"))
    frame = np.zeros(SHAPE[1:], np.uint32)
    frame[2:6, 3:9] = 5
    frame[10:, 12:] = 70_000
    store.write_manual(1, frame)
    return store


def _layer_tuple(store: LabelStore, **kwargs):
    """What napari hands a writer for a Labels layer over the store's zarr array: (data, attributes)."""
    data, attributes, kind = Labels(store.labels, axis_labels=("t", "y", "x"), **kwargs).as_layer_data_tuple()
    assert kind == "labels" and isinstance(data, zarr.Array)
    return data, attributes


def test_the_tiff_writer_saves_zarr_backed_labels(store, tmp_path):
    data, attributes = _layer_tuple(store)
    assert write_labels_tiff(str(tmp_path / "labels.tif"), data, attributes) == [str(tmp_path / "labels.tif")]
    with tifffile.TiffFile(tmp_path / "labels.tif") as tif:
        assert tif.series[0].axes == "TYX" and tif.series[0].dtype == np.float32  # 70000 > 65535
        np.testing.assert_array_equal(tif.asarray(), store.labels[:])


def test_the_ome_zarr_writer_keeps_scale_units_and_translation(store, tmp_path):
    data, attributes = _layer_tuple(store, scale=(120.0, 0.65, 0.325), units=("second", "micrometer", "micrometer"),
                                    translate=(0.0, 13.0, 6.5))
    path = tmp_path / "labels.ome.zarr"
    write_labels_ome_zarr(str(path), data, attributes)
    entry = zarr.open_group(path, mode="r").attrs["ome"]["multiscales"][0]
    assert [(a["name"], a.get("unit")) for a in entry["axes"]] == [("t", "second"), ("y", "micrometer"),
                                                                    ("x", "micrometer")]
    transforms = entry["datasets"][0]["coordinateTransformations"]
    assert transforms == [{"type": "scale", "scale": [120.0, 0.65, 0.325]},
                          {"type": "translation", "translation": [0.0, 13.0, 6.5]}]
    ((labels, kwargs, kind),) = read_stack(str(path))  # and napari gets them back
    assert kwargs["scale"] == [120.0, 0.65, 0.325] and kwargs["units"] == ["second", "micrometer", "micrometer"]
    np.testing.assert_array_equal(labels[:], store.labels[:])


def test_napari_default_pixel_units_are_left_out(store, tmp_path):
    data, attributes = _layer_tuple(store)
    write_labels_ome_zarr(str(tmp_path / "labels.ome.zarr"), data, attributes)
    entry = zarr.open_group(tmp_path / "labels.ome.zarr", mode="r").attrs["ome"]["multiscales"][0]
    assert all("unit" not in a for a in entry["axes"])
    assert entry["datasets"][0]["coordinateTransformations"] == [{"type": "scale", "scale": [1.0, 1.0, 1.0]}]


def test_labels_exported_into_an_ome_zarr_share_its_scale_and_units(store, tmp_path):
    from napari_sam2.io import export_ome_zarr, open_stack

    root = zarr.open_group(tmp_path / "movie.ome.zarr", mode="w")
    root.create_array("0", data=np.zeros(SHAPE, np.uint8), dimension_names=("t", "y", "x"))
    axes = [{"name": "t", "type": "time", "unit": "minute"}, {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"}]
    scale = [{"type": "scale", "scale": [5.0, 0.2, 0.2]}]
    root.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [
        {"path": "0", "coordinateTransformations": scale}]}]}
    export_ome_zarr(open_stack(tmp_path / "movie.ome.zarr"), store)
    entry = zarr.open_group(tmp_path / "movie.ome.zarr/labels/sam2", mode="r").attrs["ome"]["multiscales"][0]
    assert entry["axes"] == axes and entry["datasets"][0]["coordinateTransformations"] == scale
