"""HTTP transport: every route in one place, one mapping from detpipe errors to statuses.

Routes (KServe's v1 REST protocol for inference, its v2 paths for health)::

    GET  /healthz, /v2/health/live          liveness
    GET  /readyz,  /v2/health/ready         readiness (503 while starting or draining)
    GET  /v1/models                         {"models": [name]}
    GET  /v1/models/{name}                  metadata: version, format, backend, imgsz, classes, ready
    POST /v1/models/{name}:predict          JSON {"instances": [{"b64": ...}, ...], "parameters": {...}}
    POST /v1/models/{name}:detect           one image as the raw body (image/*), ?conf=&iou=&max_det=
    GET  /metrics                           Prometheus text format

Errors answer ``{"error": "<one line>"}`` with the status of the detpipe error class
(400 bad input, 404 unknown model, 413 too large, 415 wrong content type, 503 not ready or
overloaded, the latter with ``Retry-After``). Inference responses carry ``X-Model-Name``
and ``X-Model-Version``, so a client can see which side of a canary answered::

    app = create_app(DataPlane(load_model(cfg), cfg))
    uvicorn.run(app, host="0.0.0.0", port=8080)
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from detpipe import __version__
from detpipe.errors import DetpipeError, InvalidInput, Overloaded, PayloadTooLarge, UnsupportedMediaType
from detpipe.serving.dataplane import DataPlane
from detpipe.serving.metrics import MetricsMiddleware

log = logging.getLogger(__name__)

_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "example": {"instances": [{"b64": "<base64 JPEG>"}], "parameters": {"conf": 0.25}},
            }
        },
    }
}
_DETECT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
    }
}


def create_app(plane: DataPlane) -> FastAPI:
    """The FastAPI app serving ``plane``; the lifespan starts and drains its batcher."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await plane.start()
        try:
            yield
        finally:
            await plane.stop()

    app = FastAPI(
        title="detpipe inference server",
        version=__version__,
        description=f"YOLO object detection: {plane.model.name} {plane.model.version}",
        lifespan=lifespan,
    )
    _add_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=plane.metrics)
    model_headers = {"X-Model-Name": plane.model.name, "X-Model-Version": plane.model.version}

    @app.get("/healthz")
    @app.get("/v2/health/live")
    async def live() -> dict[str, Any]:
        return {"live": True}

    @app.get("/readyz")
    @app.get("/v2/health/ready")
    async def ready() -> JSONResponse:
        body = {"ready": plane.ready, "model": plane.model.name, "version": plane.model.version}
        return JSONResponse(body, status_code=200 if plane.ready else 503)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"models": [plane.model.name]}

    @app.get("/v1/models/{name}")
    async def model_metadata(name: str) -> JSONResponse:
        plane.check_model(name)
        return JSONResponse({**plane.model.metadata(), "ready": plane.ready}, headers=model_headers)

    @app.post("/v1/models/{name}:predict", openapi_extra=_PREDICT_BODY)
    async def predict(name: str, request: Request) -> JSONResponse:
        plane.check_model(name)
        images, params = _parse_predict(await _read_body(request, plane.cfg.max_body_bytes))
        nms = plane.nms_config(**params)
        predictions = await plane.detect(images, nms)
        body = {
            "model_name": plane.model.name,
            "model_version": plane.model.version,
            "predictions": predictions,
        }
        return JSONResponse(body, headers=model_headers)

    @app.post("/v1/models/{name}:detect", openapi_extra=_DETECT_BODY)
    async def detect(
        name: str,
        request: Request,
        conf: float | None = Query(None, ge=0.0, le=1.0, description="confidence threshold"),
        iou: float | None = Query(None, ge=0.0, le=1.0, description="NMS IoU threshold"),
        max_det: int | None = Query(None, ge=1, description="most detections to return"),
    ) -> JSONResponse:
        plane.check_model(name)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not (kind.startswith("image/") or kind == "application/octet-stream"):
            raise UnsupportedMediaType(
                f"content type {kind or 'none'!r}: send image bytes as image/* or application/octet-stream"
            )
        data = await _read_body(request, plane.cfg.max_body_bytes)
        [prediction] = await plane.detect([data], plane.nms_config(conf, iou, max_det))
        body = {"model_name": plane.model.name, "model_version": plane.model.version, **prediction}
        return JSONResponse(body, headers=model_headers)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(plane.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _add_error_handlers(app: FastAPI) -> None:
    """detpipe errors -> their HTTP status with ``{"error": message}``; the same body everywhere."""

    @app.exception_handler(DetpipeError)
    async def detpipe_error(request: Request, e: DetpipeError) -> JSONResponse:
        headers = {"Retry-After": "1"} if isinstance(e, Overloaded) else None
        if e.http_status >= 500 and not isinstance(e, Overloaded):
            log.warning("%s %s: %s", request.method, request.url.path, e)
        return JSONResponse({"error": str(e)}, status_code=e.http_status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code, headers=e.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {type(e).__name__}"}, status_code=500)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes before reading all of it."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body of {int(length)} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_predict(body: bytes) -> tuple[list[bytes], dict[str, Any]]:
    """``{"instances": [{"b64": ...} | {"image": {"b64": ...}}], "parameters": {...}}`` -> images, params."""
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidInput(f"body is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("instances"), list):
        raise InvalidInput('expected a JSON object {"instances": [{"b64": "<base64 image>"}, ...]}')
    images = []
    for i, inst in enumerate(doc["instances"]):
        inst = inst.get("image", inst) if isinstance(inst, dict) else inst
        b64 = inst.get("b64") if isinstance(inst, dict) else None
        if not isinstance(b64, str):
            raise InvalidInput(f'instances[{i}]: expected {{"b64": "<base64 image>"}}')
        try:
            images.append(base64.b64decode(b64, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidInput(f"instances[{i}]: b64 is not valid base64") from None
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput("parameters: expected an object")
    unknown = sorted(set(params) - {"conf", "iou", "max_det"})
    if unknown:
        raise InvalidInput(f"parameters: unknown {', '.join(unknown)} (known: conf, iou, max_det)")
    for key, value in params.items():
        kind = int if key == "max_det" else int | float
        if isinstance(value, bool) or not isinstance(value, kind):
            raise InvalidInput(
                f"parameters.{key}: expected {'an integer' if kind is int else 'a number'}, got {value!r}"
            )
    return images, params
