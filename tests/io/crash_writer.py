"""Child process of the crash test: writes frames and prompts to a label store in a loop until it is killed.

Usage: python crash_writer.py STORE LOG SEED FIRST_K

Before each write it logs ``begin frame F K`` / ``begin prompt K``; after the call returns, ``done …``. Each line is
flushed at once, so the parent knows which writes returned before the SIGKILL (and which one may have been cut).
Even frames get hand-painted content (``write_manual``), odd frames a propagation result (``write_result``); both
produce ``pattern(F, K)``, so the parent can tell exactly which write a stored frame comes from.
"""

from __future__ import annotations

import sys

import numpy as np

from napari_sam2.io import LabelStore

N_FRAMES, H, W = 10, 48, 64


def pattern(frame: int, k: int) -> np.ndarray:
    """Frame content of write ``k``: ids ``10k+1 … 10k+3`` in diagonal stripes that depend on the frame."""
    yy, xx = np.mgrid[0:H, 0:W]
    return (10 * k + 1 + (yy + 2 * xx + frame) % 3).astype(np.uint32)


def result_logits(frame: int, k: int) -> tuple[list[int], np.ndarray]:
    """A propagation result whose merge gives ``pattern(frame, k)`` (each pixel claimed by exactly one object)."""
    ids = [10 * k + 1, 10 * k + 2, 10 * k + 3]
    target = pattern(frame, k)
    return ids, np.stack([np.where(target == i, 4.0, -4.0) for i in ids]).astype(np.float32)


def main() -> None:
    store_path, log_path, seed, k = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(seed)
    with open(log_path, "a", buffering=1) as log:
        store = LabelStore.open(store_path)
        log.write("ready\n")
        while True:
            k += 1
            frame = int(rng.integers(N_FRAMES))
            log.write(f"begin frame {frame} {k}\n")
            if frame % 2 == 0:
                store.write_manual(frame, pattern(frame, k))
            else:
                ids, logits = result_logits(frame, k)
                store.write_result(frame, ids, logits, source="propagation")
            log.write(f"done frame {frame} {k}\n")
            log.write(f"begin prompt {k}\n")
            store.add_prompt(10 * k + 1, frame, points=[[k % H, frame]], labels=[1])
            log.write(f"done prompt {k}\n")


if __name__ == "__main__":
    main()
