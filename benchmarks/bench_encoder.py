"""The image encoder on a block of frames, several ways: where its time goes and what fusing would buy.

    PYTHONPATH=src python3 benchmarks/bench_encoder.py      # CUDA; env: MODEL (large), BATCH (8), SIZE (1024)

(BATCH, 3, SIZE, SIZE) images under bf16 autocast, as a propagation encodes its aligned blocks: the encoder as it
runs; its blocks with the plain composition of the seventh session's start (norm, windows cut from float32
tokens, reassembly copied, then the sum); and the blocks through ``CompiledBlocks`` as sessions on CUDA run them
(compile time printed apart: a session pays it when it opens, once per process, from the disk cache after the first
time). Prints ms per frame, the largest difference from the encoder as it runs (and the features' largest magnitude),
and the trunk's time by stage.
"""

from __future__ import annotations

import os
import time

import torch
from cuda_timing import timed

from napari_sam2.model import build_sam2
from napari_sam2.model.compiled_blocks import CompiledBlocks
from napari_sam2.model.hiera import MultiScaleBlock, max_pool, window_partition, window_unpartition

MODEL = os.environ.get("MODEL", "large")
BATCH = int(os.environ.get("BATCH", 8))
SIZE = int(os.environ.get("SIZE", 1024))
DEVICE = os.environ.get("DEVICE", "cuda")  # "cpu": a smoke run (its times mean nothing)


def plain_forward(block: MultiScaleBlock, x: torch.Tensor) -> torch.Tensor:
    """The block as composed before (float32 windows, reassembled by a copy)."""
    shortcut, y = x, block.norm1(x)
    if block.dim != block.dim_out:
        shortcut = block.proj(y)
        if block.q_stride is not None:
            shortcut = max_pool(shortcut, block.q_stride)
    if block.window_size > 0:
        windows, grid = window_partition(y, block.window_size)
        y = window_unpartition(block.attn(windows), grid, shortcut.shape[1:3])
    else:
        y = block.attn(y)
    y = shortcut + y
    return y + block.mlp(block.norm2(y))


def wall_ms(fn) -> float:
    """One call's wall time in ms (the CPU smoke run)."""
    t0 = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - t0)


def main() -> None:
    clock = timed if DEVICE == "cuda" else wall_ms
    torch.manual_seed(0)
    model = build_sam2(f"sam2.1_hiera_{MODEL}", image_size=SIZE).to(DEVICE).eval()
    encoder, trunk = model.image_encoder, model.image_encoder.trunk
    images = torch.randn(BATCH, 3, SIZE, SIZE, device=DEVICE)
    rows = []
    with torch.inference_mode(), torch.autocast(DEVICE, dtype=torch.bfloat16):
        want = encoder(images).backbone_fpn[-1].float()
        rows.append(("encoder as it runs", clock(lambda: encoder(images)) / BATCH, 0.0))
        x = trunk.patch_embed(images)
        x = x + trunk.position_embedding(x.shape[1], x.shape[2])
        stage_ms, start = [], 0
        for end in trunk.stage_ends:
            blocks = trunk.blocks[start : end + 1]

            def run(blocks=blocks, x=x):
                for block in blocks:
                    x = block(x)
                return x

            stage_ms.append(clock(run) / BATCH)
            x, start = run(), end + 1
        originals = [block.forward for block in trunk.blocks]
        for block in trunk.blocks:
            block.forward = lambda x, block=block: plain_forward(block, x)
        got = encoder(images).backbone_fpn[-1].float()
        rows.append(("blocks composed as before", clock(lambda: encoder(images)) / BATCH,
                     (got - want).abs().max().item()))
        for block, forward in zip(trunk.blocks, originals, strict=True):
            block.forward = forward
        t0 = time.perf_counter()
        runner = CompiledBlocks()
        got = encoder(images, runner).backbone_fpn[-1].float()
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        compile_s = time.perf_counter() - t0
        rows.append((f"CompiledBlocks, {len(runner.compiled_kinds)} kinds (compile + first call {compile_s:.0f} s)",
                     clock(lambda: encoder(images, runner)) / BATCH, (got - want).abs().max().item()))
        rows.append(("  (features' largest magnitude)", 0.0, want.abs().max().item()))
    print(f"\nimage encoder, {MODEL}, blocks of {BATCH} frames, {SIZE} px, bf16, {DEVICE}")
    for name, ms, diff in rows:
        print(f"  {ms:8.2f} ms a frame  max |diff| {diff:.3g}  {name}")
    print("  trunk by stage, ms a frame: " + " ".join(f"{ms:.2f}" for ms in stage_ms))


if __name__ == "__main__":
    main()
