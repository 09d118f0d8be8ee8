"""A pure-Python TIFF LZW decoder, used by tifffile only when the ``imagecodecs`` package is missing.

tifffile needs ``imagecodecs`` for LZW, the compression of most Cell Tracking Challenge and many microscope TIFFs.
This fallback (about 0.3 s for a 1024×1024 frame) keeps such files readable; install ``imagecodecs`` for speed.
"""

from __future__ import annotations

import contextlib
from typing import Any

_CLEAR, _EOI, _FIRST = 256, 257, 258


def lzw_decode(data: bytes | bytearray | memoryview, out: Any = None) -> bytes:
    """Decode TIFF LZW (MSB-first, 9–12 bit codes, "early change"); ``out`` may give the expected size in bytes."""
    buf = bytes(data) + b"\x00\x00\x00"
    total_bits = (len(buf) - 3) * 8
    table: list[bytes] = [bytes([i]) for i in range(256)] + [b"", b""]
    result = bytearray()
    bitpos, nbits, prev = 0, 9, b""
    while bitpos + nbits <= total_bits:
        byte = bitpos >> 3
        word = (buf[byte] << 16) | (buf[byte + 1] << 8) | buf[byte + 2]
        code = (word >> (24 - nbits - (bitpos & 7))) & ((1 << nbits) - 1)
        bitpos += nbits
        if code == _CLEAR:
            del table[_FIRST:]
            nbits, prev = 9, b""
            continue
        if code == _EOI:
            break
        if not prev:
            entry = table[code]
        elif code < len(table):
            entry = table[code]
            table.append(prev + entry[:1])
        elif code == len(table):
            entry = prev + prev[:1]
            table.append(entry)
        else:
            raise ValueError(f"corrupt LZW data: code {code} with a table of {len(table)} entries")
        result += entry
        prev = entry
        if len(table) + 1 >= (1 << nbits) and nbits < 12:
            nbits += 1
    if isinstance(out, int):
        return bytes(result[:out])
    return bytes(result)


def ensure_lzw_decoder() -> None:
    """Give tifffile this LZW decoder if tifffile itself has no ``imagecodecs`` (no-op otherwise).

    Asks tifffile rather than importing ``imagecodecs`` here: tifffile binds the package once, at its own import.
    """
    from tifffile import tifffile as tifffile_module

    if getattr(tifffile_module, "imagecodecs", None) is None:
        with contextlib.suppress(AttributeError, TypeError):
            tifffile_module.TIFF.DECOMPRESSORS._codecs.setdefault(5, lzw_decode)
