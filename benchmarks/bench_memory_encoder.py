"""The memory encoder at many objects, part by part and memory layout by layout.

    PYTHONPATH=src python3 benchmarks/bench_memory_encoder.py      # CUDA; env: BATCH (20), SIZE (1024)

(BATCH, 1, SIZE, SIZE) mask probabilities and one frame's (1, 256, SIZE/16, SIZE/16) features under bf16 autocast,
as a tracking step gives them: the whole encoder (plain, and with the fused chains the step graph runs), the mask
downsampler, and each of its convolutions on NCHW memory and on channels-last memory (weights converted), with
the largest difference between the layouts. Prints ms per call.
"""

from __future__ import annotations

import copy
import os

import torch
from cuda_timing import timed

from napari_sam2.model import build_sam2
from napari_sam2.model.fused_ops import FusedOps

BATCH = int(os.environ.get("BATCH", 20))
SIZE = int(os.environ.get("SIZE", 1024))


def channels_last(module: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(module).to(memory_format=torch.channels_last)


def conv3_variants(conv: torch.nn.Conv2d, x: torch.Tensor) -> dict:
    """The downsampler's 4-channel strided convolution computed other ways, each a callable → (B, 16, H/2, W/2)."""
    import torch.nn.functional as F

    c = x.shape[1]
    w8 = F.pad(conv.weight, (0, 0, 0, 0, 0, 8 - c)).to(memory_format=torch.channels_last)
    w8_nchw = F.pad(conv.weight, (0, 0, 0, 0, 0, 8 - c))
    flat_weight = conv.weight.reshape(conv.out_channels, -1)

    def padded_channels_last():
        xp = F.pad(x.permute(0, 2, 3, 1), (0, 8 - c)).permute(0, 3, 1, 2)  # NHWC memory, 8 channels
        return F.conv2d(xp, w8, conv.bias, stride=2, padding=1)

    def padded_nchw():
        return F.conv2d(F.pad(x, (0, 0, 0, 0, 0, 8 - c)), w8_nchw, conv.bias, stride=2, padding=1)

    def unfold_matmul():
        b, _, h, w = x.shape
        cols = F.unfold(x, 3, padding=1, stride=2)  # (B, C·9, L)
        out = torch.matmul(flat_weight.to(x.dtype), cols) + conv.bias.to(x.dtype).view(1, -1, 1)
        return out.view(b, -1, h // 2, w // 2)

    return {"8 channels, channels-last": padded_channels_last, "8 channels, NCHW": padded_nchw,
            "unfold + matmul": unfold_matmul}


def main() -> None:
    torch.manual_seed(0)
    model = build_sam2("sam2.1_hiera_tiny", image_size=SIZE).cuda().eval()
    encoder = model.memory_encoder
    side = SIZE // 16
    vision = torch.randn(1, 256, side, side, device="cuda").expand(BATCH, -1, -1, -1)
    masks = torch.rand(BATCH, 1, SIZE, SIZE, device="cuda")
    ops = FusedOps(compile=True)
    rows = []
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        rows.append(("memory encoder, plain", timed(lambda: encoder(vision, masks))))
        with ops.running():
            rows.append(("memory encoder, fused chains", timed(lambda: encoder(vision, masks))))
        down = encoder.mask_downsampler
        down_cl = channels_last(down)
        rows.append(("mask downsampler, NCHW", timed(lambda: down(masks))))
        rows.append(("mask downsampler, channels-last", timed(lambda: down_cl(masks))))
        with ops.running():
            rows.append(("mask downsampler, NCHW, fused chains", timed(lambda: down(masks))))
            rows.append(("mask downsampler, channels-last, fused chains", timed(lambda: down_cl(masks))))
            a, b = down(masks).float(), down_cl(masks).float()
        print(f"downsampler NCHW vs channels-last: max |diff| {(a - b).abs().max().item():.3g}, "
              f"max |value| {a.abs().max().item():.3g}")
        x = masks
        for i, layer in enumerate(down.encoder):
            if isinstance(layer, torch.nn.Conv2d):
                conv_cl = channels_last(layer)
                x_cl = x.contiguous(memory_format=torch.channels_last)
                name = f"conv {i} {tuple(x.shape)} → {layer.out_channels}"
                rows.append((f"{name}, NCHW", timed(lambda layer=layer, x=x: layer(x))))
                rows.append((f"conv {i}, channels-last", timed(lambda c=conv_cl, x=x_cl: c(x))))
            x = layer(x)
        conv = down.encoder[3]  # 4 → 16 channels, 3×3, stride 2: ways around cuDNN's slow kernel for 4 channels
        x = torch.nn.functional.gelu(down.encoder[1](down.encoder[0](masks))).to(torch.bfloat16)
        want = conv(x).float()
        for name, fn in conv3_variants(conv, x).items():
            got = fn().float()
            rows.append((f"conv 3 as {name} (max |diff| {(got - want).abs().max().item():.2g})", timed(fn)))
        fused = encoder.pix_feat_proj(vision[:1]) + down(masks)
        rows.append(("fuser, NCHW", timed(lambda: encoder.fuser(fused))))
        fused_cl = fused.contiguous(memory_format=torch.channels_last)
        rows.append(("fuser, channels-last input", timed(lambda: encoder.fuser(fused_cl))))
        high = torch.randn(BATCH, 1, SIZE // 4, SIZE // 4, device="cuda")
        rows.append(("mask logits upsampled ×4 + sigmoid", timed(
            lambda: torch.sigmoid(torch.nn.functional.interpolate(high, size=(SIZE, SIZE), mode="bilinear",
                                                                  align_corners=False)))))
    print(f"\nmemory encoder parts, {BATCH} objects, {SIZE} px, bf16 autocast, {torch.cuda.get_device_name()}")
    for name, ms in rows:
        print(f"  {ms:8.3f} ms  {name}")


if __name__ == "__main__":
    main()
