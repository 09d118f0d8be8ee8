"""Faults during ``napari-sam2 segment``: SIGKILL at every resume point, a store whose creation was cut, a full disk,
a file-size limit, a read-only folder. Each ends either in the labels of an uninterrupted run (after re-running) or
in one line naming the problem and the path, a non-zero exit, and every byte already in the label store unchanged.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests.cli.helpers import (
    blob_stack,
    cli_env,
    command,
    labels_of,
    model_args,
    one_error_line,
    run_cli,
    run_record,
    snapshot,
    write_json,
)

REPO = Path(__file__).resolve().parents[2]
FRAMES = 4


@dataclass
class SmallJob:
    """Four frames, two objects prompted on frame ``prompt_frame``; ``args(out)`` runs it with a state every frame."""

    stack: Path
    prompts: Path
    checkpoint: Path
    cache: Path

    def args(self, out: Path, *extra) -> list:
        return ["segment", self.stack, "--prompts", self.prompts, "--out", out, *model_args(self.checkpoint),
                "--save-every", "1", "--quiet", *extra]


def _small_job(folder: Path, checkpoint: Path, cache: Path, prompt_frame: int) -> SmallJob:
    stack = folder / "movie.tif"
    if not stack.exists():
        tifffile.imwrite(stack, blob_stack(FRAMES), metadata={"axes": "TYX"})
    prompts = write_json(folder / f"prompts_{prompt_frame}.json", {"objects": [
        {"id": 1, "prompts": [{"frame": prompt_frame, "points": [[22, 17]]}]},
        {"id": 2, "prompts": [{"frame": prompt_frame, "box": [31, 33, 46, 49]}]},
    ]})
    return SmallJob(stack, prompts, checkpoint, cache)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fault_job")


@pytest.fixture(scope="module")
def both(inputs, checkpoint, cache) -> tuple[SmallJob, np.ndarray]:
    """The job prompted on frame 1, run forward and backward without interruption: (job, its labels)."""
    job = _small_job(inputs, checkpoint, cache, prompt_frame=1)
    return job, _uninterrupted(job, inputs)


def _uninterrupted(job: SmallJob, folder: Path, *extra) -> np.ndarray:
    out = folder / "reference.zarr"
    result = run_cli(*job.args(out, *extra), cache=job.cache)
    assert result.returncode == 0, result.stderr
    return labels_of(out)


def killed_run(kind: str, args: list, cache: Path, *, at: str = "", skip=()) -> subprocess.CompletedProcess:
    """Run the command through ``tests.cli.killed_run`` (see there): SIGKILL after the first step of ``kind``
    whose name contains ``at`` and is not in ``skip``."""
    env = cli_env(cache)
    env.update(NAPARI_SAM2_TEST_AT=at, NAPARI_SAM2_TEST_SKIP=json.dumps(list(skip)),
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "tests.cli.killed_run", kind, "--", *[str(a) for a in args]]
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


def killed_at(result: subprocess.CompletedProcess) -> str:
    """The step a killed run died after."""
    assert result.returncode == -signal.SIGKILL, result.stderr
    return result.stderr.strip().splitlines()[-1].removeprefix("killed after ")


# ------------------------------------------------------------------------------------------------ backward from 0
def test_backward_from_frame_zero_segments_the_prompted_frame(inputs, checkpoint, cache, tmp_path):
    job = _small_job(inputs, checkpoint, cache, prompt_frame=0)
    out = tmp_path / "labels.zarr"
    result = run_cli(*job.args(out, "--direction", "backward"), cache=cache)
    assert result.returncode == 0, result.stderr
    labels = labels_of(out)
    assert set(np.unique(labels[0])) == {0, 1, 2}, "the prompted frame holds both objects"
    assert not labels[1:].any(), "a backward pass from frame 0 writes frame 0 only"
    assert run_record(out)["frames_written"] == 1


def test_a_kill_after_saving_backward_continue_at_frame_zero_resumes_exactly(inputs, checkpoint, cache, tmp_path):
    job = _small_job(inputs, checkpoint, cache, prompt_frame=3)
    reference = _uninterrupted(job, tmp_path, "--direction", "backward")
    assert reference[0].any(), "frame 0 has labels in the reference"
    out = tmp_path / "labels.zarr"
    point = killed_at(killed_run("resume", job.args(out, "--direction", "backward"), cache, at='"next_frame": 0,'))
    assert point.startswith("commit") and run_record(out)["next_frame"] == 0 and run_record(out)["pass"] == 0
    result = run_cli(*job.args(out, "--direction", "backward"), cache=cache)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(labels_of(out), reference)


# ------------------------------------------------------------------------------------------------ every resume point
@pytest.mark.slow
def test_a_kill_at_every_resume_point_then_a_re_run_gives_the_uninterrupted_labels(both, tmp_path):
    """Run after run, each killed right after the first resume point that no earlier run was killed at (a record
    saved, or a state array written before the record names it): every point of a "both" run is visited once."""
    job, reference = both
    out = tmp_path / "labels.zarr"
    visited: list[str] = []
    for _ in range(30):
        result = killed_run("resume", job.args(out), job.cache, skip=visited)
        if result.returncode == 0:
            break
        visited.append(killed_at(result))
    else:
        pytest.fail(f"the run never finished; killed after {visited}")
    np.testing.assert_array_equal(labels_of(out), reference)
    kinds = [name.split(" ")[0] for name in visited]
    # forward from frame 1 over 4 frames: states before frames 2 and 3, the seed, the backward state before frame 0
    assert kinds.count("state_array") == 3 and kinds.count("seed_array") == 1, visited
    progress = [json.loads(name.split(" ", 1)[1]) for name in visited if name.startswith("commit")]
    assert {(p["pass"], p["next_frame"]) for p in progress} >= {(0, 2), (0, 3), (1, 1), (1, 0)}, visited
    assert progress[-1]["complete"] and run_record(out)["complete"], "the last point: the record saying done"


# ------------------------------------------------------------------------------------------------ store creation
def test_a_run_killed_while_creating_the_label_store_is_completed_by_the_next_run(both, tmp_path):
    job, reference = both
    out = tmp_path / "labels.zarr"
    assert killed_at(killed_run("file", job.args(out), job.cache, at="file zarr.json")) == "file zarr.json"
    assert [p.name for p in out.iterdir()] == ["zarr.json"], "the group is written, its labels array is not"
    result = run_cli(*job.args(out), cache=job.cache)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(labels_of(out), reference)


# ------------------------------------------------------------------------------------------------ disk faults
@pytest.fixture(scope="module")
def killed_at_frame_2(both, inputs) -> Path:
    """LABELS of the "both" job killed right after saving "forward pass, continue at frame 2" (copy it to use it)."""
    job, _ = both
    out = inputs / "killed_at_frame_2.zarr"
    killed_at(killed_run("resume", job.args(out), job.cache, at='"next_frame": 2,'))
    record = run_record(out)
    assert (record["pass"], record["next_frame"]) == (0, 2)
    return out


def _killed_at_frame_2(partial: Path, out: Path) -> dict:
    """A copy at ``out`` of the LABELS killed at frame 2; returns its run record."""
    shutil.copytree(partial, out)
    return run_record(out)


def _fails_keeping_every_byte(job: SmallJob, out: Path, before: dict[str, str], result) -> str:
    """The failed run's one error line, after checking that every file LABELS had is unchanged."""
    assert result.returncode == 1, result.stderr
    line = one_error_line(result)
    after = snapshot(out)
    assert {name: after.get(name) for name in before} == before, "a byte already in the label store changed"
    assert not [name for name in after if ".sam2-tmp" in name], "a temporary file was left"
    return line


