"""Downloading Meta's published checkpoints from the Hugging Face hub into a local cache."""

from __future__ import annotations

import os
from pathlib import Path

from .config import get_config

HUB_REPOS = {
    "sam2_hiera_tiny": "facebook/sam2-hiera-tiny",
    "sam2_hiera_small": "facebook/sam2-hiera-small",
    "sam2_hiera_base_plus": "facebook/sam2-hiera-base-plus",
    "sam2_hiera_large": "facebook/sam2-hiera-large",
    "sam2.1_hiera_tiny": "facebook/sam2.1-hiera-tiny",
    "sam2.1_hiera_small": "facebook/sam2.1-hiera-small",
    "sam2.1_hiera_base_plus": "facebook/sam2.1-hiera-base-plus",
    "sam2.1_hiera_large": "facebook/sam2.1-hiera-large",
}


class CheckpointUnavailable(RuntimeError):
    """The checkpoint is not cached and could not be downloaded."""


def default_cache_dir() -> Path:
    """``$NAPARI_SAM2_CACHE``, else ``$XDG_CACHE_HOME/napari-sam2``, else ``~/.cache/napari-sam2``."""
    if "NAPARI_SAM2_CACHE" in os.environ:
        return Path(os.environ["NAPARI_SAM2_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "napari-sam2"


def checkpoint_filename(name: str) -> str:
    """The file name Meta publishes model ``name`` under, e.g. ``sam2.1_hiera_tiny.pt``."""
    get_config(name)  # validates the name
    return f"{name}.pt"


def cached_checkpoint(name: str, cache_dir: str | Path | None = None) -> Path | None:
    """The cached checkpoint of model ``name``, or None if it has not been downloaded."""
    path = Path(cache_dir or default_cache_dir()) / checkpoint_filename(name)
    return path if path.is_file() else None


def fetch_checkpoint(name: str, cache_dir: str | Path | None = None) -> Path:
    """The local path of model ``name``'s checkpoint, downloading it from the hub on first use.

    Needs the optional ``huggingface_hub`` dependency (``pip install napari-sam2[hub]``). Offline, or
    without it, raises ``CheckpointUnavailable`` saying which file to download and where to put it.
    """
    cache = Path(cache_dir or default_cache_dir())
    filename = checkpoint_filename(name)
    found = cached_checkpoint(name, cache)
    if found is not None:
        return found
    repo = HUB_REPOS[name]
    manual = (f"download {filename} from https://huggingface.co/{repo} and put it at {cache / filename} "
              f"(or pass its path as the checkpoint)")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise CheckpointUnavailable(f"huggingface_hub is not installed (pip install 'napari-sam2[hub]'); or "
                                    f"{manual}") from None
    cache.mkdir(parents=True, exist_ok=True)
    try:
        downloaded = hf_hub_download(repo_id=repo, filename=filename, local_dir=cache)
    except Exception as err:  # offline, proxy, HTTP and disk errors all end here
        raise CheckpointUnavailable(f"could not download {filename} ({type(err).__name__}: {err}); {manual}") from err
    return Path(downloaded)
