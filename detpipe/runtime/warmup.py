"""The one smoke test a loaded model passes before it serves: the server's warm-up, the edge health check.

One inference on a fixed input: the raw output must be ``(batch, 4 + classes, anchors)``
(``classes`` from the model's names; at least one class when it has none) and all finite,
and it goes through the full detection post-processing. The input is the model's grey
padding image by default (the server's warm-up) or a given image (the edge agent's
:func:`probe_image`, the same on every device). A failure raises :class:`WarmUpFailed` with
the reason alone; each caller turns it into its own error (the server's 400, the agent's
``HealthCheckFailed``)::

    predictor, result = load_warm(model_file("slots/b/model.onnx"), "onnxruntime", image=probe_image())
    result.output_shape, result.detections
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from detpipe.errors import InvalidInput
from detpipe.runtime.backends import ModelFile, load_predictor
from detpipe.runtime.image import Letterbox, preprocess, to_input
from detpipe.runtime.nms import postprocess


class WarmUpFailed(InvalidInput):
    """A loaded model failed its test inference, or its output is not a finite YOLO head output."""


@dataclass(frozen=True)
class WarmUp:
    """A passed smoke test: the raw output's shape and how many detections the input gave."""

    output_shape: tuple[int, ...]
    detections: int


def probe_image(height: int = 480, width: int = 640) -> np.ndarray:
    """A fixed BGR uint8 image: gradients and two filled rectangles (no randomness)."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)), (x + y) % 256], axis=-1)
    img = img.astype(np.uint8)
    img[height // 4 : height // 2, width // 4 : width // 2] = (30, 200, 30)
    img[height // 2 : 3 * height // 4, width // 2 : 3 * width // 4] = (200, 30, 200)
    return img


def check_output(raw: np.ndarray, batch: int, classes: int | None) -> None:
    """Raise :class:`WarmUpFailed` unless ``raw`` is a finite ``(batch, 4 + classes, anchors)`` output.

    ``classes`` None (a model without class names): any number of classes from one.
    """
    rows_ok = raw.ndim == 3 and (raw.shape[1] == 4 + classes if classes is not None else raw.shape[1] > 4)
    if not rows_ok or raw.shape[0] != batch:
        if classes is None:
            expected = f"({batch}, 4 + classes, anchors)"
        else:
            expected = f"({batch}, {4 + classes}, anchors) for {classes} classes"
        raise WarmUpFailed(f"output shape {tuple(raw.shape)}, expected {expected}")
    if not np.isfinite(raw).all():
        bad = int((~np.isfinite(raw)).sum())
        raise WarmUpFailed(f"output has {bad} non-finite values (NaN/inf)")


def warm_up(predictor: Any, image: np.ndarray | None = None) -> WarmUp:
    """One inference on ``image`` (None: the grey padding image), checked, then post-processed.

    Raises:
        WarmUpFailed: the inference raises, or its output has another shape or non-finite values.
    """
    h, w = predictor.imgsz
    batch = predictor.batch or 1
    if image is None:
        x, letterboxes = to_input([], (h, w), batch), [Letterbox((h, w), (1.0, 1.0), (0, 0))]
    else:
        x, letterboxes = preprocess([image], (h, w), batch)
    try:
        raw = np.asarray(predictor.infer(x))
    except Exception as e:  # whatever the runtime raises: the model is unusable
        raise WarmUpFailed(f"inference failed: {_first_line(e)}") from None
    check_output(raw, x.shape[0], len(predictor.names) if predictor.names else None)
    [detections] = postprocess(raw[:1], letterboxes, predictor.postprocess_cfg)
    return WarmUp(tuple(raw.shape), len(detections))


def load_warm(
    model: ModelFile,
    backend: str,
    threads: int | None = None,
    gpu: int = 0,
    image: np.ndarray | None = None,
) -> tuple[Any, WarmUp]:
    """Load ``model`` on ``backend`` (:func:`~detpipe.runtime.backends.load_predictor`) and warm it up.

    Raises:
        Unavailable, InvalidInput: as ``load_predictor`` (the model does not load here).
        WarmUpFailed: as :func:`warm_up`.
    """
    predictor = load_predictor(model, backend, threads=threads, gpu=gpu)
    return predictor, warm_up(predictor, image)


def _first_line(e: BaseException) -> str:
    text = str(e)
    return text.splitlines()[0] if text.strip() else type(e).__name__
