"""``napari-sam2 batch``: stacks spread over Dask workers give the labels of serial ``segment`` runs, also when a worker
is killed mid-stack; a broken stack is reported in one line while the others finish; the SLURM job script comes from
a config file; INPUTs (folders, globs, manifests) name their label stores without collisions.

One local cluster of two worker processes (built by the command's own ``batch_cluster``) serves the tests that run
stacks; ``tests/cli/batch_hook`` (on the workers' PYTHONPATH) kills a worker when a test asks it to.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile

pytest.importorskip("distributed")
pytest.importorskip("dask_jobqueue")

from napari_sam2.cli.batch import plan_jobs, segment_has_auto  # noqa: E402
from napari_sam2.cli.batch_cluster import local_cluster, read_config, slurm_cluster, worker_envs  # noqa: E402
from napari_sam2.cli.batch_inputs import expand_inputs  # noqa: E402
from napari_sam2.cli.main import build_parser, main  # noqa: E402
from tests.cli.helpers import blob_stack, cli_env, command, labels_of, model_args, write_json  # noqa: E402

HOOK = Path(__file__).with_name("batch_hook")
FRAMES = 4
STACKS = 4


def write_stack(path: Path, frames: np.ndarray) -> None:
    tifffile.imwrite(path, frames, metadata={"axes": "TYX"}, photometric="minisblack")


@pytest.fixture(scope="module")
def batch_inputs(tmp_path_factory, checkpoint, cache):
    """Four small stacks (different blobs) in a folder, one prompt file, and each stack's serial segment run."""
    folder = tmp_path_factory.mktemp("batch")
    stacks = folder / "stacks"
    stacks.mkdir()
    for i in range(STACKS):
        write_stack(stacks / f"well{i}.tif", blob_stack(FRAMES, seed=10 + i))
    prompts = write_json(folder / "prompts.json", {"objects": [
        {"id": 1, "prompts": [{"frame": 1, "points": [[22, 17]]}]},
        {"id": 2, "prompts": [{"frame": 1, "box": [31, 33, 46, 49]}]},
    ]})
    os.environ.update(NAPARI_SAM2_CACHE=str(cache), HF_HUB_OFFLINE="1")  # the in-process serial runs
    serial = {}
    for i in range(STACKS):
        out = folder / "serial" / f"well{i}.zarr"
        assert main(["segment", str(stacks / f"well{i}.tif"), "--prompts", str(prompts), "--out", str(out),
                     *model_args(checkpoint), "--device", "cpu", "--quiet"]) == 0
        serial[f"well{i}"] = labels_of(out)
    assert all(serial[k].any() for k in serial)  # the model finds objects: equality below means something
    return folder, stacks, prompts, serial


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, cache):
    """Two local worker processes, one CPU thread each, as ``--workers 2`` makes them, with the kill hook."""
    kill_file = tmp_path_factory.mktemp("kill") / "kill.json"
    env = cli_env(cache)
    extra = {"PYTHONPATH": os.pathsep.join([str(HOOK), env.get("PYTHONPATH", "")]),
             "NAPARI_SAM2_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "NAPARI_SAM2_TEST_KILL_FILE": str(kill_file)}
    envs = worker_envs(2, [], 1, cpus=2)
    made = local_cluster(envs, extra)
    made.kill_file = kill_file
    yield made
    made.close()


def batch_args(inputs, out_dir, prompts, checkpoint, cluster, *extra) -> list[str]:
    return ["batch", *map(str, inputs), "--prompts", str(prompts), "--out-dir", str(out_dir), *model_args(checkpoint),
            "--device", "cpu", "--save-every", "1", "--cluster", cluster.scheduler_address, "--quiet", *extra]


def summary_rows(out_dir: Path) -> dict[str, dict]:
    with (out_dir / "batch_summary.csv").open() as handle:
        rows = {Path(r["stack"]).stem: r for r in csv.DictReader(handle)}
    document = json.loads((out_dir / "batch_summary.json").read_text())
    assert {Path(r["stack"]).stem for r in document["stacks"]} == set(rows)
    return rows


def test_two_workers_give_the_labels_of_serial_segment_runs(batch_inputs, cluster, checkpoint, capsys):
    folder, stacks, prompts, serial = batch_inputs
    out_dir = folder / "batch_out"
    assert main(batch_args([stacks], out_dir, prompts, checkpoint, cluster)) == 0
    rows = summary_rows(out_dir)
    assert sorted(rows) == sorted(serial)
    for name, labels in serial.items():
        np.testing.assert_array_equal(labels_of(out_dir / f"{name}.zarr"), labels)
        row = rows[name]
        assert (row["status"], row["frames"], row["objects"], row["error"]) == ("done", str(FRAMES), "2", "")
        assert float(row["seconds"]) > 0
    assert capsys.readouterr().out.strip() == str(out_dir)


@pytest.mark.slow
def test_a_worker_killed_mid_stack_hands_the_stack_on_and_it_resumes(batch_inputs, cluster, checkpoint):
    folder, stacks, prompts, serial = batch_inputs
    out_dir = folder / "killed_out"
    cluster.kill_file.write_text(json.dumps({"store": "well1.zarr", "frames": 2}))
    inputs = [stacks / "well0.tif", stacks / "well1.tif"]
    assert main(batch_args(inputs, out_dir, prompts, checkpoint, cluster)) == 0
    assert not cluster.kill_file.exists() and Path(f"{cluster.kill_file}.done").exists()  # a worker was killed
    rows = summary_rows(out_dir)
    assert rows["well1"]["status"] == "done" and int(rows["well1"]["resumed_from"]) >= 2  # continued, not redone
    for name in ("well0", "well1"):
        np.testing.assert_array_equal(labels_of(out_dir / f"{name}.zarr"), serial[name])


def test_a_broken_stack_is_reported_in_one_line_and_the_others_finish(batch_inputs, checkpoint, cache, tmp_path):
    """Through the real command line and its own local cluster: a damaged TIFF and a stack without a prompt file
    fail with one line each, the good stack is done, the exit status is 1."""
    folder, stacks, prompts, serial = batch_inputs
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "broken.tif").write_bytes(b"II*\x00 not really a TIFF")
    write_stack(inputs / "well0.tif", tifffile.imread(stacks / "well0.tif"))
    write_stack(inputs / "orphan.tif", blob_stack(FRAMES, seed=3))
    prompt_dir = tmp_path / "prompts"
    prompt_dir.mkdir()
    for name in ("well0", "broken"):
        (prompt_dir / f"{name}.json").write_text(prompts.read_text())
    out_dir = tmp_path / "out"
    env = cli_env(cache)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).parents[2] / "src"), env.get("PYTHONPATH"))
                                        if p)
    result = subprocess.run(command("batch", inputs, "--prompts-dir", prompt_dir, "--out-dir", out_dir,
                                    *model_args(checkpoint), "--device", "cpu", "--workers", "2"),
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    rows = summary_rows(out_dir)
    assert rows["well0"]["status"] == "done"
    np.testing.assert_array_equal(labels_of(out_dir / "well0.zarr"), serial["well0"])
    assert rows["broken"]["status"] == "failed" and "broken.tif" in rows["broken"]["error"]
    assert rows["orphan"]["status"] == "failed"
    assert rows["orphan"]["error"] == f"no prompt file orphan.json or orphan.csv in {prompt_dir}"
    for name in ("broken", "orphan"):  # each named once on its own line in the terminal
        lines = [line for line in result.stderr.splitlines() if line.startswith(f"napari-sam2 batch: {inputs}/{name}")]
        assert len(lines) == 1 and "\n" not in rows[name]["error"], result.stderr
    assert result.stdout.strip() == str(out_dir)


def test_the_slurm_job_script_comes_from_the_config_file(tmp_path):
    config = tmp_path / "slurm.yaml"
    config.write_text("queue: gpu\naccount: cell-lab\ncores: 8\nmemory: 48GB\nwalltime: '02:00:00'\ngpus: 1\n"
                      "modules: [cuda/12.4, python/3.11]\njob_script_prologue: ['source ~/envs/sam2/bin/activate']\n"
                      "local_directory: $TMPDIR\n")
    toml = tmp_path / "slurm.toml"
    toml.write_text("[slurm]\nqueue = 'gpu'\naccount = 'cell-lab'\ncores = 8\nmemory = '48GB'\nwalltime = '02:00:00'\n"
                    "gpus = 1\nmodules = ['cuda/12.4', 'python/3.11']\n"
                    "job_script_prologue = ['source ~/envs/sam2/bin/activate']\nlocal_directory = '$TMPDIR'\n")
    assert read_config(config) == read_config(toml)
    cluster = slurm_cluster(config, gpus_per_worker=1, stacks=3)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    lines = script.splitlines()
    for directive in ("#SBATCH -p gpu", "#SBATCH -A cell-lab", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=45G",
                      "#SBATCH -t 02:00:00", "#SBATCH --gres=gpu:1"):
        assert directive in lines, script
    order = [lines.index(x) for x in ("module load cuda/12.4", "module load python/3.11",
                                      "source ~/envs/sam2/bin/activate")]
    assert order == sorted(order)
    worker = next(line for line in lines if "distributed.cli.dask_worker" in line)
    assert "--nthreads 1" in worker and order[-1] < lines.index(worker)  # one stack at a time, after the modules
    assert "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}" in lines


def test_workers_are_pinned_to_their_gpus_and_share_the_cores():
    assert worker_envs(None, ["0", "1", "2", "3"], 1, cpus=16) == [
        {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4", "CUDA_VISIBLE_DEVICES": g} for g in "0123"]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in worker_envs(None, ["4", "5", "6", "7"], 2, cpus=8)] == ["4,5", "6,7"]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in worker_envs(2, ["0"], 1, cpus=8)] == ["0", "0"]  # two share a GPU
    assert worker_envs(3, [], 1, cpus=2) == [{"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}] * 3


def test_inputs_folders_globs_and_manifests_name_their_stores(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        for name in ("x.ome.tif", "y.tif"):
            (tmp_path / sub / name).write_bytes(b"")
    (tmp_path / "a" / "notes.txt").write_text("not a stack")
    zarr_stack = tmp_path / "a" / "z.zarr"
    zarr_stack.mkdir()
    (zarr_stack / "zarr.json").write_text("{}")
    manifest = tmp_path / "plate.csv"
    manifest.write_text("stack,prompts,position\na/z.zarr,p.json,t=3\na/z.zarr,,t=4\n")
    specs = expand_inputs([str(tmp_path / "a"), str(tmp_path / "b" / "*.tif"), str(manifest)])
    names = {(s.stack.relative_to(tmp_path).as_posix(), s.position): s.name for s in specs}
    assert names == {("a/x.ome.tif", None): "a-x", ("a/y.tif", None): "a-y", ("a/z.zarr", None): "z",
                     ("b/x.ome.tif", None): "b-x", ("b/y.tif", None): "b-y", ("a/z.zarr", "t=3"): "z-t3",
                     ("a/z.zarr", "t=4"): "z-t4"}
    assert [s.prompts for s in specs if s.position] == [tmp_path / "p.json", None]


def test_auto_is_passed_on_to_segment_or_reported_for_each_stack(tmp_path):
    for name in ("a.tif", "b.tif"):
        (tmp_path / name).write_bytes(b"")
    args = build_parser().parse_args(["batch", str(tmp_path), "--auto", "--out-dir", str(tmp_path / "out"),
                                      "--lost-patience", "3", "--device", "cpu"])
    jobs = plan_jobs(args)
    assert [Path(j.labels).name for j in jobs] == ["a.zarr", "b.zarr"]
    for job in jobs:
        assert job.argv[:2] == ("segment", job.stack) and "--auto" in job.argv and "--prompts" not in job.argv
        assert job.argv[job.argv.index("--lost-patience") + 1] == "3"
        if not segment_has_auto():  # issue 12's automatic mode is not in this segment yet: one line per stack
            assert job.error == "segment has no automatic mode (--auto) in this napari-sam2 yet: give --prompts or " \
                                "--prompts-dir"


def test_volume_options_reach_each_stacks_segment_command(tmp_path):
    """A batch of (t, z, y, x) stacks: --axis t --volume-axis z (and tiles) go to every stack's segment run."""
    for name in ("e1.tif", "e2.tif"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "p.json").write_text("[]")
    args = build_parser().parse_args(["batch", str(tmp_path / "*.tif"), "--prompts", str(tmp_path / "p.json"),
                                      "--out-dir", str(tmp_path / "out"), "--axis", "t", "--volume-axis", "z",
                                      "--device", "cpu"])
    jobs = plan_jobs(args)
    assert len(jobs) == 2 and not any(job.error for job in jobs)
    for job in jobs:
        argv = list(job.argv)
        assert argv[argv.index("--axis") + 1] == "t" and argv[argv.index("--volume-axis") + 1] == "z"
