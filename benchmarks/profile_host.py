"""Where the host's time goes in a steady-state propagation (cProfile of the compute thread and the caller).

    PYTHONPATH=src python3 benchmarks/profile_host.py      # env: OBJS (1), NFRAMES (120), MODEL (tiny), SIZE (1024)
Prints frames/s with masks read on the host and without, then the compute thread's top functions by own time, the
engine's functions by inclusive time, and who waits for the GPU there (callers of ``synchronize``).
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench_session import SyntheticStack, add_prompts_ours  # noqa: E402

from napari_sam2.engine import Session  # noqa: E402
from napari_sam2.model import build_sam2  # noqa: E402

OBJS = int(os.environ.get("OBJS", 1))
NFRAMES = int(os.environ.get("NFRAMES", 120))
MODEL = os.environ.get("MODEL", "tiny")


def propagate(session, stack, read_masks: bool) -> float:
    session.reset()
    session.features.clear()
    add_prompts_ours(session, stack, OBJS)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for r in session.propagate(start=0):
        if read_masks:
            _ = r.masks
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    model = build_sam2(f"sam2.1_hiera_{MODEL}", device="cuda")
    stack = SyntheticStack(NFRAMES)
    session = Session(model, stack, device="cuda")
    propagate(session, stack, True)
    for read in (True, False):
        dt = propagate(session, stack, read)
        print(f"{MODEL}, {OBJS} objects, masks to host {read}: {NFRAMES / dt:.1f} fps", flush=True)
    profiler = cProfile.Profile()
    threading_profile = [profiler]
    import threading

    threading.setprofile(lambda *a: None)
    session.compute.run(profiler.enable)  # profile the compute thread, where the model work runs
    dt = propagate(session, stack, True)
    session.compute.run(profiler.disable)
    del threading_profile
    print(f"profiled: {NFRAMES / dt:.1f} fps")
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(28)
    stats.sort_stats("cumulative").print_stats("napari_sam2", 30)  # the engine's steps, inclusive
    stats.print_callers("synchronize")  # who waits for the GPU on the compute thread
    print(out.getvalue()[-16000:])


if __name__ == "__main__":
    main()
