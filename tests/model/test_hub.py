"""Getting the published checkpoints: huggingface_hub comes with the package, and offline is said at once."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from napari_sam2.model import CheckpointUnavailable, fetch_checkpoint

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_huggingface_hub_is_a_plain_dependency():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert "huggingface_hub" in {Requirement(r).name for r in project["dependencies"]}, "a fresh install can download"


def test_offline_is_said_at_once_with_the_file_to_get_and_where_it_goes(tmp_path, monkeypatch, caplog):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: as offline
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    began = time.monotonic()
    with pytest.raises(CheckpointUnavailable) as info:
        fetch_checkpoint("sam2.1_hiera_tiny", cache_dir=tmp_path)
    assert time.monotonic() - began < 5, "no retries for half a minute"
    error = info.value
    assert error.offline.startswith("127.0.0.1 cannot be reached")
    assert error.filename == "sam2.1_hiera_tiny.pt" and error.target == tmp_path / "sam2.1_hiera_tiny.pt"
    assert str(error).startswith("offline: 127.0.0.1 cannot be reached") and error.url in str(error)
    assert not [r for r in caplog.records if r.name.startswith("huggingface_hub")]
