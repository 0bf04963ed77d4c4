"""Shadow traffic: a candidate model sees a sample of live requests, off the response path.

After the live model has answered an image request, :meth:`Shadow.offer` hands the same input
tensors and the live detections to the shadow's own thread with probability ``fraction``.
The live answer never waits for it: when ``max_pending`` shadow calls are already queued the
sample is dropped (counted), and an exception in the shadow model is counted and logged,
never raised. Each finished call compares the two per image (:func:`compare`) and records,
labelled by the version pair, the matched-box IoU, class agreement and detection-count delta
(``detpipe_shadow_*`` in :mod:`detpipe.serving.metrics`)::

    shadow = Shadow(candidate, fraction=0.1, metrics=metrics)
    shadow.start()
    shadow.offer(live_version, items, live_detections)   # returns at once
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from detpipe.runtime.image import stack_batch
from detpipe.runtime.nms import Detections, box_iou_one, postprocess
from detpipe.serving.metrics import ServerMetrics

log = logging.getLogger(__name__)

MATCH_IOU = 0.5
"""A shadow box matches a live box at IoU >= 0.5 (the PASCAL VOC / COCO mAP50 criterion)."""


@dataclass(frozen=True)
class Comparison:
    """One image: live vs shadow detections."""

    ious: list[float]  # IoU of each matched pair
    class_agreements: int  # matched pairs with the same class
    delta: int  # shadow detections - live detections

    @property
    def matched(self) -> int:
        return len(self.ious)


def compare(live: Detections, shadow: Detections, min_iou: float = MATCH_IOU) -> Comparison:
    """Greedy one-to-one matching of live boxes (by descending score) to shadow boxes by IoU."""
    ious: list[float] = []
    agree = 0
    free = np.ones(len(shadow), dtype=bool)
    for i in np.argsort(-live.scores, kind="stable"):
        if not free.any():
            break
        overlap = np.where(free, box_iou_one(live.boxes[i], shadow.boxes), -1.0)
        j = int(np.argmax(overlap))
        if overlap[j] >= min_iou:
            free[j] = False
            ious.append(float(overlap[j]))
            agree += int(live.classes[i] == shadow.classes[j])
    return Comparison(ious, agree, len(shadow) - len(live))


class Shadow:
    """Runs ``model`` on sampled requests on a thread of its own.

    Args:
        model: the candidate (:class:`~detpipe.serving.model.ServingModel`), same input size
            as the live model.
        fraction: probability that a request is also run by the shadow.
        metrics: where the comparisons go.
        max_pending: shadow calls queued or running at most; more samples are dropped.
        seed: the sampler's seed (None: random).
    """

    def __init__(
        self,
        model: Any,
        fraction: float,
        metrics: ServerMetrics,
        max_pending: int = 4,
        seed: int | None = None,
    ) -> None:
        self.model = model
        self.fraction = fraction
        self.metrics = metrics
        self.max_pending = max_pending
        self._rng = random.Random(seed)
        self._pending = 0
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="detpipe-shadow")

    def stop(self) -> None:
        """Drop what is queued; wait for the running call."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def offer(self, live_version: str, items: Sequence[Any], live: Sequence[Detections]) -> bool:
        """Maybe queue a shadow run of ``items`` (returns at once); True if queued."""
        if self._pool is None or self._rng.random() >= self.fraction:
            return False
        labels = (live_version, self.model.version)
        with self._lock:
            if self._pending >= self.max_pending:
                self.metrics.shadow_requests.labels(*labels, "dropped").inc()
                return False
            self._pending += 1
        try:
            self._pool.submit(self._run, labels, list(items), list(live))
        except RuntimeError:  # shutting down
            self._done()
            return False
        return True

    def _done(self) -> None:
        with self._lock:
            self._pending -= 1

    def _run(self, labels: tuple[str, str], items: list[Any], live: list[Detections]) -> None:
        m = self.metrics
        try:
            start = time.perf_counter()
            predictor = self.model.predictor
            step = predictor.batch or len(items)
            shadow: list[Detections] = []
            for lo in range(0, len(items), step):
                chunk = items[lo : lo + step]
                x = stack_batch([item.x for item in chunk], predictor.imgsz, predictor.batch)
                out = predictor.infer(x)
                for i, item in enumerate(chunk):
                    shadow += postprocess(out[i : i + 1], [item.letterbox], item.nms)
            m.shadow_seconds.labels(*labels).observe(time.perf_counter() - start)
            for live_det, shadow_det in zip(live, shadow, strict=True):
                c = compare(live_det, shadow_det)
                m.shadow_matched.labels(*labels).inc(c.matched)
                m.shadow_agree.labels(*labels).inc(c.class_agreements)
                m.shadow_delta.labels(*labels).observe(c.delta)
                for iou in c.ious:
                    m.shadow_iou.labels(*labels).observe(iou)
            m.shadow_requests.labels(*labels, "ok").inc()
        except Exception as e:  # a broken candidate must never reach the live path
            m.shadow_requests.labels(*labels, "error").inc()
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            log.warning("shadow model %s failed: %s", self.model.version, reason)
        finally:
            self._done()
