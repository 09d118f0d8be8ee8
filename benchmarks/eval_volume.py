"""3D over time, measured: 3D IoU per object and per time point of ``VolumeTimeTracker`` against a classical baseline.

Two data sets:

- synthetic 3D + t (``benchmarks.synthetic_volumes.nuclei_4d``): nuclei drifting in 3D, deforming, one dividing;
  each nucleus clicked once at t=0 on its widest plane, then followed over every t. A nucleus that divides is scored
  after the division against the daughter its mask overlaps most (SAM 2 follows one object; divisions are not
  split). The truth is known exactly.
- QCANet mouse embryo (``/work/shared/data/qcanet_mouse_embryo_3d``): two volumes (Z, Y, X) = 51 × 120 × 122 of the
  same embryo at 8 and 16 cells, 88 minutes apart (too far apart to follow nuclei through a division, so each volume is
  a run of its own, one time point); each nucleus clicked once on its widest plane at the pixel deepest inside it,
  then propagated along z. Ground truth: the manual segmentation's connected components (8 and 16 nuclei).

Baseline (classical, no learning): the volume smoothed (Gaussian, σ = 1 plane in z, 2 px in y and x), Otsu's
threshold, holes filled, then either 3D connected components or a seeded watershed of the distance transform (split
touching nuclei); a click picks the segment under it, later time points the segment overlapping the previous mask
most.

Usage: ``python -m benchmarks.eval_volume [--data DIR] [--device cpu] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import tifffile
from benchmarks.quality_baseline import otsu_threshold
from benchmarks.synthetic_volumes import central_click, nuclei_4d
from scipy import ndimage as ndi

DATA = Path("/work/shared/data/qcanet_mouse_embryo_3d")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


# ------------------------------------------------------------------------------------------------ baseline
def baseline_segments(volume: np.ndarray, watershed: bool, z_step: float) -> np.ndarray:
    """(Z, Y, X) int32 segments of one volume (see the module docstring)."""
    smooth = ndi.gaussian_filter(volume.astype(np.float32), (1.0, 2.0, 2.0))
    mask = ndi.binary_fill_holes(smooth > otsu_threshold(smooth))
    if not watershed:
        return ndi.label(mask)[0]
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed as ws

    distance = ndi.distance_transform_edt(mask, sampling=(z_step, 1.0, 1.0))
    peaks = peak_local_max(distance, min_distance=5, labels=ndi.label(mask)[0], exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return ws(-distance, markers, mask=mask)


def baseline_track(volumes: np.ndarray, clicks: dict[int, tuple[int, float, float]], start: int, watershed: bool,
                   z_step: float) -> dict[int, dict[int, np.ndarray]]:
    """{obj: {t: (Z, Y, X) bool}} from each click at ``start`` on, by largest overlap with the previous mask."""
    out: dict[int, dict[int, np.ndarray]] = {k: {} for k in clicks}
    previous: dict[int, np.ndarray | None] = {}
    for t in range(start, len(volumes)):
        segments = baseline_segments(volumes[t], watershed, z_step)
        for k, (z, y, x) in clicks.items():
            if t == start:
                label = int(segments[z, int(round(y)), int(round(x))])
            elif previous[k] is not None and previous[k].any():
                counts = np.bincount(segments[previous[k]], minlength=1)
                counts[0] = 0
                label = int(np.argmax(counts))
            else:
                label = 0
            mask = segments == label if label else np.zeros(segments.shape, bool)
            out[k][t] = mask
            previous[k] = mask
    return out


# ------------------------------------------------------------------------------------------------ SAM 2
def sam2_track(model, volumes: np.ndarray, clicks: dict[int, tuple[int, float, float]], start: int,
               device: str) -> tuple[dict[int, dict[int, np.ndarray]], float]:
    from napari_sam2.engine.volume_time import VolumeTimeTracker

    tracker = VolumeTimeTracker(model, volumes, session_options={"device": device})
    for k, (z, y, x) in clicks.items():
        tracker.add_points(start, z, k, [[y, x]], [1])
    out: dict[int, dict[int, np.ndarray]] = {k: {} for k in clicks}
    began = time.perf_counter()
    for step in tracker.propagate():  # scored as the label store holds it: each pixel to the object of highest logit
        best = np.argmax(step.logits, axis=0)
        inside = np.max(step.logits, axis=0) > 0
        for i, k in enumerate(step.obj_ids):
            out[k][step.t] = inside & (best == i)
    seconds = time.perf_counter() - began
    tracker.close()
    return out, seconds


# ------------------------------------------------------------------------------------------------ scoring
def score(pred: dict[int, dict[int, np.ndarray]], truth: np.ndarray, follows) -> dict:
    """Per object and t the 3D IoU with the truth object ``follows(obj, t, mask)`` names; means per t and overall."""
    per_object: dict[str, dict[str, float]] = {}
    for k, masks in pred.items():
        per_object[str(k)] = {str(t): iou(m, truth[t] == follows(k, t, m)) for t, m in masks.items()}
    times = sorted({int(t) for v in per_object.values() for t in v})
    per_t = {str(t): float(np.mean([v[str(t)] for v in per_object.values() if str(t) in v])) for t in times}
    values = [x for v in per_object.values() for x in v.values()]
    return {"mean": float(np.mean(values)), "per_t": per_t, "per_object": per_object}


def synthetic(model, device: str, seed: int = 0) -> dict:
    data = nuclei_4d(8, 14, 128, num_nuclei=4, radius=12.0, z_step=2.5, divide_at=3, seed=seed)
    clicks = {k: central_click(data.truth[0], k) for k in range(1, 5)}
    daughters = {m: [d for d, p in data.parents.items() if p == m] for m in data.divisions}

    def follows(k: int, t: int, mask: np.ndarray) -> int:
        if k in data.divisions and t > data.divisions[k]:
            return max(daughters[k], key=lambda d: np.logical_and(mask, data.truth[t] == d).sum())
        return k

    results = {"data": {"shape": list(data.image.shape), "nuclei": 4, "divides": {str(k): v for k, v in
                                                                                  data.divisions.items()}}}
    pred, seconds = sam2_track(model, data.image, clicks, 0, device)
    results["sam2"] = {**score(pred, data.truth, follows), "seconds": seconds}
    for name, ws in (("otsu_components", False), ("otsu_watershed", True)):
        results[name] = score(baseline_track(data.image, clicks, 0, ws, 2.5), data.truth, follows)
    return results


def qcanet(model, device: str, root: Path) -> dict:
    results = {}
    for stage in ("8", "16"):
        volume = tifffile.imread(root / "images_raw" / f"{stage}_cell_stage.tif")
        truth = tifffile.imread(root / "derived" / f"{stage}_cell_stage_instances.tif").astype(np.int32)
        ids = [int(i) for i in np.unique(truth) if i]
        clicks = {k: central_click(truth, k) for k in ids}
        entry = {"nuclei": len(ids)}
        pred, seconds = sam2_track(model, volume[None], clicks, 0, device)
        entry["sam2"] = {**score(pred, truth[None], lambda k, t, m: k), "seconds": seconds}
        for name, ws in (("otsu_components", False), ("otsu_watershed", True)):
            entry[name] = score(baseline_track(volume[None], clicks, 0, ws, 1.0), truth[None], lambda k, t, m: k)
        results[f"{stage}_cell"] = entry
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the QCANet folder of /work/shared/data")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--skip-qcanet", action="store_true")
    args = parser.parse_args(argv)
    from napari_sam2.model import STARTER_NAME, build_sam2
    from napari_sam2.model.hub import packaged_checkpoint

    model = build_sam2(STARTER_NAME, packaged_checkpoint(STARTER_NAME))
    results = {"model": STARTER_NAME, "device": args.device, "synthetic": synthetic(model, args.device)}
    if not args.skip_qcanet:
        results["qcanet"] = qcanet(model, args.device, args.data)
    text = json.dumps(results, indent=1)
    if args.out is not None:
        args.out.write_text(text)
    _print_summary(results)
    return results


def _print_summary(results: dict) -> None:
    methods = ("sam2", "otsu_components", "otsu_watershed")
    syn = results["synthetic"]
    print("synthetic 3D+t, mean 3D IoU per t:")
    for t in syn["sam2"]["per_t"]:
        print(f"  t={t}: " + "  ".join(f"{m} {syn[m]['per_t'][t]:.3f}" for m in methods))
    print("  overall: " + "  ".join(f"{m} {syn[m]['mean']:.3f}" for m in methods))
    for stage, entry in results.get("qcanet", {}).items():
        print(f"QCANet {stage} ({entry['nuclei']} nuclei), mean 3D IoU: "
              + "  ".join(f"{m} {entry[m]['mean']:.3f}" for m in methods)
              + f"  (SAM 2 {entry['sam2']['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
