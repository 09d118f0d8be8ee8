"""Shared test helpers for napari_sam2.io: where the real sample data lives, counting stores and files."""

from __future__ import annotations

from pathlib import Path

import pytest

# in CI the data sits next to the repository: <repo>/../shared/data
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def shared(relative: str) -> Path:
    """Path of a file of the real sample data; skips the test (saying why) if the data is not there."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"sample data {path} not found (see shared/data/README.md)")
    return path


def chunk_keys(keys: list[str]) -> list[str]:
    """The keys of ``keys`` that are chunks, not zarr metadata."""
    meta = ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata")
    return [k for k in keys if not k.endswith(meta)]
