"""Prometheus metrics of the inference server, on a registry of its own (one per app).

Names follow Prometheus conventions (base units, ``_total`` counters); ``route`` is the
route template (``/v1/models/{name}:predict``), never the raw path, so label values stay
bounded. A canary analysis compares stable and canary pods on, for example::

    sum(rate(detpipe_http_requests_total{route=~".*:(predict|detect)",code=~"5.."}[5m]))
      / sum(rate(detpipe_http_requests_total{route=~".*:(predict|detect)"}[5m]))
    histogram_quantile(0.95, sum by (le) (rate(detpipe_http_request_duration_seconds_bucket[5m])))

``detpipe_model_info`` (value 1) carries the served model's name, version, format and
backend, to join on or to tell canary from stable.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServerMetrics:
    """Every metric the server exports; ``registry`` is what ``/metrics`` renders."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "detpipe_http_requests", "HTTP requests by route, method and status code",
            ["route", "method", "code"], registry=r,
        )  # fmt: skip
        self.request_seconds = Histogram(
            "detpipe_http_request_duration_seconds", "HTTP request latency, received to response sent",
            ["route", "method"], buckets=LATENCY_BUCKETS, registry=r,
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
        self.images = Counter("detpipe_images", "images run through the model", registry=r)
        self.detections = Counter("detpipe_detections", "detections returned", registry=r)
        self.model_info = Gauge(
            "detpipe_model_info", "the served model (value 1)",
            ["name", "version", "format", "backend"], registry=r,
        )  # fmt: skip
        self.ready = Gauge("detpipe_model_ready", "1 when the server takes inference requests", registry=r)

    def observe_batch(self, size: int, seconds: float, detections: int) -> None:
        """One model call of ``size`` images took ``seconds`` and found ``detections``."""
        self.batch_size.observe(size)
        self.inference_seconds.observe(seconds)
        self.images.inc(size)
        self.detections.inc(detections)


class MetricsMiddleware:
    """ASGI middleware: counts and times every HTTP request by route template and status."""

    def __init__(self, app: Any, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            method = scope.get("method", "")
            self.metrics.requests.labels(template, method, str(status["code"])).inc()
            self.metrics.request_seconds.labels(template, method).observe(time.perf_counter() - start)
