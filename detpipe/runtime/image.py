"""Images in, the model's input tensor out: decode, letterbox, normalize, pad a static batch.

1. :func:`decode_image` — encoded bytes -> HWC BGR uint8, the size checked from the header
   first (:mod:`detpipe.runtime.image_header`);
2. :func:`letterbox` — resize keeping the aspect ratio, pad with grey (114) to ``imgsz``,
   centred, exactly as ultralytics' ``LetterBox(auto=False)``;
3. :func:`to_input` / :func:`preprocess` — BGR -> RGB, HWC -> NCHW, /255, float32, grey
   rows up to a static batch;
4. :func:`stack_batch` — prepared input rows (of several requests) into one model call, grey
   rows up to a static batch::

    x, letterboxes = preprocess([cv2.imread("a.jpg")], imgsz=(640, 640), batch=None)
    x = stack_batch([row_a, row_b], imgsz=(640, 640), batch=4)  # (4, 3, 640, 640)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detpipe.errors import InvalidInput

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How one image was letterboxed: scale per axis and top-left padding."""

    orig_shape: tuple[int, int]  # (h, w)
    gain: tuple[float, float]  # (gain_x, gain_y): new size / original size
    pad: tuple[int, int]  # (left, top) in pixels


def as_hw(imgsz: int | Sequence[int]) -> tuple[int, int]:
    """A square size or (h, w) -> (h, w)."""
    if isinstance(imgsz, int):
        return imgsz, imgsz
    h, w = imgsz
    return int(h), int(w)


def letterbox(image: np.ndarray, imgsz: int | Sequence[int]) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` (HWC, BGR uint8) into ``imgsz`` keeping aspect ratio, pad the rest.

    Returns:
        The padded image and the :class:`Letterbox` needed to map boxes back.
    """
    import cv2

    new_h, new_w = as_hw(imgsz)
    h, w = image.shape[:2]
    r = min(new_h / h, new_w / w)
    unpad_w, unpad_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (new_w - unpad_w) / 2, (new_h - unpad_h) / 2
    if (w, h) != (unpad_w, unpad_h):
        image = cv2.resize(image, (unpad_w, unpad_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return image, Letterbox(orig_shape=(h, w), gain=(unpad_w / w, unpad_h / h), pad=(left, top))


def preprocess(
    images: Sequence[np.ndarray], imgsz: int | Sequence[int], batch: int | None = None
) -> tuple[np.ndarray, list[Letterbox]]:
    """Letterbox BGR images into one NCHW float32 RGB batch in [0, 1].

    Args:
        images: HWC BGR uint8 images (``cv2.imread`` order), any sizes.
        imgsz: model input (h, w) or a square size.
        batch: pad the batch with grey images up to this size (for static-batch models).

    Returns:
        ``(x, letterboxes)``; ``x`` is C-contiguous ``(max(len, batch), 3, h, w)``.
    """
    h, w = as_hw(imgsz)
    padded, boxes = [], []
    for image in images:
        if image.ndim != 3 or image.shape[2] != 3:
            raise InvalidInput(f"expected an HxWx3 BGR image, got shape {image.shape}")
        img, lb = letterbox(image, (h, w))
        padded.append(img)
        boxes.append(lb)
    return to_input(padded, (h, w), batch), boxes


def to_input(
    letterboxed: Sequence[np.ndarray], imgsz: int | Sequence[int], batch: int | None = None
) -> np.ndarray:
    """Already letterboxed BGR uint8 images (``imgsz``) -> the NCHW float32 RGB model input.

    Rows past ``len(letterboxed)`` up to ``batch`` are grey padding (static-batch models).
    """
    h, w = as_hw(imgsz)
    x = np.full((max(len(letterboxed), batch or 0), h, w, 3), PAD_VALUE, dtype=np.uint8)
    for i, image in enumerate(letterboxed):
        x[i] = image
    x = x[..., ::-1].transpose(0, 3, 1, 2)  # BGR -> RGB, NHWC -> NCHW
    return np.ascontiguousarray(x, dtype=np.float32) / np.float32(255.0)


def stack_batch(
    rows: Sequence[np.ndarray], imgsz: int | Sequence[int], batch: int | None = None
) -> np.ndarray:
    """Model-input rows ``(3, h, w)`` -> one ``(max(len(rows), batch), 3, h, w)`` float32 batch.

    Rows past ``len(rows)`` are the grey padding image (as :func:`to_input` pads), so a
    static-batch model (``batch``) always gets its full batch; None: no padding.

    Raises:
        InvalidInput: a row of another shape.
    """
    h, w = as_hw(imgsz)
    for i, row in enumerate(rows):
        if row.shape != (3, h, w):
            raise InvalidInput(f"input row {i} has shape {list(row.shape)}, expected [3, {h}, {w}]")
    if len(rows) == 1 and (batch or 1) == 1 and rows[0].dtype == np.float32:
        return rows[0][None]  # a lone row needs no copy (a view; C-contiguous when the row is)
    x = np.empty((max(len(rows), batch or 0), 3, h, w), dtype=np.float32)
    for i, row in enumerate(rows):
        x[i] = row
    x[len(rows) :] = np.float32(PAD_VALUE) / np.float32(255.0)
    return x


def decode_image(data: bytes, max_pixels: int = 40_000_000) -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, WebP, BMP) -> HWC BGR uint8.

    The size is read from the header first (:func:`~detpipe.runtime.image_header.image_size`),
    so an image over ``max_pixels`` is refused before the decoder allocates anything.

    Raises:
        InvalidInput: empty bytes, another format, more than ``max_pixels`` pixels, or bytes
            that do not decode.
    """
    import cv2

    from detpipe.runtime.image_header import FORMATS, image_size

    if not data:
        raise InvalidInput("empty image")
    declared = image_size(data)
    if declared.width * declared.height > max_pixels:
        raise InvalidInput(
            f"image is {declared.width}x{declared.height} pixels, more than the {max_pixels} allowed"
        )
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidInput(f"not a decodable image ({len(data)} bytes; expected {', '.join(FORMATS)})")
    if image.shape[0] * image.shape[1] > max_pixels:  # a header that lied
        raise InvalidInput(f"image decodes to more than the {max_pixels} pixels allowed")
    return image
