"""Host memory of a long propagation: where a session's resident memory grows, frame by frame.

Run on the GPU machine from the repository root (no reference needed):

    PYTHONPATH=src python3 benchmarks/bench_host_memory.py      # env: FRAMES (1500), MODEL (tiny), CONFIGS

One object tracked through a synthetic 16-bit grayscale stack (bench_session's), masks to the host, for each
configuration in CONFIGS (comma-separated: default, no-pipeline, no-graphs, no-compile, eager — the Session
keyword arguments each turns off). Every EVERY frames it prints the process's resident memory next to what
the session accounts for: the vault's host bytes (per-frame results kept on the host, up to its budget), the
feature cache's bytes, and the pinned host memory torch's caching allocator holds. Resident memory that grows
faster than those is memory nobody bounds.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT.parent / "src"), str(ROOT)]

from bench_session import SyntheticStack  # noqa: E402

from napari_sam2.engine import Session  # noqa: E402
from napari_sam2.model import build_sam2  # noqa: E402

FRAMES = int(os.environ.get("FRAMES", 1500))
EVERY = int(os.environ.get("EVERY", 250))
MODEL = os.environ.get("MODEL", "tiny")
CONFIGS = os.environ.get("CONFIGS", "default,no-pipeline,no-graphs").split(",")
KWARGS = {
    "default": {},
    "no-pipeline": {"pipeline": False},
    "no-graphs": {"step_graphs": False},
    "no-compile": {"compile_encoder": False},
    "eager": {"pipeline": False, "step_graphs": False, "compile_encoder": False},
}
MIB = 2**20


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def pinned_bytes() -> int:
    try:
        stats = torch.cuda.host_memory_stats()
    except (AttributeError, RuntimeError):
        return -1
    return int(stats.get("reserved_bytes.current", stats.get("allocated_bytes.current", -1)))


def run(config: str, model) -> list[dict]:
    stack = SyntheticStack(FRAMES)
    session = Session(model, stack, device="cuda", **KWARGS[config])
    session.wait_until_ready()
    session.add_points(0, 1, [stack.click(0, 0)], [1])
    rows, t0 = [], time.perf_counter()
    for k, result in enumerate(session.propagate(start=0)):
        _ = result.masks
        if k % EVERY == 0 or k == FRAMES - 1:
            row = {"config": config, "frame": k, "seconds": round(time.perf_counter() - t0, 1),
                   "rss_mib": round(rss() / MIB), "vault_host_mib": round(session.vault.host_bytes / MIB),
                   "vault_spilled_mib": round(session.vault.spilled_bytes / MIB),
                   "features_mib": round(session.features._bytes / MIB), "pinned_mib": round(pinned_bytes() / MIB),
                   "device_mib": round(torch.cuda.memory_allocated() / MIB)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    session.close()
    return rows


def main() -> None:
    model = build_sam2(f"sam2.1_hiera_{MODEL}", image_size=1024).cuda().eval()
    rows = []
    for config in CONFIGS:
        rows += run(config, model)
        torch.cuda.empty_cache()
    print(f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}, {MODEL}, {FRAMES} frames, 1 object")
    print(f"{'config':>12} {'frame':>6} | {'RSS':>7} {'vault':>7} {'features':>8} {'pinned':>7} MiB")
    for r in rows:
        print(f"{r['config']:>12} {r['frame']:>6} | {r['rss_mib']:>7} {r['vault_host_mib']:>7} "
              f"{r['features_mib']:>8} {r['pinned_mib']:>7}")
    out = os.environ.get("OUT")
    if out:
        Path(out, "bench_host_memory.json").write_text(json.dumps(
            {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
