"""``napari-sam2 segment`` on a TIFF time-lapse: the label store it writes, resuming after SIGKILL, SIGINT and
SIGTERM with the very labels of an uninterrupted run, re-runs, and exports."""

from __future__ import annotations

import shutil
import signal

import numpy as np
import pytest
import tifffile
import zarr

from napari_sam2.io import LabelStore
from tests.cli.helpers import FRAMES, SIDE, interrupt_when, labels_of, run_cli, run_record, snapshot


def test_a_run_writes_a_label_store_with_the_stacks_shape_and_its_objects(job):
    labels = job.labels
    assert labels.shape == (FRAMES, SIDE, SIDE) and labels.dtype == np.uint32
    assert set(np.unique(labels)) == {0, 1, 2, 7}, "every prompted object is somewhere, as is background"
    assert all(len(np.unique(frame)) > 1 for frame in labels), "every frame was written"
    store = LabelStore.open(job.out, read_only=True)
    assert {i: o.name for i, o in store.objects.items()} == {1: "cell A", 2: "cell B", 7: "object 7"}
    prompts = {(p.obj_id, p.frame): p for p in store.prompts()}
    assert set(prompts) == {(1, 4), (2, 4), (7, 10)}
    assert prompts[(1, 4)].labels.tolist() == [1, 0] and prompts[(2, 4)].box == (31, 33, 46, 49)
    assert prompts[(7, 10)].mask.sum() > 0
    record = run_record(job.out)
    assert record["complete"] and record["passes"] == ["forward", "backward"] and record["start"] == 4
    assert sorted(p.name for p in (job.out / "runs" / "t").iterdir()) == ["zarr.json"], "no state is left over"


def test_re_running_a_finished_run_computes_nothing_and_changes_nothing(job):
    before = snapshot(job.out)
    result = run_cli(*job.args(job.out), cache=job.cache)
    assert result.returncode == 0, result.stderr
    assert "already complete" in result.stderr
    assert result.stdout.strip() == str(job.out)
    assert snapshot(job.out) == before


def test_killed_twice_then_re_run_gives_the_labels_of_an_uninterrupted_run(job, tmp_path):
    """SIGKILL in the forward pass beyond the frames the backward pass reads, then in the backward pass."""
    out = tmp_path / "labels.zarr"
    args = job.args(out, "--save-every", "1")
    code, _, seen = interrupt_when(args, job.cache, out, lambda r: r["pass"] == 0 and (r["next_frame"] or 0) >= 21)
    assert code == -signal.SIGKILL and seen is not None, "the run ended before it could be killed"
    assert run_record(out)["seed"] is not None
    code, _, seen = interrupt_when(args, job.cache, out, lambda r: r["pass"] == 1 and (r["next_frame"] or 9) <= 2)
    assert code == -signal.SIGKILL and seen is not None
    assert not run_record(out)["complete"]
    result = run_cli(*args, cache=job.cache)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr
    np.testing.assert_array_equal(labels_of(out), job.labels)


def test_ctrl_c_and_sigterm_stop_cleanly_and_the_re_run_finishes_the_same(job, tmp_path):
    out = tmp_path / "labels.zarr"
    args = job.args(out)
    code, stderr, seen = interrupt_when(args, job.cache, out, lambda r: r["frames_written"] >= 3, signal.SIGINT)
    assert seen is not None and code == 130, stderr
    assert "Traceback" not in stderr
    assert "stopped by Ctrl-C" in stderr.splitlines()[-1] and "run the same command again" in stderr
    record = run_record(out)
    assert record["state"] is not None and record["pass"] == 0
    code, stderr, seen = interrupt_when(args, job.cache, out, lambda r: r["pass"] == 1, signal.SIGTERM)
    assert seen is not None and code == 143, stderr
    assert "Traceback" not in stderr and "stopped by SIGTERM" in stderr
    result = run_cli(*args, cache=job.cache)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(labels_of(out), job.labels)


@pytest.mark.parametrize("fmt", ["tiff", "ctc", "ome-zarr"])
def test_a_finished_run_exports_its_labels_once(job, tmp_path, fmt):
    out = tmp_path / "labels.zarr"
    shutil.copytree(job.out, out)
    target = tmp_path / {"tiff": "labels.tif", "ctc": "01_RES", "ome-zarr": "movie.ome.zarr"}[fmt]
    result = run_cli(*job.args(out, "--export", fmt, "--export-path", target), cache=job.cache)
    assert result.returncode == 0, result.stderr
    if fmt == "tiff":
        np.testing.assert_array_equal(tifffile.imread(target), job.labels)
    elif fmt == "ctc":
        masks = sorted(target.glob("mask*.tif"))
        assert len(masks) == FRAMES and (target / "res_track.txt").is_file()
        np.testing.assert_array_equal(tifffile.imread(masks[5]) > 0, job.labels[5] > 0)
    else:
        np.testing.assert_array_equal(zarr.open_group(target, mode="r")["labels/sam2/0"][:], job.labels)
    if fmt == "tiff":
        again = run_cli(*job.args(out, "--export", fmt, "--export-path", target), cache=job.cache)
        assert again.returncode == 0 and "already written" in again.stderr


def test_lost_patience_is_part_of_the_run_and_a_different_value_is_refused(job, tmp_path):
    out = tmp_path / "labels.zarr"
    result = run_cli(*job.args(out, "--lost-patience", "2"), cache=job.cache)
    assert result.returncode == 0, result.stderr
    record = run_record(out)
    assert record["complete"] and record["inputs"]["lost_patience"] == 2
    before = snapshot(out)
    other = run_cli(*job.args(out, "--lost-patience", "5"), cache=job.cache)
    assert other.returncode != 0 and "lost_patience" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    assert snapshot(out) == before
