"""Stacks per hour of ``napari-sam2 batch`` with 1, 2, … local workers over the same stacks.

Makes N synthetic time-lapses (bright nuclei-like blobs drifting over noise, uint16 TIFF) and one prompt file (a
click on K blobs in frame 0), then runs the real command once per worker count, each into a fresh output folder,
and reports the wall time from the command's start to its end (cluster start and every stack's model load
included: what a user waits for). On a GPU machine, ``--gpus 1 --workers 1,2`` answers "does one process saturate
the GPU?" (two workers then share GPU 0); on the CPU each worker gets its share of the cores as torch threads.

    PYTHONPATH=src python3 benchmarks/bench_batch.py --help
    PYTHONPATH=src python3 benchmarks/bench_batch.py --stacks 8 --frames 48 --side 256 --device cuda --gpus 1
    PYTHONPATH=src python3 benchmarks/bench_batch.py --stacks 4 --frames 8 --side 128 --device cpu   # 2 cores

Prints one JSON line per run and a table; ``--json FILE`` also writes them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def blob_stack(frames: int, side: int, blobs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames, side, side) uint16 stack of ``blobs`` Gaussian nuclei drifting ~1 px a frame, and their frame-0
    centres (blobs, 2) as (y, x)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.15, 0.85, (blobs, 2)) * side
    drift = rng.uniform(-1, 1, (blobs, 2))
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    radius = side / 20
    stack = np.empty((frames, side, side), np.uint16)
    for t in range(frames):
        image = rng.normal(400, 60, (side, side)).astype(np.float32)
        for (cy, cx), (dy, dx) in zip(centres, drift, strict=True):
            image += 3000 * np.exp(-(((yy - cy - t * dy) ** 2 + (xx - cx - t * dx) ** 2) / (2 * radius**2)))
        stack[t] = np.clip(image, 0, 65535)
    return stack, centres


def make_inputs(folder: Path, stacks: int, frames: int, side: int, objects: int) -> tuple[Path, Path]:
    """``folder/stacks/well<i>.tif`` and ``folder/prompts.json`` (one click on each of the first blobs)."""
    import tifffile

    stack_dir = folder / "stacks"
    stack_dir.mkdir(parents=True, exist_ok=True)
    centres = None
    for i in range(stacks):
        data, c = blob_stack(frames, side, max(objects, 4), seed=0)  # the same layout: one prompt file fits all
        data = np.roll(data, i, axis=0)  # …but not the same frames
        centres = c if centres is None else centres
        tifffile.imwrite(stack_dir / f"well{i:02d}.tif", data, metadata={"axes": "TYX"}, photometric="minisblack")
    prompts = {"objects": [{"id": k + 1, "prompts": [{"frame": 0, "points": [[float(centres[k][0]),
                                                                              float(centres[k][1])]]}]}
                           for k in range(objects)]}
    (folder / "prompts.json").write_text(json.dumps(prompts))
    return stack_dir, folder / "prompts.json"


def run_batch(stack_dir: Path, prompts: Path, out_dir: Path, workers: int, args: argparse.Namespace) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    if args.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in range(args.gpus))
    command = [sys.executable, "-m", "napari_sam2.cli", "batch", str(stack_dir), "--prompts", str(prompts),
               "--out-dir", str(out_dir), "--workers", str(workers), "--device", args.device, "--model", args.model,
               "--direction", "forward", "--quiet", *args.extra]
    began = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.monotonic() - began
    if result.returncode != 0:
        sys.exit(f"batch with {workers} worker(s) failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    rows = json.loads((out_dir / "batch_summary.json").read_text())["stacks"]
    return {"workers": workers, "stacks": len(rows), "frames": args.frames, "side": args.side,
            "objects": args.objects, "device": args.device, "gpus": args.gpus, "model": args.model,
            "wall_s": round(wall, 1), "stacks_per_hour": round(len(rows) / wall * 3600, 1),
            "mean_stack_s": round(float(np.mean([r["seconds"] for r in rows])), 1)}


def versions() -> dict:
    import dask
    import distributed
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"python": platform.python_version(), "torch": torch.__version__, "dask": dask.__version__,
            "distributed": distributed.__version__, "cpus": os.cpu_count(), "gpu": gpu, "machine": platform.node()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stacks", type=int, default=8, help="synthetic stacks (default 8)")
    parser.add_argument("--frames", type=int, default=48, help="frames per stack (default 48)")
    parser.add_argument("--side", type=int, default=256, help="frame height and width in pixels (default 256)")
    parser.add_argument("--objects", type=int, default=4, help="prompted objects per stack (default 4)")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    parser.add_argument("--device", default="auto", help="segment's --device (auto, cpu, cuda)")
    parser.add_argument("--gpus", type=int, help="GPUs the local cluster may use (CUDA_VISIBLE_DEVICES=0..N-1)")
    parser.add_argument("--model", default="starter", help="segment's --model (default: the shipped starter)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("extra", nargs="*", help="more segment options, after --, e.g. -- --image-size 1024")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        folder = args.keep or Path(tmp)
        stack_dir, prompts = make_inputs(folder, args.stacks, args.frames, args.side, args.objects)
        info = versions()
        print(json.dumps({"date": time.strftime("%Y-%m-%d"), **info}), flush=True)
        results = []
        for workers in counts:
            result = run_batch(stack_dir, prompts, folder / f"out_{workers}w_{time.monotonic_ns()}", workers, args)
            results.append(result)
            print(json.dumps(result), flush=True)
    base = results[0]["stacks_per_hour"]
    print(f"\n{args.stacks} stacks × {args.frames} frames of {args.side}² px, {args.objects} objects, "
          f"model {args.model}, device {args.device}" + (f" ({info['gpu']})" if info["gpu"] else ""))
    print("| workers | wall (s) | stacks/hour | mean s/stack | vs first |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['workers']} | {r['wall_s']} | {r['stacks_per_hour']} | {r['mean_stack_s']} | "
              f"{r['stacks_per_hour'] / base:.2f}× |")
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), **info, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
