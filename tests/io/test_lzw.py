"""The pure-Python LZW fallback decodes TIFF strips exactly as imagecodecs does."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_sam2.io.lzw import lzw_decode

CTC_FRAME = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ctc_gowt1_01" / "01" / "t000.tif"


def test_fallback_decoder_equals_imagecodecs_on_a_real_lzw_tiff():
    imagecodecs = pytest.importorskip("imagecodecs", reason="imagecodecs is the decoder compared against")
    if not CTC_FRAME.exists():
        pytest.skip(f"{CTC_FRAME} (shared sample data) is not present")
    with tifffile.TiffFile(CTC_FRAME) as tif:
        page = tif.pages[0]
        assert page.compression == 5  # LZW
        fh = tif.filehandle
        strips = []
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
            fh.seek(offset)
            strips.append(fh.read(count))
    for strip in strips[:8]:
        assert lzw_decode(strip) == imagecodecs.lzw_decode(strip)


def test_fallback_decoder_round_trips_what_imagecodecs_encodes():
    imagecodecs = pytest.importorskip("imagecodecs", reason="imagecodecs encodes the test data")
    data = (np.arange(5000) % 7 * 31).astype(np.uint8).tobytes() + bytes(range(256)) * 3
    assert lzw_decode(imagecodecs.lzw_encode(data)) == data
