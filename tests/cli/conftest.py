"""Shared inputs of the command-line tests: a checkpoint, a TIFF time-lapse, its prompts, and one finished run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests.cli.helpers import SIDE, blob_stack, disk, labels_of, make_checkpoint, model_args, run_cli, write_json


@dataclass
class Job:
    """The reference job: a TIFF along t, prompts by points, box and mask, and its uninterrupted result."""

    stack: Path
    prompts: Path
    checkpoint: Path
    cache: Path
    out: Path
    labels: np.ndarray

    def args(self, out: Path, *extra) -> list:
        return ["segment", self.stack, "--prompts", self.prompts, "--out", out, *model_args(self.checkpoint), *extra]


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("weights") / "random_tiny.pt")


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> Path:
    """An empty checkpoint cache: nothing is downloaded, nothing is found there."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiff_job_inputs(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tiff_job")
    stack = folder / "movie.tif"
    tifffile.imwrite(stack, blob_stack(), metadata={"axes": "TYX"})
    tifffile.imwrite(folder / "mask.tif", disk(SIDE, (46, 30), 6).astype(np.uint8) * 255)
    prompts = write_json(folder / "prompts.json", {"objects": [
        {"id": 1, "name": "cell A", "prompts": [{"frame": 4, "points": [[22, 17], [40, 40]], "labels": [1, 0]}]},
        {"id": 2, "name": "cell B", "prompts": [{"frame": 4, "box": [31, 33, 46, 49]}]},
        {"id": 7, "prompts": [{"frame": 10, "mask": "mask.tif"}]},
    ]})
    return stack, prompts


@pytest.fixture(scope="session")
def job(tmp_path_factory, tiff_job_inputs, checkpoint, cache) -> Job:
    """The reference job, run once without interruption."""
    stack, prompts = tiff_job_inputs
    out = tmp_path_factory.mktemp("reference") / "labels.zarr"
    partial = Job(stack, prompts, checkpoint, cache, out, np.zeros(0))
    result = run_cli(*partial.args(out), cache=cache)
    assert result.returncode == 0, result.stderr
    partial.labels = labels_of(out)
    return partial
