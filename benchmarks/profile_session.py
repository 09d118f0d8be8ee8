"""Where the session's time goes on the GPU: torch.profiler over a short propagation (tiny, OBJS objects).

    PYTHONPATH=src python3 benchmarks/profile_session.py     # env: OBJS (20), NFRAMES (24), MODEL (tiny)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench_session import SyntheticStack  # noqa: E402

from napari_sam2.engine import Session  # noqa: E402
from napari_sam2.model import build_sam2  # noqa: E402

OBJS = int(os.environ.get("OBJS", 20))
NFRAMES = int(os.environ.get("NFRAMES", 24))
MODEL = os.environ.get("MODEL", "tiny")


def main() -> None:
    model = build_sam2(f"sam2.1_hiera_{MODEL}", device="cuda")
    stack = SyntheticStack(NFRAMES)
    session = Session(model, stack, device="cuda", fill_hole_area=0)
    for j in range(OBJS):
        session.add_points(0, j + 1, [stack.click(j)], [1])
    for _ in session.propagate(max_frames=6):
        pass
    session.reset()
    session.features.clear()
    for j in range(OBJS):
        session.add_points(0, j + 1, [stack.click(j)], [1])
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                            torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in session.propagate():
            pass
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(f"{MODEL} {OBJS} objects: {NFRAMES / dt:.1f} fps under the profiler")
    table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=60)
    print(table)
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=25, max_name_column_width=60))


if __name__ == "__main__":
    main()
