"""Field sampling: a share of image requests, with the server's answers, written to the store.

``detpipe serve --sample-payloads s3://detpipe/payloads --sample-rate 0.01`` keeps each
sampled image as received and what the server answered for it, below that prefix::

    <model>/<version>/<yyyy-mm-dd>/<id>.jpg     the bytes as received (.png, .webp, .bmp for those)
    <model>/<version>/<yyyy-mm-dd>/<id>.json    model, version, time, size, NMS settings, detections

The date is the request's, in UTC; ``<id>`` is the UTC time to the microsecond and 16 random
hex digits (``20261207T101502123456Z-3f9c0a1b2c4d5e6f``): unique, sorted by time, and a base
name that stays unique when a labeling tool exports file names only. ``detpipe mine --pool
s3://detpipe/payloads/<model>`` reads the images as a pool (:mod:`detpipe.mine.pool`; the
JSON beside them is skipped by its suffix).

Each image of a ``:detect`` or ``:predict`` request is drawn on its own (``random() < rate``).
OIP ``infer`` requests carry a letterboxed tensor, not the image, and are never sampled.
The request never waits for the store: :meth:`PayloadSampler.offer` only puts the sample on a
queue (bounded by ``queue_size`` samples and :data:`QUEUE_BYTES`; a sample that does not fit
is dropped), and one worker thread writes it with :meth:`Store.put_bytes`. Store failures are
logged (at most every :data:`LOG_EVERY_S`) and counted, never raised. ``max_bytes`` caps what
this process writes: the first sample that would pass it stops sampling for good. Every
sampled image is counted by outcome (``detpipe_payload_samples_total``,
:data:`~detpipe.serving.metrics.SAMPLE_OUTCOMES`)::

    sampler = PayloadSampler(open_store("s3://detpipe/payloads"), 0.01, 512 << 20, metrics)
    sampler.start()
    sampler.offer(model, [jpeg], answers, nms, "detect")   # returns at once
    sampler.stop()                                          # writes what is queued (bounded time)
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from detpipe.errors import InvalidInput
from detpipe.runtime.image_header import image_size
from detpipe.runtime.nms import PostprocessConfig
from detpipe.serving.metrics import SAMPLE_OUTCOMES, ServerMetrics
from detpipe.store.base import Store
from detpipe.store.manifest import check_model_name, check_version

log = logging.getLogger(__name__)

QUEUE_BYTES = 64 * 1024 * 1024
"""Image bytes waiting to be written at most (one sample is always admitted to an empty queue)."""
DRAIN_TIMEOUT_S = 5.0
"""How long :meth:`PayloadSampler.stop` writes what is queued (within a pod's 30 s grace with
``--graceful-timeout 20`` and a 5 s preStop)."""
LOG_EVERY_S = 30.0
"""A failing store is logged at most this often (with the count since the last line)."""
SUFFIXES = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "bmp": ".bmp"}
CONTENT_TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".bmp": "image/bmp"}


@dataclass(frozen=True)
class _Sample:
    key: str  # <model>/<version>/<yyyy-mm-dd>/<id>, without a suffix
    image: bytes
    record: dict[str, Any]


def check_segments(name: str, version: str) -> None:
    """``name`` and ``version`` as store path segments: a model name and a release version.

    Raises:
        InvalidInput: either is no valid model name or version (``check_model_name``,
            ``check_version`` of :mod:`detpipe.store.manifest`).
    """
    try:
        check_model_name(name)
        check_version(version)
    except InvalidInput as e:
        raise InvalidInput(f"payload sampling: {e} (it becomes a store path segment)") from None


def sample_id(now: datetime) -> str:
    """A sample's id: UTC time to the microsecond, then 16 random hex digits."""
    return f"{now:%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:16]}"


