"""``napari-sam2 segment --axis t --volume-axis z``: objects in 3D over time from prompts on (t, z) planes, into the
label store of the whole T,Z,Y,X stack; resumable at every resume point; bad input in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from benchmarks.synthetic_volumes import central_click, nuclei_4d

from tests.cli.helpers import labels_of, model_args, one_error_line, run_cli, run_record, write_json
from tests.cli.test_faults import killed_at, killed_run

T, Z, SIDE = 3, 4, 48
KEY = "t+z"


@pytest.fixture(scope="module")
def job(tmp_path_factory, checkpoint, cache):
    """A TZYX TIFF with two nuclei, a prompt file clicking each on its widest plane at t=0, and the uninterrupted
    run's labels."""
    folder = tmp_path_factory.mktemp("volume_job")
    data = nuclei_4d(T, Z, SIDE, num_nuclei=2, radius=8.0, z_step=3.0, seed=3)
    stack = folder / "embryo.tif"
    tifffile.imwrite(stack, data.image, imagej=True, metadata={"axes": "TZYX"})
    clicks = {k: central_click(data.truth[0], k) for k in (1, 2)}
    prompts = write_json(folder / "prompts.json", {"objects": [
        {"id": k, "prompts": [{"frame": 0, "z": z, "points": [[y, x]]}]} for k, (z, y, x) in clicks.items()]})
    out = folder / "reference.zarr"
    args = ["segment", stack, "--axis", "t", "--volume-axis", "z", "--prompts", prompts, "--quiet",
            *model_args(checkpoint)]
    result = run_cli(*args, "--out", out, "--export", "ctc", "--export-path", folder / "ctc", cache=cache)
    assert result.returncode == 0, result.stderr
    return {"args": args, "cache": cache, "labels": labels_of(out), "clicks": clicks, "folder": folder,
            "out": out}


def test_every_t_and_z_plane_is_written_and_the_run_is_recorded_complete(job):
    labels = job["labels"]
    assert labels.shape == (T, Z, SIDE, SIDE)
    for t in range(T):  # random weights give meaningless masks, but an object on every t and on several planes
        assert sum(bool(labels[t, z].any()) for z in range(Z)) >= 2, t
    assert {1, 2} <= set(np.unique(labels).tolist())
    record = run_record(job["out"], KEY)
    assert record["complete"] and record["state"] is None


def test_the_cell_tracking_challenge_export_has_one_3d_mask_per_t_and_the_tracks(job):
    labels, ctc = job["labels"], job["folder"] / "ctc"
    masks = [tifffile.imread(ctc / f"mask{t:03d}.tif") for t in range(T)]
    assert all(m.shape == (Z, SIDE, SIDE) and m.dtype == np.uint16 for m in masks)
    tracks = [[int(v) for v in line.split()] for line in (ctc / "res_track.txt").read_text().splitlines()]
    for t, mask in enumerate(masks):  # the same pixels, each object under the label of its track at t
        np.testing.assert_array_equal(mask > 0, labels[t] > 0)
        for label in set(np.unique(mask).tolist()) - {0}:
            assert any(lab == label and begin <= t <= end for lab, begin, end, _ in tracks), (t, label, tracks)


def test_a_run_killed_after_a_saved_t_resumes_to_the_uninterrupted_labels(job, tmp_path):
    out = tmp_path / "labels.zarr"
    point = killed_at(killed_run("resume", [*job["args"], "--out", out], job["cache"], at='"next_t": 1,'))
    assert point.startswith("commit")
    assert run_record(out, KEY)["next_t"] == 1
    result = run_cli(*job["args"], "--out", out, cache=job["cache"])
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(labels_of(out), job["labels"])


@pytest.mark.slow
def test_a_kill_at_every_resume_point_then_a_re_run_gives_the_uninterrupted_labels(job, tmp_path):
    out = tmp_path / "labels.zarr"
    visited: list[str] = []
    for _ in range(20):
        result = killed_run("resume", [*job["args"], "--out", out], job["cache"], skip=visited)
        if result.returncode == 0:
            break
        visited.append(killed_at(result))
    else:
        pytest.fail(f"the run never finished; killed after {visited}")
    np.testing.assert_array_equal(labels_of(out), job["labels"])
    kinds = [name.split(" ")[0] for name in visited]
    assert kinds.count("state_array") == T, visited  # one state per t, each also killed before the record names it
    progress = [json.loads(name.split(" ", 1)[1]) for name in visited if name.startswith("commit")]
    assert {p["next_t"] for p in progress} >= {1, 2, 3}, visited


def test_a_prompt_without_its_plane_is_refused_in_one_line(job, tmp_path):
    no_z = {"objects": [{"id": 1, "prompts": [{"frame": 0, "points": [[9, 9]]}]}]}
    prompts = write_json(tmp_path / "no_z.json", no_z)
    args = [a if a != job["args"][job["args"].index("--prompts") + 1] else prompts for a in job["args"]]
    out = tmp_path / "labels.zarr"
    line = one_error_line(run_cli(*args, "--out", out, cache=job["cache"]))
    assert "no_z.json" in line and '"z"' in line
    assert not out.exists()


def test_a_plane_outside_the_stack_is_refused_in_one_line(job, tmp_path):
    prompts = write_json(tmp_path / "far.json", {"objects": [{"id": 1, "prompts": [{"frame": 0, "z": Z,
                                                                                     "points": [[9, 9]]}]}]})
    args = [a if a != job["args"][job["args"].index("--prompts") + 1] else prompts for a in job["args"]]
    line = one_error_line(run_cli(*args, "--out", tmp_path / "labels.zarr", cache=job["cache"]))
    assert f"z={Z} is outside" in line and "far.json" in line


def test_volume_axis_with_auto_is_refused_in_one_line(job, tmp_path):
    line = one_error_line(run_cli(*job["args"], "--auto", "--out", tmp_path / "l.zarr", cache=job["cache"]))
    assert "--auto" in line
