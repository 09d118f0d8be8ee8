"""The I/O layer imports neither torch nor napari nor Qt (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("torch", "napari", "PyQt6", "PyQt5", "PySide6", "qtpy")


def test_io_imports_no_torch_napari_or_qt():
    code = (
        "import sys, napari_sam2.io, napari_sam2.io.napari_readers, napari_sam2.io.napari_writers\n"
        f"print(sorted(m for m in {FORBIDDEN!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
