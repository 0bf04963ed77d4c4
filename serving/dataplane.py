"""The data plane: images or tensors in, detections or raw outputs out. Knows nothing of HTTP.

Per image: decode (size checked from the header first) and letterbox into the model's input
tensor on a bounded decode pool, so it overlaps the running model call; the
:class:`~detpipe.serving.batcher.DynamicBatcher` stacks inputs from concurrent requests into
one model call; NMS runs per image with that request's thresholds, boxes in the image's own
pixels. Open Inference Protocol requests bring the input tensor itself and get the raw output.

The served model can be swapped while requests run (:meth:`DataPlane.reload`): the new model
is loaded, verified and warmed beside the old one, then takes new requests; the old one
finishes what it admitted and is released. What a reload may load is bounded by
:mod:`detpipe.serving.access`; its failures answer without paths or store addresses (those go
to the log); old versions are evicted from the release cache. A shadow model
(:mod:`detpipe.serving.shadow`) may see a sample of the traffic off the response path::

    plane = DataPlane(load_model(cfg), cfg)
    await plane.start()
    answer = await plane.detect([jpeg_bytes], plane.nms_config(conf=0.3))
    answer.model.version, answer.value      # who answered, the detections
    await plane.reload("s3://detpipe/models/yolov8n-coco/4")
    await plane.stop()
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import numpy as np

from detpipe.errors import (
    DetpipeError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    SignatureError,
    StoreError,
    Unavailable,
)
from detpipe.runtime.image import Letterbox, decode_image, letterbox, stack_batch, to_input
from detpipe.runtime.nms import Detections, PostprocessConfig, postprocess
from detpipe.serving.access import allowed_roots, check_target
from detpipe.serving.batcher import DynamicBatcher
from detpipe.serving.config import ServerConfig
from detpipe.serving.metrics import ServerMetrics
from detpipe.serving.model import ServingModel, evict_cache, load_model, release_version_uri
from detpipe.serving.shadow import Shadow
from detpipe.serving.stats import InferenceStats

log = logging.getLogger(__name__)
T = TypeVar("T")

_RELOAD_FAILURES = (  # what a failed reload answers, by class: no path, store address or exception text
    (SignatureError, "reload refused: the release is not signed with this server's release key"),
    (NotFound, "reload failed: no such model, release or version"),
    (StoreError, "reload failed: the store could not be read, or the release does not match its manifest"),
    (Unavailable, "reload failed: this server cannot run that model"),
)
_RELOAD_FAILED = "reload failed: not a model this server can serve"
INLINE_JSON_BYTES = 64 * 1024
"""JSON up to this size is parsed on the event loop (:meth:`DataPlane.parse`)."""


@dataclass(frozen=True)
class _Item:
    """One image's model input and how to answer for it."""

    x: np.ndarray  # (3, h, w) float32, the model's input row
    letterbox: Letterbox | None = None  # None: a tensor request, answered with the raw output
    nms: PostprocessConfig | None = None


@dataclass(frozen=True)
class Answer(Generic[T]):
    """A result and the model that produced it (for headers and metrics)."""

    model: ServingModel
    value: T
    model_seconds: float  # the model calls this request's images were in (the Server-Timing header)


@dataclass(frozen=True)
class _Output:
    """One item's result and the model call it came from (items of one call share its time)."""

    value: Any
    call: int
    seconds: float


def _unpack(outputs: Sequence[_Output]) -> tuple[list[Any], float]:
    """The items' results, and the seconds of the distinct model calls they were in."""
    calls = {o.call: o.seconds for o in outputs}
    return [o.value for o in outputs], sum(calls.values())


@dataclass
class _Served:
    """A model with its own batcher, and the requests that are using it."""

    model: ServingModel
    batcher: DynamicBatcher
    users: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def enter(self) -> None:
        self.users += 1
        self.idle.clear()

    def leave(self) -> None:
        self.users -= 1
        if not self.users:
            self.idle.set()


