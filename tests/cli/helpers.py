"""Running ``napari-sam2`` as a subprocess on small stacks made here, with a random-weight checkpoint made here."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from tests.synthetic import moving_blobs

MODEL = "sam2.1_hiera_tiny"
IMAGE_SIZE = 128  # small and fast; the model and every code path are the real ones
FRAMES, SIDE = 24, 64
CHECKPOINT_SEED = 2
OBJECT_SCORE_BIAS = 2.0  # random weights would often call every object absent: then every label would be 0


def make_checkpoint(path: Path) -> Path:
    """A SAM 2.1 tiny checkpoint file with random weights whose objects are predicted present."""
    import torch

    from napari_sam2.model import build_sam2

    torch.manual_seed(CHECKPOINT_SEED)
    model = build_sam2(MODEL, image_size=IMAGE_SIZE)
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[2].bias.fill_(OBJECT_SCORE_BIAS)
    torch.save({"model": model.state_dict()}, path)
    return path


def blob_stack(num_frames: int = FRAMES, side: int = SIDE, seed: int = 0) -> np.ndarray:
    """(N, side, side) uint16: three bright blobs moving over a noisy background, like nuclei in a time-lapse."""
    frames = moving_blobs(num_frames, side, seed=seed, background=(400, 60), brightness=3000, step=(0.8, 0.5))
    return np.clip(frames, 0, 65535).astype(np.uint16)


def disk(side: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document, indent=1))
    return path


def cli_env(cache: Path) -> dict[str, str]:
    """Environment of a run: an empty checkpoint cache of its own, and no network for the hub client."""
    env = dict(os.environ)
    env.update(NAPARI_SAM2_CACHE=str(cache), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def command(*args: Any) -> list[str]:
    return [sys.executable, "-m", "napari_sam2.cli", *[str(a) for a in args]]


def run_cli(*args: Any, cache: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), env=cli_env(cache), capture_output=True, text=True, timeout=timeout)


def model_args(checkpoint: Path) -> list[str]:
    return ["--model", MODEL, "--checkpoint", str(checkpoint), "--image-size", str(IMAGE_SIZE)]


def labels_of(out: Path) -> np.ndarray:
    return zarr.open_group(out, mode="r")["labels"][:]


def run_record(out: Path, key: str = "t") -> dict[str, Any] | None:
    """The run record in ``out`` (None while there is none, or while it is being replaced)."""
    try:
        return json.loads((Path(out) / "runs" / key / "zarr.json").read_text())["attributes"]["napari_sam2_run"]
    except (OSError, ValueError, KeyError):
        return None


def interrupt_when(args: list[Any], cache: Path, out: Path, condition, sig: int = signal.SIGKILL,
                   timeout: float = 300) -> tuple[int, str, dict[str, Any] | None]:
    """Run the command and send ``sig`` once ``condition(run record)`` holds; (exit status, stderr, record
    seen when the signal was sent — None if the run ended first)."""
    process = subprocess.Popen(command(*args), env=cli_env(cache), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    seen = None
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        record = run_record(out)
        if record is not None and condition(record):
            seen = record
            process.send_signal(sig)
            break
        time.sleep(0.01)
    _, stderr = process.communicate(timeout=timeout)
    return process.returncode, stderr, seen


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*")) if p.is_file()
    }


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single ``napari-sam2[ COMMAND]: error: …`` line of a failed run (asserting there is nothing else)."""
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    assert re.match(r"napari-sam2( segment| fetch| info)?: error: ", lines[0]), lines[0]
    return lines[0]
