"""Bad input stops ``napari-sam2 segment`` with one clear line and no traceback, and leaves LABELS as it was."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile
import torch

from tests.cli.helpers import (
    MODEL,
    blob_stack,
    cli_env,
    labels_of,
    model_args,
    one_error_line,
    run_cli,
    run_record,
    snapshot,
    write_json,
)


@pytest.fixture
def labels(job, tmp_path):
    """A copy of the reference run's label store, to be left untouched by every failing run."""
    out = tmp_path / "labels.zarr"
    shutil.copytree(job.out, out)
    return out


def _fails(job, args, out, code=1):
    before = snapshot(out)
    result = run_cli(*args, cache=job.cache)
    assert result.returncode == code, result.stderr
    line = one_error_line(result)
    assert snapshot(out) == before, "LABELS changed"
    return line


BAD_PROMPTS = {
    "frame_outside": ({"objects": [{"id": 1, "prompts": [{"frame": 24, "points": [[5, 5]]}]}]},
                      "object 1, frame 24: the frame is outside the stack (24 frames along 't', 0 … 23)"),
    "object_id_zero": ({"objects": [{"id": 0, "prompts": [{"frame": 1, "points": [[5, 5]]}]}]},
                       "object 0: object ids are label values from 1 to 4294967295"),
    "point_outside": ({"objects": [{"id": 1, "prompts": [{"frame": 1, "points": [[5, 5], [70, 3]]}]}]},
                      "point (y=70, x=3) lies outside the frame of 64 × 64 pixels"),
    "box_outside": ({"objects": [{"id": 1, "prompts": [{"frame": 1, "box": [-9, 0, 10, 10]}]}]},
                    "box corner (y=-9, x=0) lies outside the frame"),
    "no_objects": ({"objects": []}, "no objects to segment (the prompt list is empty)"),
    "object_without_prompts": ({"objects": [{"id": 5, "prompts": []}]}, "object 5 has no prompts"),
    "missing_mask": ({"objects": [{"id": 5, "prompts": [{"frame": 1, "mask": "nowhere.tif"}]}]},
                     "nowhere.tif does not exist"),
    "not_json_objects": ({"cells": []}, "expected a JSON object with an \"objects\" list"),
}


@pytest.mark.parametrize("case", sorted(BAD_PROMPTS))
def test_prompts_outside_the_stack_or_empty_are_refused(job, labels, tmp_path, case):
    document, message = BAD_PROMPTS[case]
    prompts = write_json(tmp_path / "bad.json", document)
    line = _fails(job, ["segment", job.stack, "--prompts", prompts, "--out", labels, *model_args(job.checkpoint)],
                  labels)
    assert message in line and str(prompts) in line


@pytest.mark.parametrize("rows, message", [
    ("0,3.0,10.0,10.0,1,True\n1,2.5,9.0,9.0,1,False\n", "row 3: axis-0 = 2.5 is not a whole frame index"),
    ("0,3.0,10.0,64.2,1,True\n", "object 1, frame 3: point (y=10, x=64.2) lies outside the frame"),
    ("0,30.0,10.0,10.0,1,True\n", "object 1, frame 30: the frame is outside the stack"),
])
def test_napari_csv_points_outside_the_stack_are_refused(job, labels, tmp_path, rows, message):
    csv = tmp_path / "points.csv"
    csv.write_text("index,axis-0,axis-1,axis-2,object_id,positive\n" + rows)
    line = _fails(job, ["segment", job.stack, "--prompts", csv, "--out", labels, *model_args(job.checkpoint)], labels)
    assert message in line


@pytest.mark.parametrize("case", ["missing", "not_a_tiff"])
def test_a_missing_or_unreadable_stack_is_refused(job, labels, tmp_path, case):
    stack = tmp_path / "movie.tif"
    if case == "not_a_tiff":
        stack.write_bytes(b"this is no TIFF at all")
    line = _fails(job, ["segment", stack, "--prompts", job.prompts, "--out", labels, *model_args(job.checkpoint)],
                  labels)
    assert str(stack) in line
    assert ("does not exist" if case == "missing" else "not a readable TIFF") in line


def test_a_label_store_of_another_stack_is_refused(job, labels, tmp_path):
    other = tmp_path / "other.tif"
    tifffile.imwrite(other, blob_stack(12), metadata={"axes": "TYX"})
    line = _fails(job, ["segment", other, "--prompts", job.prompts, "--out", labels, *model_args(job.checkpoint)],
                  labels)
    assert "has shape (24, 64, 64)" in line and "(12, 64, 64)" in line and "belongs to another image" in line


