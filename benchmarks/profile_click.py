"""Where a click's time goes: both threads under cProfile (Python >= 3.12), and the GPU's kernels.

    PYTHONPATH=src python3 benchmarks/profile_click.py     # env: MODEL (tiny), PRESENT (1,20), CLICKS (30)

A click on object 1 on a cached frame, its labels brought to the host — as ``bench_session.py`` times it — with
PRESENT objects prompted on that frame. Prints the median click, then per click: the GPU's kernel time and count,
and the top functions.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench_session import SyntheticStack  # noqa: E402

from napari_sam2.engine import Session  # noqa: E402
from napari_sam2.model import build_sam2  # noqa: E402

MODEL = os.environ.get("MODEL", "tiny")
PRESENT = [int(x) for x in os.environ.get("PRESENT", "1,20").split(",") if x]
CLICKS = int(os.environ.get("CLICKS", 30))


def click(session, stack) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = session.add_points(5, 1, [stack.click(0, 5)], [1], clear=True)
    _ = result.masks
    return time.perf_counter() - t0


def stats(profiler: cProfile.Profile, key: str, lines: int) -> str:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(lines)
    text = out.getvalue()
    return text[text.find("ncalls"):]


def main() -> None:
    model = build_sam2(f"sam2.1_hiera_{MODEL}", device="cuda")
    stack = SyntheticStack(16)
    for present in PRESENT:
        session = Session(model, stack, device="cuda")
        for j in range(present):
            session.add_points(5, j + 1, [stack.click(j, 5)], [1])
        for _ in range(5):  # the first click of a shape is eager and queues the capture
            click(session, stack)
        times = [click(session, stack) for _ in range(CLICKS)]
        graphs = session.tracker.prompt_graphs
        print(f"\n== {MODEL}, {present} object(s) on the frame: click {1000 * np.median(times):.2f} ms median, "
              f"p90 {1000 * np.percentile(times, 90):.2f}; click graphs captured {getattr(graphs, 'captures', '-')}, "
              f"replayed {getattr(graphs, 'replays', '-')}", flush=True)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(CLICKS):
                click(session, stack)
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        gpu_ms = sum(e.device_time for e in kernels) / 1000 / CLICKS
        print(f"GPU per click: {gpu_ms:.2f} ms in {len(kernels) / CLICKS:.0f} kernels/copies")
        table = prof.key_averages().table(sort_by="device_time_total", row_limit=12)
        print(table[-3500:])
        profiler = cProfile.Profile()  # Python >= 3.12: one profiler sees every thread (sys.monitoring)
        profiler.enable()
        for _ in range(CLICKS):
            click(session, stack)
        profiler.disable()
        print("-- both threads, cumulative --")
        print(stats(profiler, "cumulative", 22)[-5000:])
        print("-- both threads, own time --")
        print(stats(profiler, "tottime", 18)[-4000:])
        session.close()


if __name__ == "__main__":
    main()
