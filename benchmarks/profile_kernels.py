"""Where a frame's GPU time goes with our defaults (CUDA graphs on): kernels of a steady-state propagation, per frame.

    PYTHONPATH=src python3 benchmarks/profile_kernels.py     # env: OBJS (20,100), NFRAMES (40), MODEL (tiny)

For each object count: frames per second without the profiler, GPU busy time per frame (sum of kernel times), the
top kernels in ms per frame, and the device memory held by the key/value cache and the step graphs' buffers.
A frame whose GPU time is well below its wall time is limited by the host.
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

from bench_session import SyntheticStack, add_prompts_ours  # noqa: E402

from napari_sam2.engine import Session  # noqa: E402
from napari_sam2.model import build_sam2  # noqa: E402

OBJS = [int(x) for x in os.environ.get("OBJS", "20,100").split(",")]
NFRAMES = int(os.environ.get("NFRAMES", 40))
MODEL = os.environ.get("MODEL", "tiny")
TOP = int(os.environ.get("TOP", 25))
OPS = os.environ.get("OPS", "") == "1"  # also: operators by GPU time, static steps run without graph capture


def gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def run_pass(session: Session, stack, nobj: int, frames: int) -> float:
    session.reset()
    session.features.clear()
    add_prompts_ours(session, stack, nobj)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for r in session.propagate(start=0, max_frames=frames - 1):
        _ = r.masks
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def memory_report(session: Session) -> str:
    cache = session.tracker.kv_cache
    cache_bytes = sum(t.numel() * t.element_size() for kv in cache._entries.values() for pair in kv for t in pair)
    graphs = session.tracker.graphs
    buffer_bytes = 0
    if graphs is not None:
        for buffers in graphs._layouts.values():
            buffer_bytes += sum(t.numel() * t.element_size() for t in [*buffers.keys, buffers.values])
    return (f"kv cache {len(cache)} entries {gib(cache_bytes)} GiB, graph key/value buffers {gib(buffer_bytes)} GiB, "
            f"allocated {gib(torch.cuda.memory_allocated())} GiB, peak {gib(torch.cuda.max_memory_allocated())} GiB")


def profile(session: Session, stack, nobj: int) -> None:
    run_pass(session, stack, nobj, 24)  # captures
    torch.cuda.reset_peak_memory_stats()
    seconds = run_pass(session, stack, nobj, NFRAMES)
    print(f"\n== {MODEL}, {nobj} objects: {NFRAMES / seconds:.2f} fps ({1000 * seconds / NFRAMES:.1f} ms/frame)")
    print("   " + memory_report(session))
    steady = NFRAMES - 12
    session.reset()
    session.features.clear()
    add_prompts_ours(session, stack, nobj)
    frames = session.propagate(start=0, max_frames=NFRAMES - 1)
    first = []
    for _ in range(12):  # the first frames of a pass (prompts, a growing memory: eager steps), each timed
        t0 = time.perf_counter()
        _ = next(frames).masks
        torch.cuda.synchronize()
        first.append(f"{1000 * (time.perf_counter() - t0):.0f}")
    print(f"   first 12 frames, ms each: {' '.join(first)}")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for r in frames:
            _ = r.masks
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    kernels: dict[str, float] = defaultdict(float)
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            kernels[event.name[:110]] += event.device_time_total / 1000 / steady
    busy = sum(kernels.values())
    print(f"   profiled: wall {1000 * wall / steady:.1f} ms/frame, GPU kernels {busy:.1f} ms/frame")
    for name, ms in sorted(kernels.items(), key=lambda kv: -kv[1])[:TOP]:
        print(f"   {ms:8.2f} ms  {100 * ms / busy:5.1f} %  {name}")
    if OPS:
        operators(session, stack, nobj)


def operators(session: Session, stack, nobj: int) -> None:
    """Which operators launch the GPU time (the static step without capture, so each kernel has its operator):
    per operator and input shapes, the GPU time of the kernels it launched itself, in ms per frame."""
    session.tracker.graphs.use_graphs = False
    session.tracker.graphs.clear()
    run_pass(session, stack, nobj, 16)
    frames = 12
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    prof = torch.profiler.profile(activities=activities, record_shapes=True)
    # the operators are recorded in the thread that starts the profiler: the session's compute thread, where the
    # model runs (started from this thread, it saw only the consolidation of results)
    session.compute.run(prof.start)
    run_pass(session, stack, nobj, frames)
    session.compute.run(prof.stop)
    rows = [e for e in prof.key_averages(group_by_input_shape=True)
            if e.key.startswith("aten::") and e.self_device_time_total > 0]
    rows.sort(key=lambda e: -e.self_device_time_total)
    total = sum(e.self_device_time_total for e in rows) / 1000 / frames
    print(f"   operators (eager, {frames} frames incl. prompts): {total:.1f} ms/frame of kernels")
    for e in rows[:TOP]:
        shapes = str(e.input_shapes)[:90]
        print(f"   {e.self_device_time_total / 1000 / frames:8.2f} ms {e.count / frames:6.1f}/frame  "
              f"{e.key[6:30]:<24} {shapes}")
    session.tracker.graphs.use_graphs = None
    session.tracker.graphs.clear()


def main() -> None:
    model = build_sam2(f"sam2.1_hiera_{MODEL}", image_size=1024).cuda().eval()
    stack = SyntheticStack(max(NFRAMES, 24))
    session = Session(model, stack, device="cuda")
    for nobj in OBJS:
        profile(session, stack, nobj)
    session.close()


if __name__ == "__main__":
    main()
