"""Choosing the model, its weights and the device for a run, with one-line errors for each way that fails."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_sam2.cli.errors import CliError, UsageError

RANDOM_SEED = 0
HASH_BLOCK = 1 << 22


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ModelChoice:
    """A model by name at an input size, with its weights: a checkpoint file, or random (``checkpoint=None``)."""

    name: str
    image_size: int
    checkpoint: Path | None
    weights_id: str  # "sha256:<hex>" of the checkpoint file, or "random(seed 0)"

    def identity(self) -> dict[str, Any]:
        return {"model": self.name, "weights": self.weights_id, "image_size": self.image_size}


DEFAULT_PUBLISHED_MODEL = "sam2.1_hiera_tiny"


def check_model_name(name: str) -> None:
    from napari_sam2.model import ALL_MODEL_NAMES

    if name not in ALL_MODEL_NAMES:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(ALL_MODEL_NAMES)}")


def default_model_name(notify=None) -> str:
    """sam2.1_hiera_tiny where its checkpoint is cached or can be downloaded, else the shipped starter model."""
    from napari_sam2.model import STARTER_NAME, CheckpointUnavailable, fetch_checkpoint

    try:
        fetch_checkpoint(DEFAULT_PUBLISHED_MODEL)
    except CheckpointUnavailable:
        if notify is not None:
            notify(f"{DEFAULT_PUBLISHED_MODEL} is not cached and cannot be downloaded: using the shipped "
                   f"'{STARTER_NAME}' model (see docs/starter_model.md)")
        return STARTER_NAME
    return DEFAULT_PUBLISHED_MODEL


def choose_model(name: str | None, image_size: int | None, checkpoint: str | None, random_weights: bool,
                 notify=None) -> ModelChoice:
    """Resolve the weights (downloading a missing checkpoint into the cache) without building the model; ``name``
    None means the default (``default_model_name``), or sam2.1_hiera_tiny with a checkpoint file or random weights."""
    from napari_sam2.model import CheckpointUnavailable, fetch_checkpoint, get_config

    if name is None:
        name = DEFAULT_PUBLISHED_MODEL if checkpoint or random_weights else default_model_name(notify)
    check_model_name(name)
    try:
        size = get_config(name, image_size).image_size
    except ValueError as exc:
        raise UsageError(f"--image-size: {exc}") from None
    if random_weights:
        return ModelChoice(name, size, None, f"random(seed {RANDOM_SEED})")
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise CliError(f"checkpoint file {path} does not exist")
    else:
        try:
            path = fetch_checkpoint(name)
        except CheckpointUnavailable as exc:
            if exc.offline:
                raise CliError(f"no checkpoint for {name}, and it cannot be downloaded: offline ({exc.offline}). Use "
                               f"--checkpoint FILE with {exc.filename} from {exc.url} (or put that file at "
                               f"{exc.target}), or --model starter, the model shipped with napari-sam2 that works "
                               "offline (--random-weights only checks a setup)") from None
            raise CliError(f"no checkpoint for {name}: {exc} — or pass --random-weights for a test run") from None
    try:
        weights_id = f"sha256:{file_sha256(path)}"
    except OSError as exc:
        raise CliError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    return ModelChoice(name, size, path, weights_id)


def build_model(choice: ModelChoice):
    """The SAM 2 model of ``choice`` on the CPU (random weights are seeded, so every run builds the same ones)."""
    import torch

    from napari_sam2.model import CheckpointError, build_sam2

    if choice.checkpoint is None:
        torch.manual_seed(RANDOM_SEED)
    try:
        return build_sam2(choice.name, choice.checkpoint, image_size=choice.image_size)
    except CheckpointError as exc:
        raise CliError(str(exc)) from None


def pick_device(device: str):
    """The torch device for ``--device`` (auto, cpu, cuda, cuda:1, mps); an absent GPU is an error."""
    from napari_sam2.engine.device import pick_device as engine_pick_device

    try:
        return engine_pick_device(device)
    except RuntimeError as exc:
        raise CliError(str(exc)) from None
