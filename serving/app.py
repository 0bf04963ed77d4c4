"""HTTP transport: every route in one place, one mapping from detpipe errors to statuses.

Routes (KServe's v1 REST protocol, the Open Inference Protocol v2 with Triton's binary tensor
data and model repository extensions, raw-image detection)::

    GET  /healthz, /v2/health/live               liveness
    GET  /readyz,  /v2/health/ready              readiness (503 while starting or draining)
    GET  /v1/models                              {"models": [name]}
    GET  /v1/models/{name}                       metadata: version, format, backend, imgsz, classes, ready
    GET  /v1/models/{name}/card                  the release's model card (text/markdown; 404 without one)
    POST /v1/models/{name}:predict               JSON {"instances": [{"b64": ...}, ...], "parameters": {...}}
    POST /v1/models/{name}:detect                one image: raw body (image/*) or multipart (-F file=@a.jpg)
    GET  /v2                                     server metadata and extensions
    GET  /v2/models/{name}[/versions/{v}]        inputs and outputs with datatypes and shapes
    GET  /v2/models/{name}[/versions/{v}]/ready  200 when ready
    GET  /v2/models/{name}[/versions/{v}]/config Triton's model configuration (tensors, batching)
    GET  /v2/models[/{name}[/versions/{v}]]/stats Triton's inference statistics (counts, durations)
    POST /v2/models/{name}[/versions/{v}]/infer  tensors as JSON or binary data (binary tensor extension)
    POST /v2/repository/index                    the served model and its state
    POST /v2/repository/models/{name}/load       reload; {"parameters": {"uri": ..., "version": ...}}
    GET  /metrics                                Prometheus text format

Errors answer ``{"error": "<one line>"}`` with the status of the detpipe error class
(400 bad input, 401 no or a wrong reload token, with ``WWW-Authenticate: Bearer``, 403 reload
off or a URI outside the allowed roots, 404 unknown model, 413 too large, 415 wrong content
type, 503 not ready or overloaded, the latter with ``Retry-After``); they name no local path,
store address or exception text (the server log has those). Every response carries
``X-Model-Name`` and ``X-Model-Version`` of the model that answered, so a client can see which
side of a canary (or of a reload) it got.

Request bodies are read within a server-wide budget (:class:`~detpipe.serving.bodies.BodyBudget`,
``--max-inflight-mb``) and bodies are parsed on a thread of their own, off the event loop; JSON
tensor bodies (``:predict``, OIP infer without binary data) have their own, smaller limit.
The load route is off unless ``--allow-reload``, and then takes a bearer token
(:mod:`detpipe.serving.access`). SIGHUP reloads the model as the load route does. With a
:class:`~detpipe.serving.sampling.PayloadSampler`, ``:detect`` and ``:predict`` offer their
images and answers to it after answering (it never blocks them); the lifespan starts it and,
after the data plane has drained, writes what it still holds::

    app = create_app(DataPlane(load_model(cfg), cfg))
    uvicorn.run(app, host="0.0.0.0", port=8080, http=header_timeout_protocol(10.0))
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from detpipe import __version__
from detpipe.errors import (
    DetpipeError,
    Forbidden,
    InvalidInput,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from detpipe.serving import oip, timing
from detpipe.serving.access import RELOAD_OFF, check_bearer
from detpipe.serving.bodies import BodyBudget, image_from_multipart, parse_json
from detpipe.serving.dataplane import Answer, DataPlane
from detpipe.serving.metrics import MetricsMiddleware
from detpipe.serving.model import ServingModel
from detpipe.serving.sampling import PayloadSampler
from detpipe.serving.stats import model_config
from detpipe.serving.v1 import parse_predict

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
        "content": {
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
            },
        },
    }
}
_CARD_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/markdown": {"schema": {"type": "string"}}}, "description": "MODEL_CARD.md"}
}
_IMAGE_TYPES = ("image/", "application/octet-stream")
_LOAD_BODY_BYTES = 64 * 1024
INFER_PATHS = ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer")
"""OIP infer, the hot routes: :class:`PlainRoute`, first in the route table."""
_ERROR_HEADERS = {Overloaded: {"Retry-After": "1"}, Unauthorized: {"WWW-Authenticate": "Bearer"}}


def _headers(model: ServingModel) -> dict[str, str]:
    return {"X-Model-Name": model.name, "X-Model-Version": model.version}


def _answer_headers(answer: Answer[Any]) -> dict[str, str]:
    """The model's headers and the W3C ``Server-Timing`` of its model calls."""
    return {**_headers(answer.model), timing.HEADER: timing.server_timing(answer.model_seconds)}


