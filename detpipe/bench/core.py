"""Latency measurement and statistics, trtexec / MLPerf SingleStream style.

One query at a time: warm up (a number of iterations or seconds), then time a fixed number
of iterations or a duration, each iteration with ``time.perf_counter_ns`` around one call.
Inputs are prepared before timing (no I/O inside the timed loop)::

    samples = measure(lambda: session.run(None, feed), Schedule(warmup_iters=20, iters=200))
    stats = latency_stats(samples, batch=1)
    stats.p99_ms, stats.throughput_ips

Percentiles use numpy's default 'linear' method (type 7 of Hyndman & Fan): for sorted
samples ``x[0..n-1]`` the q-th percentile is ``x[h]`` interpolated linearly at
``h = (n - 1) * q / 100``. ``std`` is the population standard deviation (ddof=0) and
``cv = std / mean``. Throughput is ``batch * n / sum(latencies)`` (images/s of the
sequential stream).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from detpipe.errors import InvalidInput

log = logging.getLogger(__name__)

PERCENTILES = (50, 90, 95, 99)
PERCENTILE_METHOD = "linear"


@dataclass(frozen=True)
class Schedule:
    """Warm-up and measurement lengths; a duration, when set, replaces the iteration count.

    Attributes:
        warmup_iters: warm-up iterations (not timed).
        warmup_s: warm-up seconds (run at least this long, after ``warmup_iters``).
        iters: timed iterations.
        duration_s: time for this many seconds instead (at least ``min_iters`` iterations).
        min_iters: the minimum timed iterations with ``duration_s``.
    """

    warmup_iters: int = 10
    warmup_s: float = 0.0
    iters: int = 100
    duration_s: float | None = None
    min_iters: int = 10

    def __post_init__(self) -> None:
        if self.warmup_iters < 0 or self.warmup_s < 0:
            raise InvalidInput("warm-up must be >= 0")
        if self.iters < 1 or self.min_iters < 1:
            raise InvalidInput("--iters must be >= 1")
        if self.duration_s is not None and self.duration_s <= 0:
            raise InvalidInput("--duration must be > 0")


@dataclass(frozen=True)
class LatencyStats:
    """Latency statistics in milliseconds, throughput in images per second."""

    n: int
    batch: int
    min_ms: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    std_ms: float
    cv: float
    throughput_ips: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def percentile(samples: np.ndarray, q: float) -> float:
    """The q-th percentile (0..100) with numpy's 'linear' method (see the module docstring)."""
    return float(np.percentile(np.asarray(samples, dtype=np.float64), q, method=PERCENTILE_METHOD))


def latency_stats(samples_ms: np.ndarray, batch: int = 1) -> LatencyStats:
    """Summarize per-iteration latencies (milliseconds) of ``batch`` images each.

    Raises:
        InvalidInput: no samples, or a negative or non-finite one.
    """
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.size == 0:
        raise InvalidInput("no latency samples")
    if not np.all(np.isfinite(x)) or x.min() < 0:
        raise InvalidInput("latency samples must be finite and >= 0")
    mean = float(x.mean())
    std = float(x.std(ddof=0))
    p = {q: percentile(x, q) for q in PERCENTILES}
    total_s = float(x.sum()) / 1e3
    return LatencyStats(
        n=int(x.size),
        batch=batch,
        min_ms=float(x.min()),
        mean_ms=mean,
        p50_ms=p[50],
        p90_ms=p[90],
        p95_ms=p[95],
        p99_ms=p[99],
        max_ms=float(x.max()),
        std_ms=std,
        cv=std / mean if mean > 0 else 0.0,
        throughput_ips=batch * x.size / total_s if total_s > 0 else float("inf"),
    )


def measure(fn: Callable[[], object], schedule: Schedule, progress: str | None = None) -> np.ndarray:
    """Call ``fn`` per ``schedule``; return the timed latencies in milliseconds.

    Args:
        fn: one query (must block until its result is ready, e.g. synchronize a GPU).
        schedule: warm-up and measurement lengths.
        progress: a tqdm description, or None for no bar.
    """
    from tqdm import tqdm

    for _ in range(schedule.warmup_iters):
        fn()
    if schedule.warmup_s > 0:
        end = time.perf_counter() + schedule.warmup_s
        while time.perf_counter() < end:
            fn()
    samples: list[int] = []
    clock = time.perf_counter_ns
    if schedule.duration_s is None:
        bar = tqdm(total=schedule.iters, desc=progress, unit="it", leave=False, disable=progress is None)
        for _ in range(schedule.iters):
            t0 = clock()
            fn()
            samples.append(clock() - t0)
            bar.update(1)
        bar.close()
    else:
        deadline = clock() + int(schedule.duration_s * 1e9)
        while clock() < deadline or len(samples) < schedule.min_iters:
            t0 = clock()
            fn()
            samples.append(clock() - t0)
    return np.asarray(samples, dtype=np.float64) / 1e6