def _finishes_as_uninterrupted(job: SmallJob, out: Path, reference: np.ndarray) -> None:
    result = run_cli(*job.args(out), cache=job.cache)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(labels_of(out), reference)


def test_a_file_size_limit_while_saving_the_resume_state_ends_in_one_line(both, killed_at_frame_2, tmp_path):
    job, reference = both
    out = tmp_path / "labels.zarr"
    limit = _killed_at_frame_2(killed_at_frame_2, out)["state_bytes"] // 2  # room for a frame's labels, not for a state
    before = snapshot(out)

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run(command(*job.args(out)), env=cli_env(job.cache), capture_output=True, text=True,
                            timeout=300, preexec_fn=limited)
    line = _fails_keeping_every_byte(job, out, before, result)
    assert f"cannot save the resume state in {out / 'runs' / 't'}" in line
    assert "file size limit" in line and "File too large" in line
    _finishes_as_uninterrupted(job, out, reference)


def _private_mounts() -> bool:
    """Whether this process may make a private mount namespace (root, or a kernel allowing it)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "tmpfs", "/mnt"],
                           capture_output=True)
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(not _private_mounts(), reason="no private mount namespace (unshare -m) here")


def _run_in_private_mounts(script: str, job: SmallJob, **names: Path) -> subprocess.CompletedProcess:
    """``script`` (sh) in a private mount namespace; ``$RUN`` is the command line of ``job``, ``$NAME`` each path."""
    env = cli_env(job.cache)
    env.update({key.upper(): str(path) for key, path in names.items()})
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], env=env,
                          capture_output=True, text=True, timeout=300)


def _run_line(job: SmallJob, out: str) -> str:
    """The shell command line of ``job`` writing to ``out`` (a path, or a shell word such as ``"$DISK/x"``)."""
    return " ".join(out if a == out else shlex.quote(a) for a in command(*job.args(out)))


@needs_mounts
def test_a_full_disk_while_saving_the_resume_state_ends_in_one_line(both, killed_at_frame_2, tmp_path):
    """LABELS on a tmpfs with room for a frame's labels but not for the next state: a real ENOSPC."""
    job, reference = both
    out, disk, copy = tmp_path / "labels.zarr", tmp_path / "disk", tmp_path / "after.zarr"
    _killed_at_frame_2(killed_at_frame_2, out)
    disk.mkdir()
    before = snapshot(out)
    run = _run_line(job, '"$DISK/labels.zarr"')
    script = ('mount -t tmpfs tmpfs "$DISK" && cp -a "$OUT" "$DISK/labels.zarr" || exit 9\n'
              'used=$(df -k --output=used "$DISK" | tail -n 1)\n'
              'mount -o remount,size=$((used + 64))k "$DISK" || exit 9\n'
              f'{run}\ncode=$?; cp -a "$DISK/labels.zarr" "$COPY"; exit $code\n')
    result = _run_in_private_mounts(script, job, disk=disk, out=out, copy=copy)
    line = _fails_keeping_every_byte(job, copy, before, result)
    assert f"cannot save the resume state in {disk / 'labels.zarr' / 'runs' / 't'}" in line
    assert "the disk is full (No space left on device)" in line
    _finishes_as_uninterrupted(job, out, reference)


