"""Prometheus metrics of the inference server, on a registry of its own (one per app).

Names follow Prometheus conventions (base units, ``_total`` counters). Every label value
is bounded: ``route`` is the route template (``/v1/models/{name}:predict``), never the raw
path; ``method`` one of :data:`METHODS` (anything else is ``other``); ``model``/``version``
the model that answered (from its ``X-Model-*`` headers; a reload changes them at once).
A canary analysis compares versions on, for example::

    sum(rate(detpipe_http_requests_total{version="4",code=~"5.."}[5m]))
      / sum(rate(detpipe_http_requests_total{version="4",route=~".*(predict|detect|infer)"}[5m]))
    histogram_quantile(0.95,
      sum by (le) (rate(detpipe_http_request_duration_seconds_bucket{version="4"}[5m])))

``detpipe_model_info`` (value 1) carries the served model's name, version, format and
backend. With a shadow model, ``detpipe_shadow_*`` compare it with the live one by version
pair (``version``, ``shadow_version``): matched-box IoU, class agreement, detection-count
delta, latency, and requests run/dropped/failed. With field sampling (``--sample-payloads``),
``detpipe_payload_samples_total{outcome}`` counts sampled images by what became of them
(:data:`SAMPLE_OUTCOMES`), ``detpipe_payload_samples_queued`` those waiting to be written and
``detpipe_payload_sample_bytes_total`` the bytes written.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
IOU_BUCKETS = (0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
DELTA_BUCKETS = (-10, -5, -2, -1, 0, 1, 2, 5, 10)
SAMPLE_OUTCOMES = ("written", "dropped_full", "dropped_cap", "failed")
"""What became of a sampled image: written to the store; dropped because the write queue was
full, or because the size cap was reached; failed (the store refused or was unreachable)."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class ServerMetrics:
    """Every metric the server exports; ``registry`` is what ``/metrics`` renders."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "detpipe_http_requests", "HTTP requests by route, method and status code",
            ["route", "method", "code", "model", "version"], registry=r,
        )  # fmt: skip
        self.request_seconds = Histogram(
            "detpipe_http_request_duration_seconds", "HTTP request latency, received to response sent",
            ["route", "method", "model", "version"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "detpipe_inference_batch_size", "images per model call (dynamic batching)",
            buckets=BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.inference_seconds = Histogram(
            "detpipe_inference_duration_seconds", "one model call: stack, network and NMS of a batch",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_images = Gauge(
            "detpipe_queue_images",
            "images admitted and not yet answered (queued or in the model)",
            registry=r,
        )
        self.body_bytes = Gauge(
            "detpipe_request_body_bytes",
            "request body bytes reserved by requests in flight (capped by --max-inflight-mb)",
            registry=r,
        )
        self.images = Counter("detpipe_images", "images run through the model", registry=r)
        self.detections = Counter("detpipe_detections", "detections returned", registry=r)
        self.model_info = Gauge(
            "detpipe_model_info", "the served model (value 1)",
            ["name", "version", "format", "backend"], registry=r,
        )  # fmt: skip
        self.ready = Gauge("detpipe_model_ready", "1 when the server takes inference requests", registry=r)
        self.reloads = Counter(
            "detpipe_model_reloads", "model reloads by outcome (success, failure)", ["outcome"], registry=r
        )
        pair = ["version", "shadow_version"]
        self.shadow_requests = Counter(
            "detpipe_shadow_requests", "sampled requests for the shadow by outcome (ok, dropped, error)",
            [*pair, "outcome"], registry=r,
        )  # fmt: skip
        self.shadow_matched = Counter(
            "detpipe_shadow_matched_boxes", "live detections matched by a shadow box (IoU >= 0.5)", pair,
            registry=r,
        )  # fmt: skip
        self.shadow_agree = Counter(
            "detpipe_shadow_class_agreements", "matched boxes where shadow and live agree on the class",
            pair, registry=r,
        )  # fmt: skip
        self.shadow_iou = Histogram(
            "detpipe_shadow_iou", "IoU of each matched live/shadow box pair", pair, buckets=IOU_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.shadow_delta = Histogram(
            "detpipe_shadow_detection_delta", "shadow minus live detections per image", pair,
            buckets=DELTA_BUCKETS, registry=r,
        )  # fmt: skip
        self.shadow_seconds = Histogram(
            "detpipe_shadow_duration_seconds", "one shadow model call: network and NMS", pair,
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.payload_samples = Counter(
            "detpipe_payload_samples",
            "sampled images by outcome (written, dropped_full, dropped_cap, failed)",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.payload_samples_queued = Gauge(
            "detpipe_payload_samples_queued", "sampled images waiting to be written to the store", registry=r
        )
        self.payload_sample_bytes = Counter(
            "detpipe_payload_sample_bytes", "bytes of sampled images and their JSON written to the store",
            registry=r,
        )  # fmt: skip
        self._model_labels: tuple[str, ...] | None = None

    def set_model(self, model: Any) -> None:
        """``detpipe_model_info`` names ``model`` (and no longer the one before it)."""
        labels = (model.name, model.version, model.format, model.backend)
        if self._model_labels is not None and self._model_labels != labels:
            self.model_info.remove(*self._model_labels)
        self.model_info.labels(*labels).set(1)
        self._model_labels = labels

    def observe_batch(self, size: int, seconds: float, detections: int) -> None:
        """One model call of ``size`` images took ``seconds`` and found ``detections``."""
        self.batch_size.observe(size)
        self.inference_seconds.observe(seconds)
        self.images.inc(size)
        self.detections.inc(detections)


class MetricsMiddleware:
    """ASGI middleware: counts and times every HTTP request by route template, status and model.

    The model and version come from the response's ``X-Model-Name``/``X-Model-Version``
    headers; a response without them gets those of ``current()``, the model serving now.
    """

    def __init__(self, app: Any, metrics: ServerMetrics, current: Any) -> None:
        self.app = app
        self.metrics = metrics
        self.current = current

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        model = self.current()
        seen = {"code": 500, "model": model.name, "version": model.version}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                seen["code"] = message["status"]
                headers = dict(message.get("headers") or ())
                if b"x-model-version" in headers:
                    seen["model"] = headers.get(b"x-model-name", b"").decode("latin-1")
                    seen["version"] = headers[b"x-model-version"].decode("latin-1")
                else:
                    message["headers"] = [
                        *message.get("headers", ()),
                        (b"x-model-name", model.name.encode()),
                        (b"x-model-version", model.version.encode()),
                    ]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            method = scope.get("method", "")
            method = method if method in METHODS else "other"
            m, v = seen["model"], seen["version"]
            self.metrics.requests.labels(template, method, str(seen["code"]), m, v).inc()
            self.metrics.request_seconds.labels(template, method, m, v).observe(time.perf_counter() - start)
