"""Saving a session's state on a full disk or past a file-size limit: an OSError naming the file, the old file kept."""

from __future__ import annotations

import errno
import resource
import signal

import pytest
import torch

from napari_sam2.engine import Session
from napari_sam2.model import build_sam2
from tests.engine.reference_session import blob_frames


def test_a_state_too_large_for_the_file_size_limit_is_an_os_error_naming_the_file(tmp_path):
    torch.manual_seed(0)
    session = Session(build_sam2("sam2.1_hiera_tiny", image_size=128), blob_frames(2, size=32), device="cpu")
    session.add_points(0, 1, [[10, 10]], [1])
    path = tmp_path / "state.pt"
    session.save_state(path)
    assert path.stat().st_size > 4096
    path.write_bytes(b"the previous state")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(OSError) as info:  # torch.save writing the file itself raises RuntimeError
            session.save_state(path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert info.value.errno == errno.EFBIG and info.value.filename == str(path)
    assert path.read_bytes() == b"the previous state" and sorted(tmp_path.iterdir()) == [path]
    session.close()
