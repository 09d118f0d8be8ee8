"""Memory cross-attention with values of the memory's own width (64) instead of the projected 256.

    PYTHONPATH=src python3 benchmarks/bench_sdpa_value_dim.py      # CUDA; env: BATCH (100), FRAMES (7)

softmax(q kᵀ) v_proj(m) = v_proj(softmax(q kᵀ) m) because each row of the softmax sums to 1, so the values can stay
the memory's 64 channels and be projected after the attention. This times each SDPA backend on SAM 2's shapes
(one head of 256, a 64 × 64 query grid, FRAMES memory frames of 4,096 tokens and 64 pointer tokens) with values of
256 and of 64 channels, and prints the error of each against fp32.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from cuda_timing import timed
from torch.nn.attention import SDPBackend, sdpa_kernel

BATCH = int(os.environ.get("BATCH", 100))
FRAMES = int(os.environ.get("FRAMES", 7))


def main() -> None:
    torch.manual_seed(0)
    keys = FRAMES * 4096 + 64
    q = torch.randn(BATCH, 1, 4096, 256, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(BATCH, 1, keys, 256, device="cuda", dtype=torch.bfloat16)
    m = torch.randn(BATCH, 1, keys, 64, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(256, 64, device="cuda", dtype=torch.bfloat16) / 8
    v = m @ w.T
    exact = (F.scaled_dot_product_attention(q[:4].float(), k[:4].float(), m[:4].float()) @ w.float().T)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, batch {BATCH}, keys {keys}")
    print(f"{'backend':<22}{'values':>8}{'ms':>10}{'max err vs fp32':>18}")
    for name in ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION"):
        backend = getattr(SDPBackend, name)
        for label, values, after in (("256", v, None), ("64", m, w)):
            try:
                with sdpa_kernel([backend]):
                    def run(values=values, after=after):
                        out = F.scaled_dot_product_attention(q, k, values)
                        return out if after is None else out @ after.T
                    ms = timed(run, repeat=5, warmup=1)
                    err = (run()[:4].float() - exact).abs().max().item()
                print(f"{name:<22}{label:>8}{ms:>10.2f}{err:>18.4f}")
            except RuntimeError as error:
                print(f"{name:<22}{label:>8}{'—':>10}  {str(error).splitlines()[0][:80]}")


if __name__ == "__main__":
    main()
