"""Find every cell and follow it, scored with the Cell Tracking Challenge's measures: DET, SEG, TRA, and division
recall / precision (``py-ctcmetrics``; a division matches within 2 frames, as its BC(2)).

Run from the repository root:

    .venv/bin/python -m benchmarks.eval_auto --device cpu --max-frames gowt1=20,psc=8 \\
        --methods starter,starter+5,random,baseline --out auto_cpu.json

Methods, all without a single click:
- ``starter``: the shipped starter model, ``napari_sam2.engine.track_all`` (find on frame 0, re-detect every
  ``--redetect-every`` frames, leaks cut, division rule), object diameter from the ground truth's median area on
  frame 0 (what a user would type), everything else default;
- ``starter+5``: the same, then one verification-and-correction round of at most 5 corrections, simulated against
  the ground truth: the 5 worst masklets (mean IoU with their best-matching true track over its frames, counting a
  true track nobody follows as a masklet of IoU 0) are corrected — a masklet matching no true cell is rejected
  (removed), a missed cell gets its true mask as a prompt on its first frame, a poor one its true mask on its worst
  frame — and tracking is re-propagated forward from the earliest corrected frame;
- ``random``: ``starter`` with untrained weights (the floor);
- ``baseline``: the classical baseline of ``quality_baseline`` (threshold, components) for every frame, linked by
  overlap, divisions read off with ``engine.divisions.divisions_from_labels``.

Ground truth (``quality_data``): GOWT1 01 — gold TRA markers and ``man_track.txt`` (lineage), gold SEG frames; PSC
02 — silver SEG masks, its tracks and lineage derived here (ids as given; a parent that ends against two new ids is
a division). Speed: cells × frames per second of the model's tracking, detection included (scoring excluded).
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from benchmarks.eval_quality import environment, parse_max_frames
from benchmarks.quality_baseline import PHASE_CONTRAST, components
from benchmarks.quality_data import DataError, EvalStack, load
from benchmarks.quality_metrics import link_by_overlap

from napari_sam2.engine.divisions import divisions_from_labels
from napari_sam2.io import LabelStore, export_ctc
from napari_sam2.io.exports import ctc_tracks

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("starter", "starter+5", "random", "baseline")
DIVISION_TOLERANCE = 2


# ----------------------------------------------------------------------------------------------- ground truth
def gt_parents(stack: EvalStack, root: Path) -> dict[int, int]:
    """{daughter: parent} of the ground truth: GOWT1's man_track.txt; PSC's derived from its masks."""
    if stack.name == "gowt1":
        rows = np.loadtxt(root / "ctc_gowt1_01" / "01_GT" / "TRA" / "man_track.txt", dtype=int, ndmin=2)
        return {int(r[0]): int(r[3]) for r in rows if r[3]}
    return {d: div.parent for div in divisions_from_labels(stack.gt) for d in div.daughters}


def write_ctc(folder: Path, labels: np.ndarray, parents: dict[int, int], *, gt: bool,
              seg: list[tuple[int, int, np.ndarray]] = ()) -> Path:
    """A CTC folder: results (mask*.tif, res_track.txt) or ground truth (TRA/, SEG/)."""
    presence = [set(np.unique(f).tolist()) - {0} for f in labels]
    tracks, relabel = ctc_tracks(presence, parents)
    tra = folder / "TRA" if gt else folder
    tra.mkdir(parents=True)
    for t, frame in enumerate(labels):
        out = frame.astype(np.uint16)
        for obj, new in relabel[t].items():
            if obj != new:
                out[frame == obj] = new
        tifffile.imwrite(tra / (f"man_track{t:03d}.tif" if gt else f"mask{t:03d}.tif"), out)
    lines = "".join(f"{a} {b} {c} {d}\n" for a, b, c, d in sorted(tracks))
    (tra / ("man_track.txt" if gt else "res_track.txt")).write_text(lines)
    if gt:
        (folder / "SEG").mkdir()
        for start, _, ref in seg:
            tifffile.imwrite(folder / "SEG" / f"man_seg{start:03d}.tif", ref[0].astype(np.uint16))
    return folder


def score(res: Path, gt: Path) -> dict:
    """DET, SEG, TRA and division tp / fp / fn, recall, precision (ctc_metrics)."""
    from ctc_metrics.metrics import raw_division_metrics
    from ctc_metrics.scripts.evaluate import calculate_metrics, load_data

    if not (res / "res_track.txt").read_text().strip():  # nothing found: ctc_metrics cannot score an empty result
        truth = np.loadtxt(gt / "TRA" / "man_track.txt", dtype=int, ndmin=2)
        return {"DET": 0.0, "SEG": 0.0, "TRA": 0.0, "valid": 1, "divisions_true": len(set(truth[truth[:, 3] > 0, 3])),
                "divisions_found": 0, "division_tp": 0, "division_recall": 0.0, "division_precision": None}
    comp, ref, traj, segm, _, valid = load_data(str(res), str(gt), True, True, threads=1)
    out = calculate_metrics(comp, ref, traj, segm, ["DET", "SEG", "TRA"], valid)
    tp, fp, fn = raw_division_metrics(comp, ref, traj["mapped_ref"], traj["mapped_comp"], i=DIVISION_TOLERANCE)
    row = {k: round(float(out[k]), 4) for k in ("DET", "SEG", "TRA") if k in out}
    row.update(valid=int(valid), divisions_true=tp + fn, divisions_found=tp + fp, division_tp=tp,
               division_recall=round(tp / (tp + fn), 3) if tp + fn else None,
               division_precision=round(tp / (tp + fp), 3) if tp + fp else None)
    return row


# ----------------------------------------------------------------------------------------------- methods
def run_auto(model, device, stack: EvalStack, find, redetect: int, corrections: int) -> dict:
    """track_all over the stack, optionally followed by a simulated correction round; labels and timings."""
    from napari_sam2.engine import AutoTrackSettings, Session, track_all

    session = Session(model, stack.frames, device=device)
    settings = AutoTrackSettings(find=find, redetect_every=redetect)
    labels = np.zeros(stack.gt.shape, np.uint32)
    parents: dict[int, int] = {}
    cells_frames, began = 0, time.perf_counter()
    scoring = 0.0
    try:
        for step in track_all(session, settings):
            tick = time.perf_counter()
            labels[step.result.frame] = to_labels(step.result)
            for div in step.divisions:
                parents.update(dict.fromkeys(div.daughters, div.parent))
            cells_frames += int(np.count_nonzero(np.unique(labels[step.result.frame])))
            scoring += time.perf_counter() - tick
        seconds = time.perf_counter() - began - scoring
        row = {"seconds": round(seconds, 1), "cells_x_frames_per_s": round(cells_frames / seconds, 2),
               "objects": len(session.obj_ids)}
        if corrections:
            tick = time.perf_counter()
            row["corrections"] = correct(session, stack, labels, corrections)
            row["correction_seconds"] = round(time.perf_counter() - tick, 1)
    finally:
        session.close()
    return {"labels": labels, "parents": parents, **row}


def to_labels(result, rows: list[int] | None = None) -> np.ndarray:
    """One label image from a FrameResult (its objects ``rows`` only): each pixel to the object of highest logit
    among those above 0."""
    logits = result.logits if rows is None else result.logits[rows]
    ids = np.asarray(result.obj_ids if rows is None else [result.obj_ids[k] for k in rows], np.uint32)
    if not len(ids):
        return np.zeros(logits.shape[1:], np.uint32)
    best = logits.argmax(0)
    return np.where(logits.max(0) > 0, ids[best], 0).astype(np.uint32)


def masklet_quality(labels: np.ndarray, gt: np.ndarray) -> tuple[dict[int, tuple[float, int, int]], list[int]]:
    """Per predicted object: (mean IoU with its best-matching true track over the frames either is on, that
    track (0: none), its worst frame); and the true tracks no object matches."""
    quality = {}
    matched = set()
    for obj in (int(o) for o in np.unique(labels) if o):
        mine = labels == obj
        overlap = np.bincount(gt[mine].astype(np.int64))
        overlap[0] = 0
        cell = int(overlap.argmax()) if overlap.any() else 0
        if not cell:
            quality[obj] = (0.0, 0, int(np.flatnonzero(mine.any((1, 2)))[0]))
            continue
        theirs = gt == cell
        frames = np.flatnonzero(mine.any((1, 2)) | theirs.any((1, 2)))
        ious = [(mine[t] & theirs[t]).sum() / (mine[t] | theirs[t]).sum() for t in frames]
        worst = int(frames[int(np.argmin(ious))])
        quality[obj] = (float(np.mean(ious)), cell, worst)
        if np.mean(ious) > 0.5:
            matched.add(cell)
    missed = [int(c) for c in np.unique(gt) if c and int(c) not in matched]
    return quality, missed


def correct(session, stack: EvalStack, labels: np.ndarray, budget: int) -> list[str]:
    """One verification-and-correction round (module docstring); updates ``labels`` in place."""
    quality, missed = masklet_quality(labels, stack.gt)
    candidates = [(q[0], "object", obj) for obj, q in quality.items()] + [(0.0, "missed", c) for c in missed]
    candidates.sort(key=lambda c: (c[0], c[1] != "missed"))
    done, frames = [], []
    next_id = max(session.obj_ids, default=0) + 1
    for _, kind, key in candidates[:budget]:
        if kind == "missed":
            first = int(np.flatnonzero((stack.gt == key).any((1, 2)))[0])
            session.add_mask(first, next_id, stack.gt[first] == key)
            done.append(f"added cell {key} on frame {first} as object {next_id}")
            next_id, frame = next_id + 1, first
        elif quality[key][1] == 0:
            session.remove_object(key)
            labels[labels == key] = 0
            done.append(f"rejected object {key}")
            continue
        else:
            _, cell, frame = quality[key]
            session.add_mask(frame, key, stack.gt[frame] == cell)
            done.append(f"corrected object {key} on frame {frame} (cell {cell})")
        frames.append(frame)
    if frames:
        births = {obj: min(session.prompted_frames(obj)) for obj in session.obj_ids}
        for result in session.propagate(start=min(frames), direction="forward"):
            born = [k for k, obj in enumerate(result.obj_ids) if births[obj] <= result.frame]
            labels[result.frame] = to_labels(result, born)  # SAM 2 would track a later-found cell before it
    return done


def run_baseline(stack: EvalStack) -> dict:
    began = time.perf_counter()
    linked, _ = link_by_overlap(components(stack.frames, stack.name in PHASE_CONTRAST))
    seconds = time.perf_counter() - began
    parents = {d: div.parent for div in divisions_from_labels(linked) for d in div.daughters}
    return {"labels": linked, "parents": parents, "seconds": round(seconds, 1)}


# ----------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="eval_auto", description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="gowt1,psc")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--image-size", type=int, default=None, help="model input size (default: the model's)")
    parser.add_argument("--max-frames", default=None, help="N, or NAME=N,... (first frames only)")
    parser.add_argument("--redetect-every", type=int, default=10)
    parser.add_argument("--pred-iou", type=float, default=None, help="FindSettings.pred_iou_threshold (default: its)")
    parser.add_argument("--stability", type=float, default=None, help="FindSettings.stability_threshold")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("auto_results.json"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if bad := [m for m in methods if m not in METHODS]:
        print(f"eval_auto: error: unknown method {bad[0]!r}; choose from {', '.join(METHODS)}", file=sys.stderr)
        return 2
    from napari_sam2.cli.weights import pick_device
    from napari_sam2.model import STARTER_NAME, build_sam2
    from napari_sam2.model.hub import packaged_checkpoint

    device = pick_device(args.device)
    size = {"image_size": args.image_size} if args.image_size else {}
    record = {**environment(args, device), "device": str(device), "redetect_every": args.redetect_every,
              "find_settings": repr(find_settings(args, 0.0)),
              "division_tolerance_frames": DIVISION_TOLERANCE, "results": {}}
    record["command"] = " ".join(["python -m benchmarks.eval_auto", *sys.argv[1:]])
    max_frames = parse_max_frames(args.max_frames)
    print(f"{'dataset':8} {'method':10} {'DET':>6} {'SEG':>6} {'TRA':>6} {'div R':>6} {'div P':>6} "
          f"{'cells·frames/s':>14} {'s':>7}")
    for name in [n.strip() for n in args.datasets.split(",") if n.strip()]:
        try:
            stack = load(name, args.data, max_frames.get(name))
        except DataError as exc:
            print(f"eval_auto: error: {exc}", file=sys.stderr)
            return 2
        areas = np.bincount(stack.gt[0].ravel().astype(np.int64))[1:]
        diameter = float(2 * np.sqrt(np.median(areas[areas > 0]) / np.pi))
        with tempfile.TemporaryDirectory() as tmp:
            gt_dir = write_ctc(Path(tmp) / "GT", stack.gt, gt_parents(stack, args.data), gt=True,
                               seg=stack.seg_reference)
            for method in methods:
                if method == "baseline":
                    out = run_baseline(stack)
                else:
                    model = build_sam2(STARTER_NAME, None if method == "random" else packaged_checkpoint(STARTER_NAME),
                                       **size)
                    out = run_auto(model, device, stack, find_settings(args, diameter), args.redetect_every,
                                   5 if method == "starter+5" else 0)
                res = Path(tmp) / f"RES_{method}"
                export_through_store(out["labels"], out["parents"], res, Path(tmp) / f"{method}.zarr")
                row = {"dataset": name, "method": method, "frames": len(stack.frames),
                       "object_diameter_px": round(diameter, 1), **stack.notes, **score(res, gt_dir),
                       **{k: v for k, v in out.items() if k not in ("labels", "parents")}}
                record["results"][f"{name}/{method}"] = row
                print(f"{name:8} {method:10} {row.get('DET', 0):6.3f} {row.get('SEG', 0):6.3f} "
                      f"{row.get('TRA', 0):6.3f} {_fmt(row['division_recall']):>6} "
                      f"{_fmt(row['division_precision']):>6} "
                      f"{_fmt(row.get('cells_x_frames_per_s')):>14} {row['seconds']:7.1f}", flush=True)
                args.out.write_text(json.dumps(record, indent=1))
    return 0


def find_settings(args: argparse.Namespace, diameter: float):
    from napari_sam2.engine import FindSettings

    given = {"pred_iou_threshold": args.pred_iou, "stability_threshold": args.stability}
    return FindSettings(object_diameter=diameter, **{k: v for k, v in given.items() if v is not None})


def export_through_store(labels: np.ndarray, parents: dict[int, int], res: Path, store_path: Path) -> None:
    """The result through the label store and its CTC export (the path a user's labels take)."""
    store = LabelStore.create(store_path, labels.shape, dimension_names=("t", "y", "x"))
    for t, frame in enumerate(labels):
        store.write_manual(t, frame)
    for daughter, parent in parents.items():
        if daughter in store.objects:
            store.set_object_parent(daughter, parent)
    export_ctc(store, res)


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    sys.exit(main())
