"""Prompt files (napari_sam2.io.prompt_file / prompt_csv): the JSON format the napari widget writes and the command
line reads, napari Points CSVs, and errors that name the object, frame and problem."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from napari_builtins.io import napari_write_points

from napari_sam2.io import LabelStore
from napari_sam2.io.prompt_file import (
    FramePrompt,
    ObjectPrompts,
    PromptFileError,
    PromptSet,
    load_prompts,
    prompt_set_from_records,
    save_prompts,
)


def _write(path, document):
    path.write_text(json.dumps(document))
    return path


def test_json_prompts_load_with_defaults_and_masks_relative_to_the_file(tmp_path):
    (tmp_path / "masks").mkdir()
    mask = np.zeros((20, 30), np.uint16)
    mask[5:9, 10:14] = 3
    tifffile.imwrite(tmp_path / "masks" / "m.tif", mask)
    path = _write(tmp_path / "p.json", {"axis": "z", "position": {"t": 3}, "objects": [
        {"id": 2, "name": "cell A", "prompts": [{"frame": 3, "points": [[1.5, 2], [4, 5]], "labels": [1, 0]},
                                                 {"frame": 9, "box": [1, 2, 10, 12]}]},
        {"id": 1, "prompts": [{"frame": 12, "mask": "masks/m.tif"}, {"frame": 0, "points": [[3, 3]]}]},
    ]})
    prompts = load_prompts(path)
    assert (prompts.axis, prompts.position, prompts.frames) == ("z", {"t": 3}, [0, 3, 9, 12])
    assert [o.id for o in prompts.objects] == [1, 2], "objects sorted by id"
    first, second = prompts.objects
    assert [p.frame for p in first.prompts] == [0, 12] and first.name is None
    assert first.prompts[0].labels.tolist() == [1], "labels default to positive"
    assert first.prompts[1].kind == "mask" and first.prompts[1].mask.sum() == 16
    assert second.prompts[0].points.tolist() == [[1.5, 2.0], [4.0, 5.0]] and second.prompts[1].box == (1, 2, 10, 12)
    prompts.check_fits(13, 20, 30)


def test_clicks_on_one_frame_are_joined_and_a_box_keeps_them(tmp_path):
    path = _write(tmp_path / "p.json", {"objects": [{"id": 1, "prompts": [
        {"frame": 2, "points": [[1, 1]]}, {"frame": 2, "box": [0, 0, 5, 5]}, {"frame": 2, "points": [[3, 3]],
                                                                               "labels": [0]}]}]})
    (merged,) = load_prompts(path).objects[0].prompts
    assert merged.kind == "box" and merged.points.tolist() == [[1, 1], [3, 3]] and merged.labels.tolist() == [1, 0]


def test_save_then_load_gives_the_same_prompts_and_fingerprint(tmp_path):
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    prompts = PromptSet((
        ObjectPrompts(1, "nucleus", (FramePrompt(0, np.array([[2.0, 3.0]]), np.array([1], np.int8)),
                                     FramePrompt(5, box=(1.0, 1.0, 9.0, 9.0)))),
        ObjectPrompts(4, None, (FramePrompt(7, mask=mask),)),
    ), axis="t", position={}, channel=1)
    path = save_prompts(tmp_path / "run" / "prompts.json", prompts)
    document = json.loads(path.read_text())
    assert document["version"] == 1 and document["channel"] == 1
    assert document["objects"][1]["prompts"][0]["mask"] == "prompts.masks/object4_frame7.tif"
    again = load_prompts(path)
    assert again.objects == prompts.objects and again.channel == 1
    assert again.fingerprint() == prompts.fingerprint()
    renamed = PromptSet((ObjectPrompts(1, "other name", prompts.objects[0].prompts), prompts.objects[1]))
    assert renamed.fingerprint() == prompts.fingerprint(), "names do not change what is segmented"
    moved = PromptSet((ObjectPrompts(1, None, (FramePrompt(0, np.array([[2.0, 3.5]]), np.array([1], np.int8)),)),))
    assert moved.fingerprint() != prompts.fingerprint()


def test_prompts_from_label_store_records_round_trip(tmp_path):
    store = LabelStore.create(tmp_path / "l.zarr", (2, 6, 16, 16), dimension_names=("t", "z", "y", "x"))
    view = store.frame_view(axis="z", position={"t": 1})
    store.add_object(3, name="cell")
    view.add_prompt(3, 2, points=[[4, 4], [9, 9]], labels=[1, 0])
    view.add_prompt(3, 4, box=(1, 1, 8, 8))
    prompts = prompt_set_from_records(view.prompts(), names={3: "cell"}, axis="z", position={"t": 1})
    (obj,) = prompts.objects
    assert (obj.id, obj.name, [p.kind for p in obj.prompts]) == (3, "cell", ["points", "box"])
    assert load_prompts(save_prompts(tmp_path / "p.json", prompts)).objects == prompts.objects


@pytest.mark.parametrize("document, message", [
    ({"objects": [{"id": 1, "prompts": [{"frame": 1.5, "points": [[1, 1]]}]}]}, "'frame' must be an integer"),
    ({"objects": [{"id": 1, "prompts": [{"frame": 1, "points": [[1, 1]], "labels": [2]}]}]},
     "point labels are 1 (positive) or 0 (negative), got 2"),
    ({"objects": [{"id": 1, "prompts": [{"frame": 1, "points": [1, 1]}]}]}, "'points' must be [[y, x], ...]"),
    ({"objects": [{"id": 1, "prompts": [{"frame": 1}]}]}, "the prompt has no points, box or mask"),
    ({"objects": [{"id": 1, "prompts": [{"frame": 1, "box": [1, 1, 1, 5]}]}]}, "has no area"),
    ({"objects": [{"id": 1, "prompts": [{"frame": 1, "circle": [1, 1, 1]}]}]}, "unknown keys ['circle']"),
    ({"objects": [{"id": 1, "prompts": []}, {"id": 1, "prompts": []}]}, "object 1: the id is used by two objects"),
    ({"version": 2, "objects": []}, "version 2 is newer"),
])
def test_malformed_json_prompts_are_refused_with_the_place_named(tmp_path, document, message):
    with pytest.raises(PromptFileError, match="p.json") as err:
        load_prompts(_write(tmp_path / "p.json", document))
    assert message in str(err.value)


def test_check_fits_names_the_object_frame_and_problem(tmp_path):
    prompts = load_prompts(_write(tmp_path / "p.json", {"objects": [
        {"id": 1, "prompts": [{"frame": 2, "points": [[-0.5, 0], [15.5, 19.5]]}]}]}))
    prompts.check_fits(3, 16, 20)  # napari's half-pixel edge tolerance
    with pytest.raises(PromptFileError, match=r"object 1, frame 2: the frame is outside the stack \(2 frames along"):
        prompts.check_fits(2, 16, 20, axis_name="z")
    with pytest.raises(PromptFileError, match=r"point \(y=15.5, x=19.5\) lies outside the frame of 15 × 20"):
        prompts.check_fits(3, 15, 20)


def test_a_napari_points_csv_of_a_4d_layer_gives_clicks_on_the_segmented_plane(tmp_path):
    data = np.array([[1, 2, 5.5, 6], [1, 2, 7, 8], [1, 4, 3, 3]], dtype=float)
    features = {"object_id": np.array([5, 5, 9]), "positive": np.array([True, False, True])}
    napari_write_points(str(tmp_path / "points.csv"), data, {"properties": features})
    prompts = load_prompts(tmp_path / "points.csv", axes=("t", "z", "y", "x"), frame_axis="z", position={"t": 1})
    assert [(o.id, [(p.frame, p.points.tolist(), p.labels.tolist()) for p in o.prompts]) for o in prompts.objects] == [
        (5, [(2, [[5.5, 6.0], [7.0, 8.0]], [1, 0])]), (9, [(4, [[3.0, 3.0]], [1])])]
    assert (prompts.axis, prompts.position) == ("z", {"t": 1})
    with pytest.raises(PromptFileError, match=r"row 2: the point lies at t=1, but the segmented plane is t=0"):
        load_prompts(tmp_path / "points.csv", axes=("t", "z", "y", "x"), frame_axis="z", position={"t": 0})
    with pytest.raises(PromptFileError, match=r"points have 4 coordinates but the stack's label axes are"):
        load_prompts(tmp_path / "points.csv", axes=("t", "y", "x"), frame_axis="t")


def test_a_csv_without_the_feature_columns_says_which_are_missing(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("index,axis-0,axis-1,axis-2,label\n0,1,2,3,1\n")
    with pytest.raises(PromptFileError, match=r"missing feature column\(s\) \['object_id', 'positive'\]"):
        load_prompts(path)
    path.write_text("frame,y,x,object_id,positive\n1,2,3,4,yes\n")
    assert load_prompts(path).objects[0].prompts[0].points.tolist() == [[2.0, 3.0]]