def test_a_folder_that_is_no_label_store_is_refused(job, tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    line = _fails(job, job.args(out), out)
    assert "not a zarr v3 group, so not a label store" in line


def test_an_unknown_model_is_a_usage_error(job, labels):
    args = ["segment", job.stack, "--prompts", job.prompts, "--out", labels, "--model", "sam3_giant",
            "--checkpoint", job.checkpoint]
    assert "unknown model 'sam3_giant'; choose one of: sam2_hiera_tiny" in _fails(job, args, labels, code=2)


def test_a_checkpoint_of_another_model_is_refused(job, labels):
    args = ["segment", job.stack, "--prompts", job.prompts, "--out", labels, "--model", "sam2.1_hiera_small",
            "--checkpoint", job.checkpoint]
    line = _fails(job, args, labels)
    assert "does not fit model sam2.1_hiera_small; it looks like a sam2.1_hiera_tiny checkpoint" in line


def test_no_checkpoint_offline_says_where_to_put_one(job, labels):
    args = ["segment", job.stack, "--prompts", job.prompts, "--out", labels, "--model", MODEL]
    line = _fails(job, args, labels)
    assert f"no checkpoint for {MODEL}" in line and "--random-weights" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_asking_for_cuda_without_a_gpu_is_refused(job, labels):
    line = _fails(job, job.args(labels, "--device", "cuda"), labels)
    assert "device 'cuda' was asked for, but torch sees no CUDA GPU" in line


def test_other_inputs_on_a_finished_store_are_refused_until_restart(job, labels, tmp_path):
    prompts = write_json(tmp_path / "new.json",
                         {"objects": [{"id": 1, "prompts": [{"frame": 20, "points": [[40, 30]]}]}]})
    args = ["segment", job.stack, "--prompts", prompts, "--out", labels, *model_args(job.checkpoint),
            "--direction", "forward"]
    line = _fails(job, args, labels)
    assert "holds a finished run over these frames made with other inputs (direction, prompts)" in line
    assert "--restart" in line
    result = run_cli(*args, "--restart", cache=job.cache)
    assert result.returncode == 0, result.stderr
    restarted = labels_of(labels)
    assert not restarted[:20].any(), "the earlier run's labels are gone"
    assert set(np.unique(restarted[20:])) <= {0, 1} and restarted[20].any()
    assert run_record(labels)["inputs"]["direction"] == "forward"


@pytest.mark.parametrize("args, message", [
    (["--position", "t3"], "--position takes NAME=INDEX pairs"),
    (["--export", "tiff"], "--export tiff needs --export-path PATH"),
    (["--image-size", "100"], "image_size must be a multiple of 32"),
    (["--device", "gpu"], "argument --device: 'gpu' is not a device"),
])
def test_bad_options_are_usage_errors(job, labels, args, message):
    assert message in _fails(job, job.args(labels, *args), labels, code=2)


def test_running_out_of_device_memory_stops_with_one_line_and_the_rerun_completes(job, tmp_path, monkeypatch,
                                                                                  capsys):
    """A frame that does not fit on the device even without the session's caches: one error line (after the
    warning that the caches were given up), no traceback, the frames written so far kept; the same command, once
    memory is there, completes the run with the labels of an uninterrupted one."""
    from napari_sam2.cli.main import main
    from napari_sam2.engine.tracker import Tracker

    for key, value in cli_env(job.cache).items():
        monkeypatch.setenv(key, value)
    real = Tracker.run_tracking_groups

    def out_of_memory_from_frame_14(self, groups, frame, upcoming=()):
        if frame >= 14:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return real(self, groups, frame, upcoming)

    monkeypatch.setattr(Tracker, "run_tracking_groups", out_of_memory_from_frame_14)
    out = tmp_path / "labels.zarr"
    args = [str(a) for a in job.args(out)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("napari-sam2: error: out of CPU memory on frame 14 with 3 objects, even one object at "
                           "a time without the session's device caches"), err
    assert last.endswith(f"the labels stored so far in {out} are intact"), last
    written = labels_of(out)
    # the forward pass from frame 4 stored frames 4 … 13 (frame 4 is written once more by the backward pass)
    assert [t for t in range(len(written)) if written[t].any()] == list(range(4, 14))
    np.testing.assert_array_equal(written[5:14], job.labels[5:14])

    monkeypatch.setattr(Tracker, "run_tracking_groups", real)
    assert main(args) == 0
    np.testing.assert_array_equal(labels_of(out), job.labels)
