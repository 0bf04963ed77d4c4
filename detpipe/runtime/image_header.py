"""Image dimensions from the encoded header, before a single pixel is decoded.

A 1 MB PNG can declare 20000 x 20000 pixels (1.2 GB once decoded): the server reads the
size from the header and refuses such an image before calling the decoder. Only the formats
whose headers are read here are accepted for decoding (JPEG, PNG, WebP, BMP)::

    >>> image_size(open("bus.jpg", "rb").read())
    ImageSize(format='jpeg', width=810, height=1080)

Header layouts: JPEG (ITU T.81, B.2.2: SOFn segments), PNG (ISO 15948, 11.2.2: IHDR),
WebP (Google's container spec: ``VP8 ``/``VP8L``/``VP8X`` chunks), BMP (BITMAPINFOHEADER
and the OS/2 BITMAPCOREHEADER).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from detpipe.errors import InvalidInput

FORMATS = ("JPEG", "PNG", "WebP", "BMP")

# SOF0-SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])  # TEM, RST0-7: no length field


class ImageSize(NamedTuple):
    format: str
    width: int
    height: int


def image_size(data: bytes) -> ImageSize:
    """The format and size an encoded image declares.

    Raises:
        InvalidInput: not JPEG/PNG/WebP/BMP, or a header too short or inconsistent to read.
    """
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _png(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp(data)
    if data[:2] == b"BM":
        return _bmp(data)
    raise InvalidInput(f"not a supported image ({len(data)} bytes; expected {', '.join(FORMATS)})")


def _truncated(kind: str) -> InvalidInput:
    return InvalidInput(f"truncated or corrupt {kind} header")


def _jpeg(data: bytes) -> ImageSize:
    i, n = 2, len(data)
    while i + 1 < n:
        if data[i] != 0xFF:
            raise _truncated("JPEG")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # EOI or SOS before any frame header
            break
        if i + 4 > n:
            break
        (length,) = struct.unpack_from(">H", data, i + 2)
        if marker in _JPEG_SOF:
            if i + 9 > n or length < 8:
                break
            height, width = struct.unpack_from(">HH", data, i + 5)
            if not (width and height):  # height 0 = defined later by DNL: not supported
                raise InvalidInput("JPEG frame header declares a zero width or height")
            return ImageSize("jpeg", width, height)
        if length < 2:
            break
        i += 2 + length
    raise _truncated("JPEG")


def _png(data: bytes) -> ImageSize:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise _truncated("PNG")
    width, height = struct.unpack_from(">II", data, 16)
    return ImageSize("png", width, height)


def _webp(data: bytes) -> ImageSize:
    chunk = data[12:16]
    body = data[20:]
    if chunk == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", body, 6)
        return ImageSize("webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        (bits,) = struct.unpack_from("<I", body, 1)
        return ImageSize("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X" and len(body) >= 10:
        width = int.from_bytes(body[4:7], "little") + 1
        height = int.from_bytes(body[7:10], "little") + 1
        return ImageSize("webp", width, height)
    raise _truncated("WebP")


def _bmp(data: bytes) -> ImageSize:
    if len(data) < 26:
        raise _truncated("BMP")
    (header_size,) = struct.unpack_from("<I", data, 14)
    if header_size == 12:  # BITMAPCOREHEADER
        width, height = struct.unpack_from("<HH", data, 18)
    elif header_size >= 40 and len(data) >= 26:
        width, height = struct.unpack_from("<ii", data, 18)
    else:
        raise _truncated("BMP")
    return ImageSize("bmp", abs(width), abs(height))  # negative height: top-down rows