class DataPlane:
    """Serves one model (swappable at run time): readiness, metadata, batched inference.

    Args:
        model: the loaded model.
        cfg: limits, batching and default NMS settings.
        metrics: where to record (a fresh :class:`ServerMetrics` if None).
        shadow: a candidate model run on a sample of image requests, off the response path.
        loader: loads and warms up a model for :meth:`reload` (``load_model``).
    """

    def __init__(
        self,
        model: ServingModel,
        cfg: ServerConfig,
        metrics: ServerMetrics | None = None,
        shadow: ServingModel | None = None,
        loader: Callable[[ServerConfig], ServingModel] = load_model,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics or ServerMetrics()
        self.stats = InferenceStats()  # Triton's statistics extension (GET .../stats)
        self.loader = loader
        self.ready = False
        self._decode_pool = ThreadPoolExecutor(cfg.decode_threads, thread_name_prefix="detpipe-decode")
        # one body parse at a time: json.loads holds the GIL, so a second thread would add memory, not speed
        self._parse_pool = ThreadPoolExecutor(1, thread_name_prefix="detpipe-parse")
        self._serving: list[_Served] = []  # the active model and any still finishing after a reload
        self._active = self._serve(model)
        self._reload_lock = asyncio.Lock()
        self._reload_roots = allowed_roots(cfg.model, cfg.reload_roots)
        self._retiring: set[asyncio.Task] = set()
        self._calls = itertools.count()  # model call ids (:class:`_Output`)
        self.shadow = (
            Shadow(shadow, cfg.shadow_fraction, self.metrics, max_pending=cfg.shadow_queue)
            if shadow is not None
            else None
        )
        if self.shadow is not None and shadow.predictor.imgsz != model.predictor.imgsz:
            raise InvalidInput(
                f"shadow model takes {shadow.predictor.imgsz}, the live model {model.predictor.imgsz}: "
                "the shadow runs on the live model's input tensor, so both need the same --imgsz"
            )

    @property
    def model(self) -> ServingModel:
        """The model new requests go to."""
        return self._active.model

    def batch_limit(self, model: ServingModel) -> int:
        """The most images one call of ``model`` takes here: ``--max-batch``, clamped to a static batch."""
        limit = model.max_batch
        return min(self.cfg.max_batch, limit) if limit else self.cfg.max_batch

    def _serve(self, model: ServingModel) -> _Served:
        batcher = DynamicBatcher(
            lambda items: self._run_batch(model, items),
            max_batch=self.batch_limit(model),
            max_delay_s=self.cfg.max_delay_ms / 1000.0,
            max_queue=self.cfg.max_queue,
            on_depth=lambda n: self.metrics.queue_images.set(sum(s.batcher.admitted for s in self._serving)),
        )
        served = _Served(model, batcher)
        served.idle.set()
        self._serving.append(served)
        return served

    async def start(self) -> None:
        """Start batching and take requests."""
        await self._active.batcher.start()
        if self.shadow is not None:
            self.shadow.start()
        self.metrics.set_model(self.model)
        self.ready = True
        self.metrics.ready.set(1)
        await self._evict()

    async def stop(self) -> None:
        """Stop taking requests (readiness goes false), finish the admitted ones."""
        self.ready = False
        self.metrics.ready.set(0)
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await self._active.batcher.stop()
        if self.shadow is not None:
            self.shadow.stop()
        self._decode_pool.shutdown(wait=True)
        self._parse_pool.shutdown(wait=True)

    def check_model(self, name: str, version: str | None = None) -> ServingModel:
        """The served model if ``name`` (and ``version``, when given) is it.

        Raises:
            NotFound: another name, or a version this server does not serve.
        """
        model = self.model
        if name != model.name:
            raise NotFound(f"model {name!r} is not served here (this server serves {model.name!r})")
        if version is not None and version != model.version:
            raise NotFound(f"model {name!r} has no version {version!r} here (serving {model.version!r})")
        return model

    def ensure_room(self, n: int = 1) -> None:
        """Refuse now (503) what would not be admitted, before a body is read or decoded."""
        if not self.ready:
            raise Unavailable("model is not ready")
        self._active.batcher.ensure_room(n)

    def nms_config(
        self, conf: float | None = None, iou: float | None = None, max_det: int | None = None
    ) -> PostprocessConfig:
        """The request's NMS settings: its overrides on top of the server's defaults.

        Raises:
            InvalidInput: a threshold outside [0, 1] or ``max_det`` < 1.
        """
        overrides = {"conf": conf, "iou": iou, "max_det": max_det}
        return replace(self.cfg.nms, **{k: v for k, v in overrides.items() if v is not None})

    async def detect(
        self, images: list[bytes], nms: PostprocessConfig | None = None
    ) -> Answer[list[dict[str, Any]]]:
        """Detections for each encoded image, in request order.

        Raises:
            InvalidInput: no images, or one that does not decode (its index is named).
            PayloadTooLarge: more than ``max_images`` images.
            Overloaded: the queue is full.
            Unavailable: the server is not ready (starting or stopping).
        """
        self._check_count(len(images))
        nms = nms or self.cfg.nms
        served = self._enter(len(images))
        try:
            loop = asyncio.get_running_loop()
            items = await loop.run_in_executor(self._decode_pool, self._prepare, served.model, images, nms)
            results, seconds = _unpack(await served.batcher.submit(items))
        finally:
            served.leave()
        if self.shadow is not None:
            self.shadow.offer(served.model.version, items, results)
        names = served.model.predictor.names
        answers = [_as_json(d, i.letterbox, names) for d, i in zip(results, items, strict=True)]
        return Answer(served.model, answers, seconds)

    async def infer(self, x: np.ndarray, model: ServingModel) -> Answer[np.ndarray]:
        """The raw model output for an input tensor ``(n, 3, h, w)`` float32.

        ``model`` is the model the caller checked ``x``'s shape against; should a reload have
        swapped in one with another input size meanwhile, the request is refused (400).
        """
        self._check_count(len(x))
        served = self._enter(len(x))
        try:
            if served.model.predictor.imgsz != model.predictor.imgsz:
                raise InvalidInput("the model was replaced by one with another input size; resend")
            results, seconds = _unpack(await served.batcher.submit([_Item(row) for row in x]))
        finally:
            served.leave()
        return Answer(served.model, results[0][None] if len(results) == 1 else np.stack(results), seconds)

    def _check_count(self, n: int) -> None:
        if not self.ready:
            raise Unavailable("model is not ready")
        if not n:
            raise InvalidInput("no images in the request")
        if n > self.cfg.max_images:
            raise PayloadTooLarge(f"{n} images in one request; the limit is {self.cfg.max_images}")

    def _enter(self, n: int) -> _Served:
        served = self._active
        served.batcher.ensure_room(n)  # refuse before decoding, not after
        served.enter()
        return served

    def _prepare(self, model: ServingModel, images: list[bytes], nms: PostprocessConfig) -> list[_Item]:
        imgsz = model.predictor.imgsz
        out = []
        for i, data in enumerate(images):
            try:
                image = decode_image(data, self.cfg.max_image_pixels)
            except InvalidInput as e:
                raise InvalidInput(f"image {i}: {e}") from None
            padded, lb = letterbox(image, imgsz)
            out.append(_Item(to_input([padded], imgsz)[0], lb, nms))
        return out

    def _run_batch(self, model: ServingModel, items: list[_Item]) -> list[_Output]:
        """One model call (on the model's thread): stack, run the network, NMS per image."""
        start = time.perf_counter()
        predictor = model.predictor
        x = stack_batch([item.x for item in items], predictor.imgsz, predictor.batch)
        output = predictor.infer(x)
        results: list[Any] = []
        detections = 0
        for i, item in enumerate(items):
            if item.nms is None:  # the raw output row (a view: infer's output is a fresh array)
                results.append(output[i])
            else:
                [det] = postprocess(output[i : i + 1], [item.letterbox], item.nms)
                detections += len(det)
                results.append(det)
        elapsed = time.perf_counter() - start
        self.metrics.observe_batch(len(items), elapsed, detections)
        self.stats.record(model.name, model.version, len(items), elapsed)
        call = next(self._calls)  # one model thread per served model; next() on a count is atomic
        return [_Output(r, call, elapsed) for r in results]

    async def reload(self, uri: str | None = None, version: str | None = None) -> ServingModel:
        """Load ``uri`` (default: what ``--model`` names, e.g. the newest release) and swap it in.

        ``version`` picks that version of the release ``uri`` (or ``--model``) names. The
        target must lie under an allowed root (:mod:`detpipe.serving.access`).

        The new model is resolved, verified against its manifest (and signature), loaded and
        warmed while the old one keeps serving; then new requests go to it, and the old one is
        released once the requests it admitted are answered. One reload at a time; afterwards
        the release cache keeps ``cache_keep`` versions of each release.

        Raises:
            Forbidden: the target is outside the allowed roots.
            InvalidInput, NotFound, StoreError, Unavailable: the new model cannot be served;
                the old one stays. Messages name no path (the log has the details).
        """
        async with self._reload_lock:
            try:
                return await self._swap_in(uri, version)
            finally:
                await self._evict()

    async def parse(self, parser: Callable[..., T], *args: Any, json_bytes: int) -> T:
        """``parser(*args)`` on a body with ``json_bytes`` of JSON in it.

        Up to :data:`INLINE_JSON_BYTES` it runs here, on the event loop: the hop to the parse
        thread and back costs more (about 0.4 ms) than parsing an OIP binary request's header.
        Bigger JSON is parsed off the event loop, one body at a time (which bounds the memory
        that parsing JSON tensors takes: about ten times the body).
        """
        if json_bytes <= INLINE_JSON_BYTES:
            return parser(*args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._parse_pool, parser, *args)

    async def _swap_in(self, uri: str | None, version: str | None) -> ServingModel:
        old = self._active
        target = uri or self.cfg.model
        if version is not None:
            target = release_version_uri(target, version)
        target = check_target(target, self._reload_roots)
        cfg = replace(self.cfg, model=target, name=old.model.name)

        try:
            model = await asyncio.to_thread(self.loader, cfg)  # loaded and warmed up
        except Exception as e:
            self.metrics.reloads.labels("failure").inc()
            log.warning("reload of %s failed, still serving %s: %s: %s", target, old.model.version,
                        type(e).__name__, e)  # fmt: skip
            raise _reload_failure(e) from None
        new = self._serve(model)
        await new.batcher.start()
        self._active = new
        self.metrics.set_model(model)
        self.metrics.reloads.labels("success").inc()
        log.info("now serving %s %s (was %s)", model.name, model.version, old.model.version)
        task = asyncio.create_task(self._retire(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        return model

    async def _evict(self) -> None:
        """Old versions out of the release cache; never one that is served (or still finishing).

        Only a server that can load releases touches the cache (a model file alone does not)."""
        releases = not self._reload_roots[0].files or self.cfg.reload_roots or self.cfg.shadow
        if not releases:
            return
        protect = [s.model.path for s in self._serving]
        if self.shadow is not None:
            protect.append(self.shadow.model.path)
        try:
            await asyncio.to_thread(evict_cache, self.cfg.cache, self.cfg.cache_keep, protect)
        except OSError as e:
            log.warning("could not evict old versions from the release cache %s: %s", self.cfg.cache, e)

    async def _retire(self, served: _Served) -> None:
        await served.idle.wait()
        await served.batcher.stop()
        self._serving.remove(served)


def _reload_failure(e: Exception) -> DetpipeError:
    """The error a client sees for a failed reload: the class of ``e``, a message without details."""
    for cls, message in _RELOAD_FAILURES:
        if isinstance(e, cls):
            return cls(f"{message} (details in the server log)")
    return InvalidInput(f"{_RELOAD_FAILED} (details in the server log)")


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
