"""Click-to-labels latency of the napari plugin's worker path, without Qt: what one click costs between the
Points event and the Labels refresh — store the prompt, run SAM 2 on the frame (image features cached, as the
plugin precomputes them for the frame on screen), write the object's mask into the zarr label store.

    python benchmarks/plugin_click_latency.py --device cuda --models sam2.1_hiera_tiny sam2.1_hiera_large

Random weights (speed does not depend on them). Prints one JSON line per (model, image size).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_sam2._qt.prompts import FramePrompt, record_prompt, segment_prompt
from napari_sam2.engine import Session
from napari_sam2.io.label_store import LabelStore
from napari_sam2.io.sources import open_stack
from napari_sam2.model import build_sam2
from napari_sam2.samples import synthetic_cell_timelapse


def measure(name: str, image_size: int, device: str, frame_size: int, clicks: int) -> dict:
    torch.manual_seed(0)
    model = build_sam2(name, image_size=image_size)
    source = open_stack(synthetic_cell_timelapse(n_frames=4, size=frame_size), axis="t", axes="tyx")
    with tempfile.TemporaryDirectory() as folder:
        store = LabelStore.for_source(Path(folder) / "labels.sam2.zarr", source)
        view = store.view_for(source)
        session = Session(model, source, device=device)
        session.compute.run(session.features.get, 0)  # the frame on screen, precomputed in the background
        rng = np.random.default_rng(0)
        points: list[list[float]] = []
        engine_ms, total_ms = [], []
        for i in range(clicks + 3):  # 3 warm-up clicks
            points.append(list(rng.uniform(0.2, 0.8, 2) * frame_size))
            prompt = FramePrompt(np.asarray(points), np.ones(len(points), np.int8))
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            result = session.add_points(0, 1, prompt.points, prompt.labels, clear=True)
            _ = result.logits
            engine = time.perf_counter() - start
            start = time.perf_counter()
            segment_prompt(session, view, prompt, 1, 0)
            total = time.perf_counter() - start  # labels written: the plugin redraws now
            record_prompt(view, prompt, 1, 0)  # then stores the prompt, in the next task
            if i >= 3:
                engine_ms.append(1000 * engine)
                total_ms.append(1000 * total)
            if len(points) >= 6:
                points = points[-1:]
        session.close()
    return {
        "model": name, "image_size": image_size, "device": device, "frame": frame_size, "clicks": clicks,
        "engine_ms_median": round(statistics.median(engine_ms), 1),
        "click_to_store_ms_median": round(statistics.median(total_ms), 1),
        "click_to_store_ms_p90": round(sorted(total_ms)[int(0.9 * len(total_ms))], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["sam2.1_hiera_tiny"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1024])
    parser.add_argument("--frame", type=int, default=512)
    parser.add_argument("--clicks", type=int, default=20)
    args = parser.parse_args()
    for name in args.models:
        for size in args.sizes:
            print(json.dumps(measure(name, size, args.device, args.frame, args.clicks)), flush=True)


if __name__ == "__main__":
    main()
