"""Image sizes from headers: every accepted format, bombs refused before decoding, bad headers."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
from model_files import png_bomb

from detpipe.errors import InvalidInput
from detpipe.runtime.image import decode_image
from detpipe.runtime.image_header import image_size

IMAGE = (np.random.default_rng(0).random((37, 53, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("ext", "params", "fmt"),
    [
        (".jpg", [], "jpeg"),
        (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], "jpeg"),
        (".png", [], "png"),
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80], "webp"),  # lossy: VP8
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101], "webp"),  # lossless: VP8L
        (".bmp", [], "bmp"),
    ],
)
def test_the_header_gives_the_size_the_decoder_will(ext, params, fmt):
    ok, buf = cv2.imencode(ext, IMAGE, params)
    assert ok
    assert tuple(image_size(buf.tobytes())) == (fmt, 53, 37)
    assert decode_image(buf.tobytes()).shape == (37, 53, 3)


def test_a_declared_bomb_is_refused_from_its_header():
    bomb = png_bomb(20000, 20000)
    assert len(bomb) < 10_000
    assert image_size(bomb).width * image_size(bomb).height == 400_000_000
    with pytest.raises(InvalidInput, match=r"image is 20000x20000 pixels, more than the 40000000 allowed"):
        decode_image(bomb)


def test_a_vp8x_webp_header_is_read():
    body = bytes([0, 0, 0, 0]) + (4999).to_bytes(3, "little") + (2999).to_bytes(3, "little")
    data = b"RIFF" + struct.pack("<I", 4 + 8 + len(body)) + b"WEBP" + b"VP8X" + struct.pack("<I", 10) + body
    assert tuple(image_size(data)) == ("webp", 5000, 3000)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GIF89a" + b"\0" * 20, "not a supported image (26 bytes; expected JPEG, PNG, WebP, BMP)"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "truncated or corrupt JPEG header"),
        (b"\x89PNG\r\n\x1a\n\0\0", "truncated or corrupt PNG header"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "truncated or corrupt WebP header"),
        (b"BM\0\0", "truncated or corrupt BMP header"),
        (
            b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x00\x10",
            "JPEG frame header declares a zero width or height",
        ),
    ],
)
def test_unreadable_headers_are_bad_input(data, message):
    with pytest.raises(InvalidInput) as e:
        image_size(data)
    assert str(e.value) == message
