"""``napari-sam2 segment`` on other stacks: an OME-TIFF along z at one time point (JSON or a napari Points CSV),
and a zarr volume."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr
from napari_builtins.io import napari_write_points

from napari_sam2.io import LabelStore
from tests.cli.helpers import SIDE, blob_stack, labels_of, model_args, run_cli, run_record, write_json

Z = 8


@pytest.fixture(scope="module")
def ome_tiff(tmp_path_factory):
    """A T,Z,Y,X OME-TIFF of two volumes (2, 8, 64, 64)."""
    path = tmp_path_factory.mktemp("ome") / "embryo.ome.tif"
    volumes = np.stack([blob_stack(Z, seed=1), blob_stack(Z, seed=2)])
    tifffile.imwrite(path, volumes, ome=True, metadata={"axes": "TZYX"})
    return path


def _z_json(folder):
    return write_json(folder / "z.json", {"axis": "z", "position": {"t": 1}, "objects": [
        {"id": 3, "prompts": [{"frame": 2, "points": [[21, 18], [45, 45]], "labels": [1, 0]}]},
        {"id": 4, "prompts": [{"frame": 2, "points": [[40, 36]], "labels": [1]}]},
    ]})


def _z_csv(folder):
    """The same clicks as ``_z_json``, as napari saves a 4D Points layer (t, z, y, x) with its features."""
    data = np.array([[1, 2, 21, 18], [1, 2, 45, 45], [1, 2, 40, 36]], dtype=float)
    features = {"object_id": np.array([3, 3, 4]), "positive": np.array([True, False, True])}
    napari_write_points(str(folder / "z.csv"), data, {"properties": features})
    return folder / "z.csv"


def test_z_frames_at_one_time_point_of_an_ome_tiff_fill_that_plane_from_json_or_napari_csv(
        ome_tiff, tmp_path, checkpoint, cache):
    from_json = tmp_path / "json.zarr"
    result = run_cli("segment", ome_tiff, "--prompts", _z_json(tmp_path), "--out", from_json,
                     *model_args(checkpoint), cache=cache)  # axis and position come from the prompt file
    assert result.returncode == 0, result.stderr
    labels = labels_of(from_json)
    assert labels.shape == (2, Z, SIDE, SIDE)
    assert zarr.open_group(from_json, mode="r")["labels"].metadata.dimension_names == ("t", "z", "y", "x")
    assert not labels[0].any(), "the other time point is untouched"
    assert {3, 4} <= set(np.unique(labels[1])) and all(plane.any() for plane in labels[1])
    assert run_record(from_json, "z_t1")["complete"]
    assert [(p.coords, p.obj_id) for p in LabelStore.open(from_json, read_only=True).prompts()] == [
        ({"t": 1, "z": 2}, 3), ({"t": 1, "z": 2}, 4)]

    from_csv = tmp_path / "csv.zarr"
    result = run_cli("segment", ome_tiff, "--prompts", _z_csv(tmp_path), "--out", from_csv, "--axis", "z",
                     "--position", "t=1", *model_args(checkpoint), cache=cache)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(labels_of(from_csv), labels)


def test_a_zarr_volume_runs_along_z_without_being_told(tmp_path, checkpoint, cache):
    stack = tmp_path / "volume.zarr"
    planes = blob_stack(6, seed=3)
    zarr.create_array(stack, data=planes, chunks=(1, SIDE, SIDE), dimension_names=("z", "y", "x"))
    prompts = write_json(tmp_path / "p.json", {"objects": [
        {"id": 1, "prompts": [{"frame": 0, "box": [14, 10, 30, 26]}]}]})
    out = tmp_path / "labels.zarr"
    result = run_cli("segment", stack, "--prompts", prompts, "--out", out, "--direction", "forward",
                     *model_args(checkpoint), cache=cache)
    assert result.returncode == 0, result.stderr
    labels = labels_of(out)
    assert labels.shape == planes.shape and set(np.unique(labels)) == {0, 1}
    assert zarr.open_group(out, mode="r")["labels"].metadata.dimension_names == ("z", "y", "x")
    assert run_record(out, "z")["passes"] == ["forward"]
