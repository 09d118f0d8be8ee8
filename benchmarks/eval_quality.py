"""Segmentation and tracking quality of a SAM 2 model (or of the classical baseline) on real microscopy stacks.

Run from the repository root:

    .venv/bin/python -m benchmarks.eval_quality --model sam2.1_hiera_tiny --random-weights --image-size 512 \\
        --device cpu --prompt click,box --datasets gowt1,psc,cancer,c2c12,embryo --out results.json
    .venv/bin/python -m benchmarks.eval_quality --baseline --prompt click,box --out baseline.json

Weights: ``--checkpoint PATH``, ``--random-weights`` (seed 0), or neither (the model's cached or downloaded
checkpoint, as ``napari-sam2 segment`` finds it). ``--max-frames 10`` or ``--max-frames gowt1=10,psc=8`` keeps
the first frames of a stack only. The stacks, their ground truth and prompts: ``benchmarks/quality_data.py``;
the measures: ``benchmarks/quality_metrics.py``; the baseline: ``benchmarks/quality_baseline.py``.

Each object present in the ground truth of the first frame is prompted there once — one positive click at its
centroid, or its bounding box — and propagated forward (the volume: on its centroid slice, both directions).
Reported per dataset and prompt: J and F (boundary F at 2 px) per object and frame where its ground-truth object
exists, averaged over frames and then over objects (DAVIS); J&F = (J + F) / 2; J on the prompt frames alone;
CTC SEG over every reference object of the SEG frames, so objects not prompted (born later, or partly
annotated frames' extra objects) count as misses; ``false_positive_fraction``: of the (object, frame) pairs where
the object's ground truth is absent, the share with a non-empty prediction (J, F and SEG do not see these);
seconds per frame of prompting plus propagation (scoring excluded). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from benchmarks.quality_data import DATASETS, DataError, EvalStack, Prompt, load
from benchmarks.quality_metrics import boundary_f, jaccard, masks_to_labels, seg_matches

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ("click", "box")


class Scorer:
    """Collects per-object J and F, false positives and the predicted label stack of one run."""

    def __init__(self, stack: EvalStack, prompts: list[Prompt]) -> None:
        self.stack, self.prompts = stack, prompts
        self.j: dict[int, list[float]] = {p.obj_id: [] for p in prompts}
        self.f: dict[int, list[float]] = {p.obj_id: [] for p in prompts}
        self.j_prompt: list[float] = []
        self.gold: dict[int, list[tuple[float, float]]] = {p.obj_id: [] for p in prompts}
        self.absent = self.false_positive = 0
        self.labels = np.zeros(stack.gt.shape, np.uint32)
        self.seen: set[int] = set()

    def add(self, frame: int, masks: np.ndarray, obj_ids: tuple[int, ...], logits: np.ndarray | None) -> None:
        """Masks (K, H, W) bool of objects ``obj_ids`` on ``frame`` (the first call for a frame counts)."""
        if frame in self.seen:
            return
        self.seen.add(frame)
        gt = self.stack.gt[frame]
        gold = self.stack.gold_frames.get(frame)
        prompt_frame = {p.obj_id: p.frame for p in self.prompts}
        for mask, obj in zip(masks, obj_ids, strict=True):
            if gold is not None and (gold_mask := gold == obj).any():
                self.gold[obj].append((jaccard(mask, gold_mask), boundary_f(mask, gold_mask)))
            true = gt == obj
            if not true.any():
                self.absent += 1
                self.false_positive += bool(mask.any())
                continue
            self.j[obj].append(jaccard(mask, true))
            self.f[obj].append(boundary_f(mask, true))
            if prompt_frame[obj] == frame:
                self.j_prompt.append(self.j[obj][-1])
        self.labels[frame] = masks_to_labels(masks, list(obj_ids), logits)

    def summary(self) -> dict:
        per_j = [np.mean(v) for v in self.j.values() if v]
        per_f = [np.mean(v) for v in self.f.values() if v]
        seg = self.seg(self.labels)
        ceiling = self.seg(self.perfect_labels())
        j, f = float(np.mean(per_j)), float(np.mean(per_f))
        gold = {}
        if per_gold := [np.mean(v, axis=0) for v in self.gold.values() if v]:
            gj, gf = np.mean(per_gold, axis=0)
            gold = {"J_gold": round(float(gj), 4), "F_gold": round(float(gf), 4),
                    "J&F_gold": round(float(gj + gf) / 2, 4), "gold_object_frames": sum(map(len, self.gold.values()))}
        return {
            "J": round(j, 4), "F": round(f, 4), "J&F": round((j + f) / 2, 4), **gold,
            "J_prompt_frame": round(float(np.mean(self.j_prompt)), 4),
            "SEG": round(float(np.mean(seg)), 4) if seg else None,
            "SEG_if_prompted_objects_were_perfect": round(float(np.mean(ceiling)), 4) if ceiling else None,
            "seg_reference_objects": len(seg),
            "seg_units": sum(1 if self.stack.seg_3d else b - a for a, b, _ in self.stack.seg_reference),
            "objects_prompted": len(self.prompts),
            "objects_in_gt": int(len(np.unique(self.stack.gt[self.stack.gt > 0]))),
            "object_frames_scored": int(sum(len(v) for v in self.j.values())),
            "false_positive_fraction": round(self.false_positive / self.absent, 4) if self.absent else None,
            "object_frames_absent": self.absent,
        }

    def seg(self, labels: np.ndarray) -> list[float]:
        """SEG's per-reference-object scores of a predicted label stack (N, H, W)."""
        scores: list[float] = []
        for start, stop, ref in self.stack.seg_reference:
            pred = labels[start:stop]
            for p, r in [(pred, ref)] if self.stack.seg_3d else zip(pred, ref, strict=True):
                scores += seg_matches(p, r)
        return scores

    def perfect_labels(self) -> np.ndarray:
        """The ground truth of the prompted objects alone (gold masks where a frame has them): what a perfect
        tracker of exactly these prompts would output."""
        perfect = self.stack.gt.copy()
        for t, gold in self.stack.gold_frames.items():
            perfect[t] = gold
        perfect[~np.isin(perfect, [p.obj_id for p in self.prompts])] = 0
        return perfect


