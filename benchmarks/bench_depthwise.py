"""The memory encoder's depthwise 7×7 convolution (then its channel LayerNorm) at many objects, several ways.

    PYTHONPATH=src python3 benchmarks/bench_depthwise.py      # CUDA; env: BATCH (100)

(BATCH, 256, 64, 64) bfloat16, as the fuser's two ConvNeXt blocks see at 1024 px: PyTorch's convolution on NCHW
(what runs by default), on channels-last memory, with cuDNN's benchmark mode, and as 49 shifted multiply-adds
compiled into one kernel (alone, and with the LayerNorm2d that follows). Prints ms per call and the largest
error against a float32 convolution.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from cuda_timing import timed

BATCH = int(os.environ.get("BATCH", 100))


def shifted_sum(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Depthwise k×k convolution, 'same' padding, as k² shifted products summed in float32."""
    k = weight.shape[-1]
    pad = k // 2
    h, w = x.shape[-2:]
    xp = F.pad(x, (pad, pad, pad, pad)).float()
    wf = weight.float()
    out = bias.float().view(1, -1, 1, 1)
    for i in range(k):
        for j in range(k):
            out = out + xp[:, :, i : i + h, j : j + w] * wf[:, 0, i, j].view(1, -1, 1, 1)
    return out.to(x.dtype)


def layer_norm_2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    xf = x.float()
    mean = xf.mean(1, keepdim=True)
    var = (xf - mean).pow(2).mean(1, keepdim=True)
    return ((xf - mean) / torch.sqrt(var + eps) * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)).to(x.dtype)


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(BATCH, 256, 64, 64, device="cuda", dtype=torch.bfloat16)
    weight = torch.randn(256, 1, 7, 7, device="cuda", dtype=torch.bfloat16) / 7
    bias = torch.randn(256, device="cuda", dtype=torch.bfloat16)
    nw, nb = torch.randn(256, device="cuda"), torch.randn(256, device="cuda")
    exact = F.conv2d(x.float(), weight.float(), bias.float(), padding=3, groups=256)
    xcl = x.contiguous(memory_format=torch.channels_last)
    compiled = torch.compile(shifted_sum, dynamic=False)
    compiled_norm = torch.compile(lambda x, w, b: layer_norm_2d(shifted_sum(x, w, b), nw, nb), dynamic=False)
    plain_norm = lambda x, w, b: layer_norm_2d(F.conv2d(x, w, b, padding=3, groups=256), nw, nb)  # noqa: E731
    cases = {
        "conv2d NCHW": lambda: F.conv2d(x, weight, bias, padding=3, groups=256),
        "conv2d channels_last": lambda: F.conv2d(xcl, weight, bias, padding=3, groups=256),
        "compiled shifted sum": lambda: compiled(x, weight, bias),
        "conv2d + LayerNorm2d": lambda: plain_norm(x, weight, bias),
        "compiled sum + norm": lambda: compiled_norm(x, weight, bias),
    }
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, batch {BATCH}")
    for name, fn in cases.items():
        ms = timed(fn)
        err = "" if "norm" in name else f"{(fn().float() - exact).abs().max().item():.4f}"
        print(f"{name:<26}{ms:8.2f} ms  {err}")
    torch.backends.cudnn.benchmark = True
    for name in ("conv2d NCHW", "conv2d channels_last"):
        print(f"{name + ' (benchmark)':<26}{timed(cases[name]):8.2f} ms")


if __name__ == "__main__":
    main()
