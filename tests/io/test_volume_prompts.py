"""Prompt files of a 3D-over-time run: JSON prompts with their plane's z, napari Points CSVs over a TZYX image."""

from __future__ import annotations

import json

import pytest

from napari_sam2.io.prompt_file import PromptFileError
from napari_sam2.io.volume_prompts import load_volume_prompts

AXES = ("t", "z", "y", "x")


def load(path):
    return load_volume_prompts(path, axes=AXES, frame_axis="t", volume_axis="z")


def test_a_points_csv_over_the_tzyx_image_reads_as_the_same_prompts_as_the_json(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"objects": [
        {"id": 1, "name": "a", "prompts": [{"frame": 0, "z": 3, "points": [[10, 12], [14, 15]], "labels": [1, 0]},
                                           {"frame": 2, "z": 1, "points": [[5, 6]]}]},
        {"id": 7, "prompts": [{"frame": 1, "z": 0, "points": [[20.5, 30]]}]}]}))
    (tmp_path / "p.csv").write_text("index,axis-0,axis-1,axis-2,axis-3,object_id,positive\n"
                                    "0,0,3,10,12,1,True\n1,0,3,14,15,1,False\n2,2,1,5,6,1,True\n"
                                    "3,1,0,20.5,30,7,True\n")
    from_json, from_csv = load(tmp_path / "p.json"), load(tmp_path / "p.csv")
    assert [(p.obj_id, p.t, p.z) for p in from_json.prompts] == [(1, 0, 3), (7, 1, 0), (1, 2, 1)]
    assert from_json.fingerprint() == from_csv.fingerprint()
    assert from_json.names == {1: "a", 7: None}
    from_json.check_fits((3, 4, 32, 32), "t", "z")
    with pytest.raises(PromptFileError, match=r"object 1, t=0: z=3 is outside the stack \(3 planes"):
        from_json.check_fits((3, 3, 32, 32), "t", "z")


def test_a_json_prompt_without_z_names_the_prompt(tmp_path):
    no_z = {"objects": [{"id": 1, "prompts": [{"frame": 0, "box": [1, 2, 3, 4]}]}]}
    (tmp_path / "p.json").write_text(json.dumps(no_z))
    with pytest.raises(PromptFileError, match=r"objects\[0\], prompts\[0\]: a prompt of a 3D-over-time run needs"):
        load(tmp_path / "p.json")


def test_a_csv_without_the_z_column_is_refused(tmp_path):
    (tmp_path / "p.csv").write_text("index,axis-0,axis-1,axis-2,object_id,positive\n0,0,10,12,1,True\n")
    with pytest.raises(PromptFileError, match="p.csv"):
        load(tmp_path / "p.csv")
