"""PNG files written with zlib alone: what the generative steps return, with no Pillow where
they are served (a stock Triton container has numpy and nothing else).

8-bit greyscale (H, W) or RGB (H, W, 3), one IDAT chunk, no filter: for the 32x32 images we
make the filters would save a few bytes, and every decoder reads this. The same bytes for the
same pixels anywhere (zlib at a fixed level), so a seed gives the same files under any server.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {2: 0, 3: 2}  # array dimensions -> PNG colour type: 0 grey, 2 RGB


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(pixels: np.ndarray, level: int = 6) -> bytes:
    """uint8 (H, W) grey or (H, W, 3) RGB -> the bytes of a PNG file."""
    pixels = np.asarray(pixels)
    if (
        pixels.dtype != np.uint8
        or pixels.ndim not in COLOUR_TYPES
        or (pixels.ndim == 3 and pixels.shape[2] != 3)
    ):
        raise ValueError(f"expected uint8 (H, W) or (H, W, 3), got {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape[:2]
    rows = np.zeros((height, 1 + pixels[0].size), np.uint8)  # each row: filter 0, then pixels
    rows[:, 1:] = pixels.reshape(height, -1)
    header = struct.pack(">IIBBBBB", width, height, 8, COLOUR_TYPES[pixels.ndim], 0, 0, 0)
    return (
        SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level))
        + _chunk(b"IEND", b"")
    )
