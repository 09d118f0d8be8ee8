"""Where the session's time goes on the GPU: per-component CUDA time and the top kernels of a propagation.

    PYTHONPATH=src python3 benchmarks/profile_session.py     # env: OBJS (20), NFRAMES (40), MODEL (tiny)
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench_session import SyntheticStack  # noqa: E402

from napari_sam2.engine import Session  # noqa: E402
from napari_sam2.model import build_sam2  # noqa: E402

OBJS = int(os.environ.get("OBJS", 20))
NFRAMES = int(os.environ.get("NFRAMES", 40))
MODEL = os.environ.get("MODEL", "tiny")
TIMES: dict[str, list] = defaultdict(list)


def timed(name, module):
    forward = module.forward

    def wrapper(*args, **kwargs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = forward(*args, **kwargs)
        end.record()
        TIMES[name].append((start, end))
        return out

    module.forward = wrapper


def propagate(session, stack):
    session.reset()
    session.features.clear()
    for j in range(OBJS):
        session.add_points(0, j + 1, [stack.click(j)], [1])
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in session.propagate():
        pass
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    model = build_sam2(f"sam2.1_hiera_{MODEL}", device="cuda")
    stack = SyntheticStack(NFRAMES)
    session = Session(model, stack, device="cuda", step_graphs=False)  # eager: per-module timing
    propagate(session, stack)  # warm-up: kernels, SDPA choices for every memory size
    for name in ("image_encoder", "memory_attention", "sam_mask_decoder", "sam_prompt_encoder", "memory_encoder"):
        timed(name, getattr(model, name))
    dt = propagate(session, stack)
    torch.cuda.synchronize()
    print(f"{MODEL}, {OBJS} objects, {NFRAMES} frames: {NFRAMES / dt:.1f} fps, {1000 * dt / NFRAMES:.1f} ms/frame")
    for name, events in TIMES.items():
        total = sum(s.elapsed_time(e) for s, e in events)
        print(f"  {name:>20}: {total / NFRAMES:7.2f} ms/frame ({len(events)} calls)")
    TIMES.clear()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        propagate(session, stack)
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=22, max_name_column_width=110))


if __name__ == "__main__":
    main()
