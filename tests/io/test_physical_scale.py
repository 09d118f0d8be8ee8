"""The physical pixel size, z step and time step of a stack carried into an OME-Zarr export's ``scale``."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_sam2.io import LabelStore, export_ome_zarr, open_stack
from napari_sam2.io.physical_scale import physical_scale

SHAPE = (2, 3, 16, 20)


def _tzyx() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 4000, SHAPE, dtype=np.uint16)
    labels = np.zeros(SHAPE, np.uint32)
    labels[:, 1:, 4:9, 5:12] = 3
    return image, labels


def _store(path, labels) -> LabelStore:
    store = LabelStore.create(path, labels.shape, dimension_names=("t", "z", "y", "x"))
    for coords in np.ndindex(*labels.shape[:2]):
        if labels[coords].any():
            store.write_manual_at(coords, labels[coords])
    return store


def _write_ome(path, image):
    tifffile.imwrite(path, image, ome=True, metadata={
        "axes": "TZYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.3, "PhysicalSizeZ": 2.0,
        "PhysicalSizeZUnit": "µm", "TimeIncrement": 90.0, "TimeIncrementUnit": "s"})


def _write_imagej(path, image):
    tifffile.imwrite(path, image, imagej=True, resolution=(4.0, 1 / 0.3),
                     metadata={"axes": "TZYX", "spacing": 2.0, "unit": "micron", "finterval": 90.0})


@pytest.mark.parametrize("write", [_write_ome, _write_imagej], ids=["ome-tiff", "imagej-tiff"])
def test_an_ome_zarr_export_carries_the_physical_scale_of_its_image_and_labels(tmp_path, write):
    image, labels = _tzyx()
    path = tmp_path / "stack.tif"
    write(path, image)
    source = open_stack(path, axis="z", position={"t": 0})
    sizes, units = physical_scale(source.raw)
    assert sizes == pytest.approx({"t": 90.0, "z": 2.0, "y": 0.3, "x": 0.25})
    out = export_ome_zarr(source, _store(tmp_path / "l.zarr", labels), tmp_path / "out.ome.zarr")
    root = zarr.open_group(out, mode="r")
    for attrs in (root.attrs["ome"], root["labels/sam2"].attrs["ome"]):
        entry = attrs["multiscales"][0]
        scale = entry["datasets"][0]["coordinateTransformations"][0]
        assert scale["type"] == "scale" and scale["scale"] == pytest.approx([90.0, 2.0, 0.3, 0.25])
        assert [a.get("unit") for a in entry["axes"]] == ["second", "micrometer", "micrometer", "micrometer"]
    np.testing.assert_array_equal(root["labels/sam2/0"][:], labels)
    source.close()


def test_a_stack_without_sizes_keeps_unit_scale(tmp_path):
    image, labels = _tzyx()
    tifffile.imwrite(tmp_path / "plain.tif", image)
    source = open_stack(tmp_path / "plain.tif", axis="z", position={"t": 0}, axes="tzyx")
    out = export_ome_zarr(source, _store(tmp_path / "l.zarr", labels), tmp_path / "out.ome.zarr")
    entry = zarr.open_group(out, mode="r").attrs["ome"]["multiscales"][0]
    assert entry["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 1.0, 1.0, 1.0]
    assert all("unit" not in a for a in entry["axes"])
    source.close()
