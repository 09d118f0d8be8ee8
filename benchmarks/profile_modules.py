"""Where a tracking frame's GPU time goes, by model part: the kernels each module (and a few engine steps) launched.

    PYTHONPATH=src python3 benchmarks/profile_modules.py     # env: OBJS (20), NFRAMES (16), MODEL (large), DEPTH (4)

The static step runs uncaptured (as ``profile_kernels.py`` OPS=1 does) so that every kernel has its launching
operator; each module's forward and the named engine steps are wrapped in profiler ranges, and a range's GPU time is
the time of every kernel launched inside it (inclusive: a module's row includes its children's). Per frame, after a
warm-up pass. Layers of a repeated stack (``layers.0`` … ``layers.3``) are summed under ``layers.*``.
"""

from __future__ import annotations

import os
import re
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench_session import SyntheticStack  # noqa: E402
from profile_kernels import run_pass  # noqa: E402

from napari_sam2.engine import Session, step_graph  # noqa: E402
from napari_sam2.engine import features as features_module  # noqa: E402
from napari_sam2.engine import session as session_module  # noqa: E402
from napari_sam2.model import build_sam2  # noqa: E402

OBJS = [int(x) for x in os.environ.get("OBJS", "20").split(",")]
NFRAMES = int(os.environ.get("NFRAMES", 16))
MODEL = os.environ.get("MODEL", "large")
DEPTH = int(os.environ.get("DEPTH", 4))
DEVICE = os.environ.get("DEVICE", "cuda")  # "cpu": a smoke run (no kernel times)
PREFIX = "M:"
STEPS = [  # engine steps outside the model's modules: (owner, attribute)
    (step_graph, "fill_holes"), (step_graph, "project_memory_bases"),
    (step_graph.TrackingGraphs, "_fill"), (step_graph.TrackingGraphs, "_core"),
    (session_module.Session, "_commit_frame"), (session_module.Session, "_compute_frame"),
    (features_module.FeatureCache, "get"),
]


def annotate_modules(model: torch.nn.Module) -> None:
    """Each module down to DEPTH runs inside a profiler range named after it (stack indices as *)."""
    for name, module in model.named_modules():
        if not name or name.count(".") >= DEPTH:
            continue
        label = PREFIX + re.sub(r"\.\d+", ".*", name)
        open_ranges: list = []

        def enter(_module, _args, label=label, open_ranges=open_ranges):
            handle = torch.autograd.profiler.record_function(label)
            handle.__enter__()
            open_ranges.append(handle)

        def leave(_module, _args, _output, open_ranges=open_ranges):
            open_ranges.pop().__exit__(None, None, None)

        module.register_forward_pre_hook(enter)
        module.register_forward_hook(leave)


def annotate_steps() -> None:
    for owner, attr in STEPS:
        plain = getattr(owner, attr)

        def wrapped(*args, plain=plain, label=f"{PREFIX}step.{attr}", **kwargs):
            with torch.autograd.profiler.record_function(label):
                return plain(*args, **kwargs)

        setattr(owner, attr, wrapped)


def breakdown(session: Session, stack, nobj: int) -> None:
    graphs = session.tracker.graphs
    if graphs is not None:
        graphs.use_graphs = False
        graphs.clear()
    session.features.capture = False  # the encoder's blocks uncaptured too (its ranges would not show in a replay)
    run_pass(session, stack, nobj, 24)  # warm-up: attention backends, compiled chains
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    prof = torch.profiler.profile(activities=activities)
    session.compute.run(prof.start)  # the model runs on the session's compute thread
    seconds = run_pass(session, stack, nobj, NFRAMES)
    session.compute.run(prof.stop)
    frames = NFRAMES
    events = prof.events()
    # kernels only: a range also appears on the GPU's timeline (its span, idle time included), under its own name
    kernels = sum(e.device_time_total for e in events if e.device_type == torch.autograd.DeviceType.CUDA
                  and not e.name.startswith(PREFIX)) / 1000 / frames
    rows: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for e in events:  # a range's CPU event: the kernels launched inside it
        if e.name.startswith(PREFIX) and e.device_type == torch.autograd.DeviceType.CPU:
            rows[e.name[len(PREFIX):]][0] += e.device_time_total / 1000 / frames
            rows[e.name[len(PREFIX):]][1] += 1 / frames
    print(f"\n== {MODEL}, {nobj} objects, uncaptured: {1000 * seconds / frames:.1f} ms/frame wall, "
          f"{kernels:.1f} ms/frame of kernels (incl. prompts and the first frames)")
    for name, (ms, count) in sorted(rows.items()):
        print(f"   {ms:8.2f} ms {100 * ms / max(kernels, 1e-9):5.1f} % {count:6.1f}/frame  {name}")
    if graphs is not None:
        graphs.use_graphs = None
        graphs.clear()


def main() -> None:
    if DEVICE == "cpu":
        torch.cuda.synchronize = lambda *args: None
    model = build_sam2(f"sam2.1_hiera_{MODEL}", image_size=int(os.environ.get("SIZE", 1024))).to(DEVICE).eval()
    annotate_modules(model)
    annotate_steps()
    stack = SyntheticStack(max(NFRAMES, 24))
    session = Session(model, stack, device=DEVICE)
    for nobj in OBJS:
        breakdown(session, stack, nobj)
    session.close()


if __name__ == "__main__":
    main()