class PlainRoute(APIRoute):
    """A route whose endpoint takes the :class:`Request` alone and reads ``request.path_params``.

    FastAPI's handler solves and validates every declared parameter of a request (about
    0.1 ms a call in an ad-hoc in-process ASGI timing on a busy 2-core CPU; end to end, the
    p50 did not move measurably: docs/BENCHMARKS.md). The OIP infer route checks its own
    input, so this handler just awaits the endpoint. Errors still go through the app's
    exception handlers, and the route is still in the OpenAPI schema.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            return await endpoint(request)

        return handler


def _path_parameters(path: str) -> dict[str, Any]:
    """OpenAPI's ``parameters`` for the ``{name}`` parts of ``path`` (a :class:`PlainRoute` declares none)."""
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    return {
        "parameters": [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
        ]
    }


def create_app(plane: DataPlane, sampler: PayloadSampler | None = None) -> FastAPI:
    """The FastAPI app serving ``plane``; the lifespan starts and drains it, SIGHUP reloads.

    ``sampler``: where image requests are sampled to (``--sample-payloads``); None: off.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await plane.start()
        if sampler is not None:
            sampler.start()
        loop = asyncio.get_running_loop()
        reloads: set[asyncio.Task] = set()

        def on_sighup() -> None:
            task = loop.create_task(_reload_logged(plane))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        with suppress(NotImplementedError, RuntimeError):  # no signals off the main thread
            loop.add_signal_handler(signal.SIGHUP, on_sighup)
        try:
            yield
        finally:
            with suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGHUP)
            await plane.stop()
            if sampler is not None:
                await asyncio.to_thread(sampler.stop)

    app = FastAPI(
        title="detpipe inference server",
        version=__version__,
        description=f"YOLO object detection: {plane.model.name} {plane.model.version}",
        lifespan=lifespan,
    )
    _add_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=plane.metrics, current=lambda: plane.model)
    cfg = plane.cfg
    budget = BodyBudget(cfg.max_inflight_bytes, plane.metrics.body_bytes.set)
    json_limit = min(cfg.max_json_bytes, cfg.max_body_bytes)

    async def v2_infer(request: Request) -> Response:
        params = request.path_params
        model = plane.check_model(params["name"], params.get("version"))
        plane.ensure_room()
        header_length = request.headers.get(oip.HEADER_LENGTH)
        binary = header_length is not None  # the binary tensor data extension: raw bytes after a JSON header
        limit, what = (cfg.max_body_bytes, "request body") if binary else (json_limit, "JSON tensor body")
        async with budget.read(request, limit, what) as body:
            if binary and header_length.isdigit() and int(header_length) > json_limit:
                raise PayloadTooLarge(f"inference header of {header_length} bytes; the limit is {json_limit}")
            json_bytes = int(header_length) if binary and header_length.isdigit() else len(body)
            infer = await plane.parse(
                oip.parse_infer, body, header_length, model, cfg.max_images, json_bytes=json_bytes
            )
            answer = await plane.infer(infer.x, model)
        content, headers = oip.infer_response(answer.model, infer, answer.value)
        return Response(content, headers={**headers, **_answer_headers(answer)})

    for path in INFER_PATHS:
        # the hot route, first in the table (routes are matched in order), without parameter solving
        app.router.add_api_route(
            path,
            v2_infer,
            methods=["POST"],
            route_class_override=PlainRoute,
            openapi_extra=_path_parameters(path),
            name="v2_infer",
        )

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
        model = plane.check_model(name)
        return JSONResponse({**model.metadata(), "ready": plane.ready}, headers=_headers(model))

    @app.get("/v1/models/{name}/card", response_class=Response, responses=_CARD_RESPONSE)
    async def model_card(name: str) -> Response:
        model = plane.check_model(name)
        if model.card is None:
            raise NotFound(
                f"model {model.name!r} version {model.version!r} has no model card "
                "(only releases published with a MODEL_CARD.md have one)"
            )
        return Response(model.card, media_type="text/markdown; charset=utf-8", headers=_headers(model))

    @app.post("/v1/models/{name}:predict", openapi_extra=_PREDICT_BODY)
    async def predict(name: str, request: Request) -> JSONResponse:
        plane.check_model(name)
        plane.ensure_room()
        async with budget.read(request, json_limit, "JSON body") as body:
            images, params = await plane.parse(parse_predict, body, json_bytes=len(body))
            nms = plane.nms_config(**params)
            answer = await plane.detect(images, nms)
        model = answer.model
        if sampler is not None:
            sampler.offer(model, images, answer.value, nms, "predict")
        body = {"model_name": model.name, "model_version": model.version, "predictions": answer.value}
        return JSONResponse(body, headers=_answer_headers(answer))

    @app.post("/v1/models/{name}:detect", openapi_extra=_DETECT_BODY)
    async def detect(
        name: str,
        request: Request,
        conf: float | None = Query(None, ge=0.0, le=1.0, description="confidence threshold"),
        iou: float | None = Query(None, ge=0.0, le=1.0, description="NMS IoU threshold"),
        max_det: int | None = Query(None, ge=1, description="most detections to return"),
    ) -> JSONResponse:
        plane.check_model(name)
        content_type = request.headers.get("content-type", "")
        kind = content_type.split(";")[0].strip().lower()
        multipart = kind == "multipart/form-data"
        if not (multipart or kind.startswith(_IMAGE_TYPES)):
            raise UnsupportedMediaType(
                f"content type {kind or 'none'!r}: send image bytes as image/* or application/octet-stream, "
                "or a multipart/form-data upload"
            )
        plane.ensure_room()
        async with budget.read(request, cfg.max_body_bytes) as data:
            if multipart:
                data = await image_from_multipart(data, content_type)
            nms = plane.nms_config(conf, iou, max_det)
            answer = await plane.detect([data], nms)
        model = answer.model
        if sampler is not None:
            sampler.offer(model, [data], answer.value, nms, "detect")
        body = {"model_name": model.name, "model_version": model.version, **answer.value[0]}
        return JSONResponse(body, headers=_answer_headers(answer))

    @app.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return {"name": "detpipe", "version": __version__, "extensions": oip.EXTENSIONS}

    @app.get("/v2/models/stats")
    async def v2_all_stats() -> dict[str, Any]:  # before /v2/models/{name}: "stats" is no model name
        return plane.stats.triton(plane.model.name)

    @app.get("/v2/models/{name}/config")
    @app.get("/v2/models/{name}/versions/{version}/config")
    async def v2_model_config(name: str, version: str | None = None) -> JSONResponse:
        model = plane.check_model(name, version)
        body = model_config(model, plane.batch_limit(model), cfg.max_delay_ms)
        return JSONResponse(body, headers=_headers(model))

    @app.get("/v2/models/{name}/stats")
    @app.get("/v2/models/{name}/versions/{version}/stats")
    async def v2_model_stats(name: str, version: str | None = None) -> JSONResponse:
        model = plane.check_model(name, version)
        return JSONResponse(plane.stats.triton(model.name, version), headers=_headers(model))

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def v2_model_metadata(name: str, version: str | None = None) -> JSONResponse:
        model = plane.check_model(name, version)
        return JSONResponse(oip.model_metadata(model), headers=_headers(model))

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def v2_model_ready(name: str, version: str | None = None) -> JSONResponse:
        model = plane.check_model(name, version)
        body = {"name": model.name, "version": model.version, "ready": plane.ready}
        return JSONResponse(body, status_code=200 if plane.ready else 503, headers=_headers(model))

    @app.post("/v2/repository/index")
    async def repository_index() -> list[dict[str, Any]]:
        model = plane.model
        state = "READY" if plane.ready else "UNAVAILABLE"
        return [{"name": model.name, "version": model.version, "state": state}]

    @app.post("/v2/repository/models/{name}/load")
    async def repository_load(name: str, request: Request) -> JSONResponse:
        if not cfg.allow_reload or not cfg.reload_token:
            raise Forbidden(RELOAD_OFF)
        check_bearer(request.headers.get("authorization"), cfg.reload_token)
        plane.check_model(name)
        async with budget.read(request, _LOAD_BODY_BYTES, "load request") as body:
            uri, version = _load_request(body)
        model = await plane.reload(uri, version)
        body = {"name": model.name, "version": model.version}
        return JSONResponse(body, headers=_headers(model))

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(plane.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _load_request(body: bytes) -> tuple[str | None, str | None]:
    """``parameters.uri`` and ``parameters.version`` of a repository load request (both optional)."""
    if not body.strip():
        return None, None
    doc = parse_json(body, "load request")
    params = doc.get("parameters", {}) if isinstance(doc, dict) else None
    if not isinstance(params, dict):
        raise InvalidInput(
            'load request: expected {"parameters": {"uri": "<model or release URI>", "version": "<v>"}}'
        )
    unknown = sorted(set(params) - {"uri", "version"})
    if unknown:
        raise InvalidInput(f"load request: unknown parameters {', '.join(unknown)} (known: uri, version)")
    for key in ("uri", "version"):
        if key in params and not (isinstance(params[key], str) and params[key].strip()):
            raise InvalidInput(f"load request: parameters.{key} must be a non-empty string")
    return params.get("uri"), params.get("version")


async def _reload_logged(plane: DataPlane) -> None:
    """SIGHUP: reload what --model names; a failure is logged, the old model keeps serving."""
    with suppress(DetpipeError):
        await plane.reload()


def _add_error_handlers(app: FastAPI) -> None:
    """detpipe errors -> their HTTP status with ``{"error": message}``; the same body everywhere."""

    @app.exception_handler(DetpipeError)
    async def detpipe_error(request: Request, e: DetpipeError) -> JSONResponse:
        headers = next((h for cls, h in _ERROR_HEADERS.items() if isinstance(e, cls)), None)
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