class PayloadSampler:
    """Writes a share of image requests and their answers to ``store`` on a thread of its own.

    Args:
        store: where samples go (``--sample-payloads``): keys ``<model>/<version>/<date>/<id>.*``.
        rate: probability that an image is sampled, in [0, 1].
        max_bytes: bytes (images and JSON) this sampler writes at most.
        metrics: where outcomes are counted.
        queue_size: samples queued or being written at most; more are dropped.
        seed: the sampler's seed (None: random).
        clock: the current UTC time (tests).
    """

    def __init__(
        self,
        store: Store,
        rate: float,
        max_bytes: int,
        metrics: ServerMetrics,
        queue_size: int = 32,
        seed: int | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise InvalidInput(f"sample rate must be in [0, 1], got {rate}")
        if max_bytes < 1 or queue_size < 1:
            raise InvalidInput("sample cap and queue size must be >= 1")
        self.store = store
        self.rate = rate
        self.max_bytes = max_bytes
        self.queue_size = queue_size
        self.metrics = metrics
        self._rng = random.Random(seed)
        self._clock = clock
        self._queue: queue.SimpleQueue[_Sample | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._queued = 0
        self._queued_bytes = 0
        self._written_bytes = 0
        self._capped = False
        self._abandon = False
        self._thread: threading.Thread | None = None
        self._checked: tuple[str, str] | None = None
        self._failures = 0
        self._last_log = -LOG_EVERY_S
        for outcome in SAMPLE_OUTCOMES:
            metrics.payload_samples.labels(outcome)  # every outcome shows, at 0, from the start

    @property
    def written_bytes(self) -> int:
        """Bytes written so far."""
        return self._written_bytes

    def start(self) -> None:
        """Start the writer thread."""
        self._thread = threading.Thread(target=self._run, name="detpipe-sampler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = DRAIN_TIMEOUT_S) -> int:
        """Take no more samples; write what is queued for up to ``timeout`` seconds, drop the rest.

        Returns:
            How many queued samples were not written.
        """
        thread, self._thread = self._thread, None
        if thread is None:
            return 0
        self._queue.put(None)
        thread.join(timeout)
        if not thread.is_alive():
            return 0
        self._abandon = True  # a stalled store: the thread finishes its call and drops the rest
        with self._lock:
            left = self._queued
        log.warning("payload sampling: %d queued samples not written at shutdown (store too slow)", left)
        return left

    def offer(
        self,
        model: Any,
        images: Sequence[bytes],
        answers: Sequence[dict[str, Any]],
        nms: PostprocessConfig,
        route: str,
    ) -> int:
        """Maybe queue each image with its answer (returns at once, never raises).

        Args:
            model: the model that answered (``name``, ``version``).
            images: the request's images, as received.
            answers: the answer for each image (``width``, ``height``, ``detections``).
            nms: the request's NMS settings.
            route: ``detect`` or ``predict``.

        Returns:
            How many samples were queued.
        """
        if self._thread is None:
            return 0
        queued = 0
        try:
            for image, answer in zip(images, answers, strict=True):
                if self._rng.random() < self.rate:
                    queued += self._enqueue(model, image, answer, nms, route)
        except Exception:  # sampling must never cost a request its answer
            log.exception("payload sampling: could not queue a sample")
        return queued

    def _enqueue(
        self, model: Any, image: bytes, answer: dict[str, Any], nms: PostprocessConfig, route: str
    ) -> int:
        counter = self.metrics.payload_samples
        if self._capped:
            counter.labels("dropped_cap").inc()
            return 0
        if self._checked != (model.name, model.version):  # after a reload: a new version
            try:
                check_segments(model.name, model.version)
            except InvalidInput as e:
                self._fail(str(e))
                return 0
            self._checked = (model.name, model.version)
        with self._lock:
            full = self._queued >= self.queue_size or (
                self._queued and self._queued_bytes + len(image) > QUEUE_BYTES
            )
            if not full:
                self._queued += 1
                self._queued_bytes += len(image)
                self.metrics.payload_samples_queued.set(self._queued)
        if full:
            counter.labels("dropped_full").inc()
            return 0
        now = self._clock()
        sid = sample_id(now)
        record = {
            "id": sid,
            "model_name": model.name,
            "model_version": model.version,
            "time": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "route": route,
            "nms": {"conf": nms.conf, "iou": nms.iou, "max_det": nms.max_det},
            **answer,
        }
        self._queue.put(_Sample(f"{model.name}/{model.version}/{now:%Y-%m-%d}/{sid}", image, record))
        return 1

    def _run(self) -> None:
        while (sample := self._queue.get()) is not None:
            if not self._abandon:
                try:
                    self._write(sample)
                except Exception as e:  # the writer thread must outlive any one sample
                    self._fail(f"{sample.key}: {type(e).__name__}")
            with self._lock:  # after the write: a sample in the writer's hands still counts as queued
                self._queued -= 1
                self._queued_bytes -= len(sample.image)
                self.metrics.payload_samples_queued.set(self._queued)

    def _write(self, sample: _Sample) -> None:
        """One sample: the image, then its JSON; counted as written, dropped_cap or failed (a
        failed JSON write leaves the image: ``mine`` scores it afresh either way)."""
        counter = self.metrics.payload_samples
        try:
            suffix = SUFFIXES[image_size(sample.image).format.lower()]
        except (InvalidInput, KeyError):  # the server decoded it, so this does not happen
            suffix = ".jpg"
        name = sample.key.rsplit("/", 1)[1]
        doc = {**sample.record, "image": f"{name}{suffix}", "bytes": len(sample.image),
               "sha256": hashlib.sha256(sample.image).hexdigest()}  # fmt: skip
        body = json.dumps(doc, separators=(",", ":")).encode()
        if self._capped or self._written_bytes + len(sample.image) + len(body) > self.max_bytes:
            if not self._capped:
                log.warning("payload sampling stopped: %d bytes written, the cap is %d",
                            self._written_bytes, self.max_bytes)  # fmt: skip
            self._capped = True
            counter.labels("dropped_cap").inc()
            return
        written = 0
        try:
            self.store.put_bytes(sample.key + suffix, sample.image, content_type=CONTENT_TYPES[suffix])
            written = len(sample.image)
            self.store.put_bytes(sample.key + ".json", body, content_type="application/json")
            written += len(body)
        except Exception as e:  # the store's errors are counted and logged, never raised
            first = str(e).splitlines()[0] if str(e) else ""
            self._fail(f"{sample.key}: {type(e).__name__}: {first}")
            return
        finally:
            self._written_bytes += written
            self.metrics.payload_sample_bytes.inc(written)
        counter.labels("written").inc()

    def _fail(self, reason: str) -> None:
        self.metrics.payload_samples.labels("failed").inc()
        with self._lock:
            self._failures += 1
            now = time.monotonic()
            if now - self._last_log < LOG_EVERY_S:
                return
            failures, self._failures, self._last_log = self._failures, 0, now
        log.warning("payload sample not written (%d failed since the last message): %s", failures, reason)
