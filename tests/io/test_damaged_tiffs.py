"""Truncated or damaged TIFFs are refused when opened, with a message naming the file and what is wrong (the page,
where cheap to find), and without tifffile's own log lines."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_sam2.io import StackError, open_stack
from napari_sam2.io.tifffile_log import quiet_tifffile

FRAMES = 12


def _frames() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 4000, size=(FRAMES, 48, 40), dtype=np.uint16)


def _cut(path: Path, fraction: float = 0.6) -> Path:
    data = path.read_bytes()
    cut = path.with_name("cut_" + path.name)
    cut.write_bytes(data[: int(len(data) * fraction)])
    return cut


@pytest.fixture
def no_tifffile_lines(caplog):
    """Fails the test if a tifffile log record got through to the handlers (the terminal, in a real run)."""
    caplog.set_level(logging.DEBUG)
    yield
    leaked = [r.getMessage() for r in caplog.get_records("call") if r.name.startswith("tifffile")]
    assert not leaked, f"tifffile logged: {leaked}"


def _refused(path: Path) -> str:
    with pytest.raises(StackError) as info:
        open_stack(path)
    message = str(info.value)
    assert message.startswith(f"{path} is truncated or corrupt: "), message
    return message


def test_a_cut_imagej_tiff_is_called_truncated_not_a_single_2d_image(tmp_path, no_tifffile_lines):
    tifffile.imwrite(tmp_path / "movie.tif", _frames(), imagej=True, metadata={"axes": "TYX"})
    message = _refused(_cut(tmp_path / "movie.tif"))
    assert f"its ImageJ metadata announces {FRAMES} images, but only 1 can be read" in message
    assert "2D" not in message


def test_a_cut_stack_of_compressed_pages_names_the_first_page_cut_off(tmp_path, no_tifffile_lines):
    tifffile.imwrite(tmp_path / "movie.tif", _frames(), compression="zlib", metadata={"axes": "TYX"})
    path = _cut(tmp_path / "movie.tif")
    with quiet_tifffile(), tifffile.TiffFile(path) as tif:  # the pages whose directories survived, the last one cut
        whole = len(tif.pages) - 1
    assert 0 < whole < FRAMES - 1
    assert f"the data of page {whole} of {FRAMES} should end at byte" in _refused(path)


def test_a_page_deep_in_the_stack_pointing_past_the_end_of_the_file_is_found_on_opening(tmp_path, no_tifffile_lines):
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, _frames(), compression="zlib", metadata={"axes": "TYX"})
    size = path.stat().st_size
    with tifffile.TiffFile(path, mode="r+b") as tif:
        offsets = tif.pages[9].tags["StripOffsets"]
        offsets.overwrite([size + 1000] * len(tif.pages[9].dataoffsets))
    assert path.stat().st_size == size
    assert f"the data of page 9 of {FRAMES} should end at byte" in _refused(path)


def test_a_cut_contiguous_stack_says_where_its_data_should_end(tmp_path, no_tifffile_lines):
    tifffile.imwrite(tmp_path / "movie.tif", _frames(), metadata={"axes": "TYX"})
    path = _cut(tmp_path / "movie.tif")
    assert f"but the file has {path.stat().st_size} bytes" in _refused(path)


def test_whole_files_of_every_kind_still_open_and_read(tmp_path, no_tifffile_lines):
    data = _frames()
    writers = {
        "imagej": {"imagej": True, "metadata": {"axes": "TYX"}},
        "zlib": {"compression": "zlib", "metadata": {"axes": "TYX"}},
        "contiguous": {"metadata": {"axes": "TYX"}},
    }
    for name, options in writers.items():
        tifffile.imwrite(tmp_path / f"{name}.tif", data, **options)
        source = open_stack(tmp_path / f"{name}.tif")
        np.testing.assert_array_equal(source[FRAMES - 1], data[-1])
