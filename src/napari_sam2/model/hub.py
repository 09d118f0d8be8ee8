"""Downloading Meta's published checkpoints from the Hugging Face hub into a local cache."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from .config import STARTER_NAME, get_config

PACKAGED_WEIGHTS = {STARTER_NAME: Path(__file__).parent / "weights" / "starter.pt"}

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
    """The checkpoint is not cached and could not be downloaded. ``offline``: why the hub cannot be reached, when that
    is the cause (else None); ``filename``: the file to get by hand from ``url``; ``target``: where the cache expects
    it (None where unknown)."""

    def __init__(self, message: str, *, offline: str | None = None, filename: str | None = None,
                 url: str | None = None, target: Path | None = None) -> None:
        super().__init__(message)
        self.offline, self.filename, self.url, self.target = offline, filename, url, target


PROBE_SECONDS = 3.0  # how long to wait for the hub's host before calling it unreachable


def hub_unreachable() -> str | None:
    """Why the hub cannot be reached now (``HF_HUB_OFFLINE`` set, no connection to its host), or None.

    A quick connection to the host: offline, huggingface_hub would retry for about 25 s, logging each try. Behind a
    proxy (``HTTPS_PROXY``…) the proxy decides, so no probe is made.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    endpoint = urlparse(constants.ENDPOINT)
    host = endpoint.hostname or "huggingface.co"
    try:
        socket.create_connection((host, endpoint.port or 443), timeout=PROBE_SECONDS).close()
    except OSError as exc:
        return f"{host} cannot be reached ({exc.strerror or exc})"
    return None


@contextmanager
def _quiet_hub_logs() -> Iterator[None]:
    """Keep huggingface_hub's log lines (a warning per retry) out of the terminal: a failure is said in our error."""
    logger = logging.getLogger("huggingface_hub")

    def drop(_record: logging.LogRecord) -> bool:
        return False

    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


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


def packaged_checkpoint(name: str) -> Path | None:
    """The checkpoint shipped inside the package for model ``name`` (the starter model), None for the others."""
    path = PACKAGED_WEIGHTS.get(name)
    return path if path is not None and path.is_file() else None


def cached_checkpoint(name: str, cache_dir: str | Path | None = None) -> Path | None:
    """The cached checkpoint of model ``name``, or None if it has not been downloaded."""
    if name in PACKAGED_WEIGHTS:
        return packaged_checkpoint(name)
    path = Path(cache_dir or default_cache_dir()) / checkpoint_filename(name)
    return path if path.is_file() else None


def fetch_checkpoint(name: str, cache_dir: str | Path | None = None) -> Path:
    """The local path of model ``name``'s checkpoint, downloading it from the hub on first use.

    Raises ``CheckpointUnavailable`` saying which file to download and where to put it: at once when offline (its
    ``offline`` says why), or when a download fails.
    """
    if name in PACKAGED_WEIGHTS:
        found = packaged_checkpoint(name)
        if found is None:
            raise CheckpointUnavailable(f"the packaged weights of {name} are missing from {PACKAGED_WEIGHTS[name]}: "
                                        f"reinstall napari-sam2")
        return found
    cache = Path(cache_dir or default_cache_dir())
    filename = checkpoint_filename(name)
    found = cached_checkpoint(name, cache)
    if found is not None:
        return found
    repo = HUB_REPOS[name]
    url = f"https://huggingface.co/{repo}"
    manual = f"download {filename} from {url} and put it at {cache / filename} (or pass its path as the checkpoint)"
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise CheckpointUnavailable(f"huggingface_hub is missing (reinstall napari-sam2); or {manual}") from None
    where = {"filename": filename, "url": url, "target": cache / filename}
    reason = hub_unreachable()
    if reason is not None:
        raise CheckpointUnavailable(f"offline: {reason}, so {filename} cannot be downloaded; {manual}", offline=reason,
                                    **where)
    cache.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet_hub_logs():
            downloaded = hf_hub_download(repo_id=repo, filename=filename, local_dir=cache)
    except Exception as err:  # proxy, HTTP and disk errors all end here
        raise CheckpointUnavailable(f"could not download {filename} ({type(err).__name__}: {err}); {manual}",
                                    **where) from err
    return Path(downloaded)
