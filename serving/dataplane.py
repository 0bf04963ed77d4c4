"""The data plane: images in, detections out. Knows nothing of HTTP.

Per image: decode and letterbox on a worker thread of the caller (so it overlaps the
running model call), then the :class:`~detpipe.serving.batcher.DynamicBatcher` stacks letterboxed
images from concurrent requests into one model call; NMS runs per image with that
request's thresholds, and boxes come back in the image's own pixels::

    plane = DataPlane(load_model(cfg), cfg)
    await plane.start()
    result = await plane.detect([jpeg_bytes], plane.nms_config(conf=0.3))
    await plane.stop()
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from detpipe.errors import InvalidInput, NotFound, PayloadTooLarge, Unavailable
from detpipe.export.runtime import (
    Detections,
    Letterbox,
    PostprocessConfig,
    decode_image,
    letterbox,
    postprocess,
    to_input,
)
from detpipe.serving.batcher import DynamicBatcher
from detpipe.serving.config import ServerConfig
from detpipe.serving.metrics import ServerMetrics
from detpipe.serving.model import ServingModel


@dataclass(frozen=True)
class _Prepared:
    image: np.ndarray  # letterboxed HWC BGR uint8
    letterbox: Letterbox
    nms: PostprocessConfig


class DataPlane:
    """Serves one model: readiness, metadata and batched detection.

    Args:
        model: the loaded model.
        cfg: limits, batching and default NMS settings.
        metrics: where to record (a fresh :class:`ServerMetrics` if None).
    """

    def __init__(self, model: ServingModel, cfg: ServerConfig, metrics: ServerMetrics | None = None) -> None:
        self.model = model
        self.cfg = cfg
        self.metrics = metrics or ServerMetrics()
        limit = model.max_batch
        self.batcher = DynamicBatcher(
            self._run_batch,
            max_batch=min(cfg.max_batch, limit) if limit else cfg.max_batch,
            max_delay_s=cfg.max_delay_ms / 1000.0,
            max_queue=cfg.max_queue,
            on_depth=self.metrics.queue_images.set,
        )
        self.ready = False
        self.metrics.model_info.labels(model.name, model.version, model.format, model.backend).set(1)

    async def start(self) -> None:
        """Start batching and take requests."""
        await self.batcher.start()
        self.ready = True
        self.metrics.ready.set(1)

    async def stop(self) -> None:
        """Stop taking requests (readiness goes false), finish the admitted ones."""
        self.ready = False
        self.metrics.ready.set(0)
        await self.batcher.stop()

    def check_model(self, name: str) -> None:
        """Raises NotFound unless ``name`` is the served model."""
        if name != self.model.name:
            raise NotFound(f"model {name!r} is not served here (this server serves {self.model.name!r})")

    def nms_config(
        self, conf: float | None = None, iou: float | None = None, max_det: int | None = None
    ) -> PostprocessConfig:
        """The request's NMS settings: its overrides on top of the server's defaults.

        Raises:
            InvalidInput: a threshold outside [0, 1] or ``max_det`` < 1.
        """
        overrides = {"conf": conf, "iou": iou, "max_det": max_det}
        return replace(self.cfg.nms, **{k: v for k, v in overrides.items() if v is not None})

    async def detect(self, images: list[bytes], nms: PostprocessConfig | None = None) -> list[dict[str, Any]]:
        """Detections for each encoded image, in request order.

        Raises:
            InvalidInput: no images, or one that does not decode (its index is named).
            PayloadTooLarge: more than ``max_images`` images.
            Overloaded: the queue is full.
            Unavailable: the server is not ready (starting or stopping).
        """
        if not self.ready:
            raise Unavailable("model is not ready")
        if not images:
            raise InvalidInput("no images in the request")
        if len(images) > self.cfg.max_images:
            raise PayloadTooLarge(f"{len(images)} images in one request; the limit is {self.cfg.max_images}")
        nms = nms or self.cfg.nms
        self.batcher.ensure_room(len(images))  # refuse before decoding, not after
        prepared = await asyncio.to_thread(self._prepare, images, nms)
        results = await self.batcher.submit(prepared)
        return [
            _as_json(det, p.letterbox, self.model.predictor.names)
            for det, p in zip(results, prepared, strict=True)
        ]

    def _prepare(self, images: list[bytes], nms: PostprocessConfig) -> list[_Prepared]:
        out = []
        for i, data in enumerate(images):
            try:
                image = decode_image(data, self.cfg.max_image_pixels)
            except InvalidInput as e:
                raise InvalidInput(f"image {i}: {e}") from None
            padded, lb = letterbox(image, self.model.predictor.imgsz)
            out.append(_Prepared(padded, lb, nms))
        return out

    def _run_batch(self, items: list[_Prepared]) -> list[Detections]:
        """One model call (on the model thread): stack, run the network, NMS per image."""
        start = time.perf_counter()
        predictor = self.model.predictor
        x = to_input([p.image for p in items], predictor.imgsz, predictor.batch)
        output = predictor.infer(x)
        results = [postprocess(output[i : i + 1], [p.letterbox], p.nms)[0] for i, p in enumerate(items)]
        self.metrics.observe_batch(len(items), time.perf_counter() - start, sum(len(r) for r in results))
        return results


def _as_json(det: Detections, lb: Letterbox, names: dict[int, str]) -> dict[str, Any]:
    h, w = lb.orig_shape
    return {
        "width": w,
        "height": h,
        "detections": [
            {
                "box": [round(float(v), 2) for v in box],
                "score": round(float(score), 5),
                "class_id": int(cls),
                "class_name": names.get(int(cls), str(int(cls))),
            }
            for box, score, cls in zip(det.boxes, det.scores, det.classes, strict=True)
        ],
    }
