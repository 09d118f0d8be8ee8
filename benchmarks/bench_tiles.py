"""Native-resolution tiling against resizing each frame to the model's input, on a large synthetic time-lapse.

The case: a SIDE² uint16 time-lapse of small round cells of DIAMETER px drifting together (so they cross tile
borders) with known truth (``napari_sam2.train.small_cells.SmallCells``); OBJECTS cells picked at random get a box
prompt on frame 0 and are propagated forward. The same prompts run in a :class:`TiledSession` (tiles at the model's
input size, native resolution) and in a plain :class:`Session` (every frame resized to the model's input), each in a
process of its own so that peak memory is each run's own. Measured per run: IoU of each object with its true cell on
every frame (mean over objects and frames, the mean on the last frame, and the share of objects lost there: IoU <
0.1), seconds per frame (propagation, including stitching and bringing the masks to the host; the first frame is
the prompt), peak host memory (max RSS) and peak device memory.

    PYTHONPATH=src python benchmarks/bench_tiles.py --device cuda --model starter --out tiles.json
    PYTHONPATH=src python benchmarks/bench_tiles.py --device cpu --frames 4 --objects 24 --out tiles_cpu.json

``--model sam2.1_hiera_tiny`` uses Meta's checkpoint from the cache (``napari-sam2 fetch``) or ``--checkpoint``.
Writes one JSON document (both runs and the settings) to ``--out`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="starter")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--side", type=int, default=4096)
    p.add_argument("--diameter", type=float, default=20.0)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--objects", type=int, default=32)
    p.add_argument("--drift", type=float, default=4.0, help="px per frame along x (and a quarter of it along y)")
    p.add_argument("--overlap", type=int, default=None, help="tile overlap (default a quarter of the tile)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step-graphs", choices=("auto", "on", "off"), default="auto",
                   help="the sessions' static-buffer tracking step (CUDA graphs on CUDA; default: on CUDA only)")
    p.add_argument("--mode", choices=("both", "tiled", "resized"), default="both")
    p.add_argument("--out", default="bench_tiles.json")
    return p.parse_args(argv)


def build(args: argparse.Namespace):
    from napari_sam2.model import STARTER_NAME, build_sam2
    from napari_sam2.model.hub import cached_checkpoint, packaged_checkpoint

    if args.checkpoint:
        checkpoint = args.checkpoint
    elif args.model == STARTER_NAME:
        checkpoint = packaged_checkpoint(STARTER_NAME)
    else:
        checkpoint = cached_checkpoint(args.model)
    if checkpoint is None:
        raise SystemExit(f"no checkpoint for {args.model}: napari-sam2 fetch {args.model}, or --checkpoint PATH")
    return build_sam2(args.model, checkpoint, device=args.device)


def stack(args: argparse.Namespace):
    from napari_sam2.train.small_cells import SmallCells

    return SmallCells(num_frames=args.frames, side=args.side, diameter=args.diameter,
                      drift=(args.drift / 4, args.drift), seed=args.seed)


def picks(cells, count: int, seed: int) -> list[int]:
    """Cells wholly inside the frame on every frame, a random sample of ``count``."""
    margin = cells.diameter
    inside = ((cells.centres > margin) & (cells.centres < cells.side - margin)).all(axis=(0, 2))
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(np.flatnonzero(inside), size=min(count, int(inside.sum())), replace=False).tolist())


def object_ious(result, truth: np.ndarray, areas: np.ndarray, ids: list[int]) -> list[float]:
    """IoU of each object of ``result`` (cell id ``ids[k]``) with its cell, from the crops where the result has
    them (a tiled result), else from the dense masks."""
    out = []
    if hasattr(result, "crops"):
        for k, cell in enumerate(ids):
            y0, x0, y1, x1 = result.boxes[k]
            mask = result.crops[k] > 0
            inter = int(np.count_nonzero(truth[y0:y1, x0:x1][mask] == cell))
            union = int(mask.sum()) + int(areas[cell]) - inter
            out.append(inter / union if union else 0.0)
        return out
    masks = result.masks
    for k, cell in enumerate(ids):
        inter = int(np.count_nonzero(truth[masks[k]] == cell))
        union = int(masks[k].sum()) + int(areas[cell]) - inter
        out.append(inter / union if union else 0.0)
    return out


def run_one(args: argparse.Namespace) -> dict:
    import torch

    from napari_sam2.engine import Session
    from napari_sam2.engine.tiled_session import TiledSession

    model = build(args)
    cells = stack(args)
    ids = picks(cells, args.objects, args.seed)
    options = {"device": args.device, "step_graphs": {"auto": None, "on": True, "off": False}[args.step_graphs]}
    if args.mode == "tiled":
        session = TiledSession(model, cells, overlap=args.overlap, **options)
    else:
        session = Session(model, cells, **options)
    for cell in ids:
        (y, x), r = cells.centres[0, cell - 1], cells.radii[cell - 1]
        session.add_box(0, cell, [y - r - 2, x - r - 2, y + r + 2, x + r + 2])
    ious, seconds = [], []
    began = time.perf_counter()
    for result in session.propagate():
        _ = result.crops if hasattr(result, "crops") else result.masks  # the masks on the host
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - began)  # the scoring below is not timed
        truth = cells.labels(result.frame)
        ious.append(object_ious(result, truth, np.bincount(truth.ravel(), minlength=truth.max() + 1), ids))
        began = time.perf_counter()
    scores = np.asarray(ious)
    report = {
        "mode": args.mode,
        "tiles": len(session.layout) if args.mode == "tiled" else 1,
        "active_tiles": len(session.active_tiles) if args.mode == "tiled" else 1,
        "objects": len(ids),
        "iou_mean": round(float(scores.mean()), 4),
        "iou_last_frame": round(float(scores[-1].mean()), 4),
        "lost_last_frame": round(float((scores[-1] < 0.1).mean()), 4),
        "iou_per_frame": [round(float(v), 4) for v in scores.mean(1)],
        "seconds_per_frame": round(float(np.mean(seconds[1:])) if len(seconds) > 1 else float("nan"), 3),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "peak_device_gb": (round(torch.cuda.max_memory_allocated() / 2**30, 3)
                           if args.device.startswith("cuda") else None),
    }
    session.close()
    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.mode != "both":
        print(json.dumps(run_one(args)), flush=True)
        return
    runs = []
    for mode in ("tiled", "resized"):
        child = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--mode", mode]
        done = subprocess.run(child, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the {mode} run failed:\n{done.stderr}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    settings = {k: v for k, v in vars(args).items() if k not in ("mode", "out")}
    Path(args.out).write_text(json.dumps({"settings": settings, "runs": runs}, indent=1))
    print(f"{'mode':8} {'IoU':>6} {'last':>6} {'lost':>6} {'s/frame':>8} {'RSS GB':>7} {'dev GB':>7} tiles")
    for r in runs:
        print(f"{r['mode']:8} {r['iou_mean']:6.3f} {r['iou_last_frame']:6.3f} {r['lost_last_frame']:6.3f} "
              f"{r['seconds_per_frame']:8.2f} {r['peak_rss_gb']:7.2f} {str(r['peak_device_gb']):>7} "
              f"{r['active_tiles']}/{r['tiles']}")


if __name__ == "__main__":
    main()