@needs_mounts
def test_a_disk_too_full_to_create_the_label_store_leaves_nothing_half_made(inputs, checkpoint, cache, tmp_path):
    job = _small_job(inputs, checkpoint, cache, prompt_frame=1)
    disk = tmp_path / "disk"
    disk.mkdir()
    run = _run_line(job, '"$DISK/labels.zarr"')
    script = f'mount -t tmpfs -o size=12k tmpfs "$DISK" || exit 9\n{run}\ncode=$?; ls -AR "$DISK"; exit $code\n'
    result = _run_in_private_mounts(script, job, disk=disk)
    assert result.returncode == 1
    assert result.stdout.split() in ([f"{disk}:"], [f"{disk}:", "labels.zarr", f"{disk}/labels.zarr:"]), \
        "nothing is left on the disk but the (empty) LABELS folder"
    line = one_error_line(result)
    assert f"cannot create a label store at {disk / 'labels.zarr'}: the disk is full" in line


@needs_mounts
def test_a_read_only_label_store_is_refused_before_any_work(both, killed_at_frame_2, tmp_path):
    job, reference = both
    out = tmp_path / "labels.zarr"
    _killed_at_frame_2(killed_at_frame_2, out)
    before = snapshot(out)
    script = f'mount --bind "$OUT" "$OUT" && mount -o remount,bind,ro "$OUT" || exit 9\n{_run_line(job, str(out))}\n'
    result = _run_in_private_mounts(script, job, out=out)
    line = _fails_keeping_every_byte(job, out, before, result)
    assert f"{out}: the location is read-only" in line and "nothing was changed" in line
    _finishes_as_uninterrupted(job, out, reference)


# ------------------------------------------------------------------------------------------------ damaged input
def test_a_cut_imagej_tiff_is_refused_in_one_line_before_any_work(inputs, checkpoint, cache, tmp_path):
    job = _small_job(inputs, checkpoint, cache, prompt_frame=1)
    whole, cut, out = tmp_path / "whole.tif", tmp_path / "cut.tif", tmp_path / "labels.zarr"
    tifffile.imwrite(whole, blob_stack(FRAMES), imagej=True, metadata={"axes": "TYX"})
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    result = run_cli("segment", cut, "--prompts", job.prompts, "--out", out, *model_args(checkpoint), cache=cache)
    assert result.returncode == 1
    line = one_error_line(result)  # nothing else on stderr: no log lines of tifffile's
    assert f"{cut} is truncated or corrupt: its ImageJ metadata announces {FRAMES} images" in line
    assert not out.exists()