def run_model(model, device, stack: EvalStack, prompts: list[Prompt], use_box: bool, scorer: Scorer) -> float:
    """Prompt and propagate through ``napari_sam2.engine.Session``; returns compute seconds (scoring excluded)."""
    from napari_sam2.engine import Session

    start = time.perf_counter()
    session = Session(model, stack.frames, device=device)
    scoring = 0.0
    try:
        for p in prompts:
            if use_box:
                session.add_box(p.frame, p.obj_id, p.box)
            else:
                session.add_points(p.frame, p.obj_id, [p.click], [1])
        direction = "forward" if all(p.frame == 0 for p in prompts) else "both"
        for result in session.propagate(direction=direction):
            tick = time.perf_counter()
            logits = result.logits
            scorer.add(result.frame, logits > 0, result.obj_ids, logits)
            scoring += time.perf_counter() - tick
    finally:
        session.close()
    return time.perf_counter() - start - scoring


def run_baseline(stack: EvalStack, prompts: list[Prompt], use_box: bool, scorer: Scorer) -> float:
    """The classical baseline (``quality_baseline``); returns its compute seconds."""
    from benchmarks.quality_baseline import track

    start = time.perf_counter()
    comps, ids = track(stack.frames, prompts, use_box, stack.name)
    seconds = time.perf_counter() - start
    obj_ids = tuple(p.obj_id for p in prompts)
    for t in range(len(stack.frames)):
        masks = np.stack([(comps[t] == i) if i > 0 else np.zeros(comps.shape[1:], bool) for i in ids[:, t]])
        scorer.add(t, masks, obj_ids, None)
    return seconds


