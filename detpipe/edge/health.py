"""The health check an installed model must pass before the agent commits to it.

The runtime's one smoke test (:func:`detpipe.runtime.warmup.load_warm`, the server's warm-up
too) on a fixed, generated image (:func:`~detpipe.runtime.warmup.probe_image`, so every
device checks the same input): the model must load (onnxruntime on the CPU for ONNX;
TensorRT, sidecar-checked, for an engine), return a finite raw output of shape
``(batch, 4 + classes, anchors)`` and go through the full detection post-processing::

    check_model(Path("slots/b/model.onnx"))          # raises HealthCheckFailed with the reason
"""

from __future__ import annotations

import logging
from pathlib import Path

from detpipe.errors import DetpipeError, GateFailed
from detpipe.runtime.warmup import WarmUp

log = logging.getLogger(__name__)

Health = WarmUp
"""A passed check: the raw output shape and how many detections the test image gave."""


class HealthCheckFailed(GateFailed):
    """The installed model did not pass its test inference."""


def backend_for(path: Path) -> str:
    """``tensorrt`` for ``.engine`` files, ``onnxruntime`` (CPU) for ONNX."""
    return "tensorrt" if path.suffix == ".engine" else "onnxruntime"


def check_model(path: Path, threads: int | None = 1) -> Health:
    """Load ``path`` and run the test inference.

    Raises:
        HealthCheckFailed: the model does not load, or its output is wrong.
    """
    from detpipe.runtime.backends import model_file
    from detpipe.runtime.warmup import WarmUpFailed, load_warm, probe_image

    try:
        _, health = load_warm(model_file(path), backend_for(path), threads=threads, image=probe_image())
    except WarmUpFailed as e:
        raise HealthCheckFailed(str(e)) from None
    except DetpipeError as e:
        raise HealthCheckFailed(f"{path.name}: {e}") from None
    except Exception as e:  # a runtime that crashes on a corrupt model raises anything
        raise HealthCheckFailed(
            f"{path.name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    log.info("health check of %s passed: output %s, %d detections", path, health.output_shape,
             health.detections)  # fmt: skip
    return health
