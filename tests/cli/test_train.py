"""``napari-sam2 train`` end to end: a short run from scratch writes a checkpoint that loads strictly, resumes when
run again, and bad input ends in one line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import tifffile
import torch

from napari_sam2.model import build_sam2

ARGS = ["--from", "scratch", "--model", "starter", "--image-size", "256", "--batch-size", "1", "--crop-size", "64",
        "--val-every", "0", "--save-every", "1", "--device", "cpu"]


def _napari_sam2(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "napari_sam2.cli", "train", *args], capture_output=True, text=True,
                          timeout=600)


def _pair(tmp_path):
    yy, xx = np.mgrid[:64, :64]
    labels = np.stack([((yy - 30) ** 2 + (xx - 20 - 2 * t) ** 2 < 80).astype(np.uint16) for t in range(6)])
    image = (200 + 1500 * labels + np.random.default_rng(0).normal(0, 30, labels.shape)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "lab.tif", labels)
    return f"{tmp_path / 'img.tif'}:{tmp_path / 'lab.tif'}"


def test_train_writes_a_loadable_checkpoint_and_resumes(tmp_path):
    pair, out = _pair(tmp_path), tmp_path / "mine.pt"
    first = _napari_sam2(pair, "--out", str(out), "--steps", "1", *ARGS)
    assert first.returncode == 0, first.stderr
    assert "step 1/1" in first.stderr and out.is_file()
    model = build_sam2("starter", out, image_size=256)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    again = _napari_sam2(pair, "--out", str(out), "--steps", "2", *ARGS)  # other settings: refused, one line
    assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1
    assert "other settings" in again.stderr
    resumed = _napari_sam2(pair, "--out", str(out), "--steps", "1", *ARGS)  # the same run: nothing left to do
    assert resumed.returncode == 0 and "resuming at step 1" in resumed.stderr


def test_bad_data_is_one_line_naming_the_path(tmp_path):
    missing = tmp_path / "nowhere.tif"
    result = _napari_sam2(f"{missing}:{missing}", "--out", str(tmp_path / "m.pt"), "--steps", "1", *ARGS)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and str(missing) in result.stderr
    assert "Traceback" not in result.stderr