def parse_max_frames(text: str | None) -> dict[str, int]:
    """"10" → every dataset 10; "gowt1=10,psc=8" → per dataset."""
    if not text:
        return {}
    if "=" not in text:
        return dict.fromkeys(DATASETS, int(text))
    pairs = [item.split("=", 1) for item in text.split(",")]
    return {name.strip(): int(n) for name, n in pairs}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="eval_quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sam2.1_hiera_tiny", help="a name napari_sam2.model.get_config accepts")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", help="a checkpoint file for --model")
    weights.add_argument("--random-weights", action="store_true", help="random weights (seed 0)")
    weights.add_argument("--baseline", action="store_true", help="score the classical baseline instead of a model")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--prompt", default="click", help="click, box, or click,box")
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated, from {', '.join(DATASETS)}")
    parser.add_argument("--max-frames", default=None, help="N, or NAME=N,... (first frames of a stack only)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("results.json"))
    return parser.parse_args(argv)


def environment(args: argparse.Namespace, device) -> dict:
    import scipy
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except OSError:
        commit = None
    machine = f"{platform.machine()}, {platform.system()}, {len(os.sched_getaffinity(0))} CPU cores"
    if device is not None and device.type == "cuda":
        machine += f", {torch.cuda.get_device_name(device)}"
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
                     "torch": torch.__version__, "napari_sam2_commit": commit},
        "command": " ".join(["python -m benchmarks.eval_quality", *sys.argv[1:]]),
    }


def fail(message: str) -> int:
    print(f"eval_quality: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    prompts_kinds = [p.strip() for p in args.prompt.split(",") if p.strip()]
    if unknown := [n for n in names if n not in DATASETS]:
        return fail(f"unknown dataset {unknown[0]!r}; choose from {', '.join(DATASETS)}")
    if bad := [p for p in prompts_kinds if p not in PROMPTS]:
        return fail(f"unknown prompt {bad[0]!r}; choose click, box or click,box")
    try:
        max_frames = parse_max_frames(args.max_frames)
    except ValueError:
        return fail(f"--max-frames: expected N or NAME=N,..., got {args.max_frames!r}")
    if not args.data.is_dir():
        return fail(f"data folder {args.data} does not exist")
    if not args.out.parent.is_dir():
        return fail(f"folder of --out {args.out.parent} does not exist")
    model = device = None
    record = {"method": "classical baseline" if args.baseline else args.model}
    if not args.baseline:
        from napari_sam2.cli.errors import CliError
        from napari_sam2.cli.weights import build_model, choose_model, pick_device

        try:
            choice = choose_model(args.model, args.image_size, args.checkpoint, args.random_weights)
            device = pick_device(args.device)
            tick = time.perf_counter()
            model = build_model(choice)
        except CliError as exc:
            return fail(str(exc))
        record.update(choice.identity(), device=str(device), model_build_s=round(time.perf_counter() - tick, 2))
    record.update(environment(args, device), results={})
    for name in names:
        try:
            stack = load(name, args.data, max_frames.get(name))
        except DataError as exc:
            return fail(str(exc))
        prompts = stack.prompts()
        for kind in prompts_kinds:
            scorer = Scorer(stack, prompts)
            if args.baseline:
                seconds = run_baseline(stack, prompts, kind == "box", scorer)
            else:
                seconds = run_model(model, device, stack, prompts, kind == "box", scorer)
            row = {"dataset": name, "prompt": kind, **stack.notes, **scorer.summary(),
                   "seconds_per_frame": round(seconds / len(stack.frames), 3)}
            record["results"][f"{name}/{kind}"] = row
            print_row(record["method"], row)
            args.out.write_text(json.dumps(record, indent=1))
    return 0


def print_row(method: str, row: dict) -> None:
    seg = "  –  " if row["SEG"] is None else f"{row['SEG']:.3f}"
    print(f"{row['dataset']:7s} {row['prompt']:5s} {method:22s} J {row['J']:.3f}  F {row['F']:.3f}  "
          f"J&F {row['J&F']:.3f}  SEG {seg}  "
          + (f"J&F(gold SEG) {row['J&F_gold']:.3f}  " if "J&F_gold" in row else "")
          + f"objects {row['objects_prompted']}/{row['objects_in_gt']}  "
          f"{row['seconds_per_frame']:.2f} s/frame", flush=True)


if __name__ == "__main__":
    sys.exit(main())
