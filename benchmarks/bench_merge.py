"""Writing a frame's result into the label store: from every object's float logits vs from the owner map.

    PYTHONPATH=src python benchmarks/bench_merge.py          # env: OBJS (20,100), SIZE (1024)

For K objects on a SIZE² frame: the bytes each way needs on the host and the time of ``io.merge.merge_result`` from
(K, H, W) float32 logits and from a ``FrameResult``'s owner map ((H, W) int16; on a GPU computed there, here on the
CPU and timed apart). Random logits (most pixels negative, objects overlapping); both merges must agree.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_sam2.engine.result import FrameResult  # noqa: E402
from napari_sam2.io.merge import merge_result  # noqa: E402

OBJS = [int(x) for x in os.environ.get("OBJS", "20,100").split(",") if x]
SIZE = int(os.environ.get("SIZE", 1024))


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"{'objects':>7} | {'logits MiB':>10} {'merge ms':>8} | {'owners MiB':>10} {'merge ms':>8} {'owners ms':>9}")
    for count in OBJS:
        logits = rng.normal(-4, 3, size=(count, SIZE, SIZE)).astype(np.float32)
        current = np.zeros((SIZE, SIZE), np.uint32)
        ids = tuple(range(1, count + 1))
        t0 = time.perf_counter()
        from_logits = merge_result(current, {}, ids, logits, "propagation")[0]
        t1 = time.perf_counter()
        result = FrameResult(0, ids, torch.from_numpy(logits), torch.zeros(count))
        owners = result.owners
        t2 = time.perf_counter()
        from_owners = merge_result(current, {}, ids, result, "propagation")[0]
        t3 = time.perf_counter()
        if not np.array_equal(from_logits, from_owners):
            raise SystemExit("the two merges disagree")
        print(f"{count:>7} | {logits.nbytes / 2**20:>10.0f} {1000 * (t1 - t0):>8.0f} | {owners.nbytes / 2**20:>10.1f} "
              f"{1000 * (t3 - t2):>8.0f} {1000 * (t2 - t1):>9.0f}")


if __name__ == "__main__":
    main()
