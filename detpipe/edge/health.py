"""The health check an installed model must pass before the agent commits to it.

A test inference on a fixed, generated image (so every device checks the same input):
the model must load (onnxruntime on the CPU for ONNX; TensorRT, sidecar-checked, for an
engine), return a finite raw output of shape ``(batch, 4 + classes, anchors)`` and go
through the full detection post-processing::

    check_model(Path("slots/b/model.onnx"))          # raises HealthCheckFailed with the reason

Model loading and pre/post-processing are detpipe's own
(:func:`detpipe.runtime.backends.load_predictor`, :mod:`detpipe.runtime`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detpipe.errors import DetpipeError, GateFailed

log = logging.getLogger(__name__)


class HealthCheckFailed(GateFailed):
    """The installed model did not pass its test inference."""


@dataclass(frozen=True)
class Health:
    """A passed check: the raw output shape and how many detections the test image gave."""

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


def check_output(raw: np.ndarray, batch: int, classes: int) -> None:
    """Raise :class:`HealthCheckFailed` unless ``raw`` is a finite YOLO head output."""
    if raw.ndim != 3 or raw.shape[0] != batch or raw.shape[1] != 4 + classes:
        raise HealthCheckFailed(
            f"output shape {tuple(raw.shape)}, expected ({batch}, {4 + classes}, anchors) "
            f"for {classes} classes"
        )
    if not np.isfinite(raw).all():
        bad = int((~np.isfinite(raw)).sum())
        raise HealthCheckFailed(f"output has {bad} non-finite values (NaN/inf)")


def backend_for(path: Path) -> str:
    """``tensorrt`` for ``.engine`` files, ``onnxruntime`` (CPU) for ONNX."""
    return "tensorrt" if path.suffix == ".engine" else "onnxruntime"


def check_model(path: Path, threads: int | None = 1) -> Health:
    """Load ``path`` and run the test inference.

    Raises:
        HealthCheckFailed: the model does not load, or its output is wrong.
    """
    from detpipe.runtime.backends import load_predictor, model_file
    from detpipe.runtime.image import preprocess

    try:
        predictor = load_predictor(model_file(path), backend_for(path), threads=threads)
        x, _ = preprocess([probe_image()], predictor.imgsz, predictor.batch)
        raw = np.asarray(predictor.infer(x))
        check_output(raw, x.shape[0], len(predictor.names))
        detections = predictor([probe_image()])[0]
    except HealthCheckFailed:
        raise
    except DetpipeError as e:
        raise HealthCheckFailed(f"{path.name}: {e}") from None
    except Exception as e:  # a runtime that crashes on a corrupt model raises anything
        raise HealthCheckFailed(
            f"{path.name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    log.info("health check of %s passed: output %s, %d detections", path, tuple(raw.shape), len(detections))
    return Health(tuple(raw.shape), len(detections))
