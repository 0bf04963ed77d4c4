"""Latency statistics: percentile definition on known arrays, stats fields, the timing loop."""

from __future__ import annotations

import numpy as np
import pytest

from detpipe.bench.core import Schedule, latency_stats, measure, percentile
from detpipe.errors import InvalidInput


@pytest.mark.parametrize(
    ("samples", "q", "expected"),
    [
        # numpy 'linear' (Hyndman & Fan type 7): h = (n - 1) q / 100, linear between neighbours
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50, 5.5),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90, 9.1),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99, 9.91),
        ([1, 2, 3, 4], 95, 3.85),
        ([10, 20], 50, 15.0),
        ([7], 99, 7.0),
        ([0, 100], 99, 99.0),
        ([5, 1, 4, 2, 3], 50, 3.0),  # unsorted input
        ([1, 1, 1, 100], 90, 70.3),  # h = 2.7 -> 1 + 0.7 * 99
    ],
)
def test_percentile_linear_definition(samples, q, expected):
    assert percentile(np.array(samples, float), q) == pytest.approx(expected)


def test_percentile_matches_the_formula_on_random_data():
    x = np.random.default_rng(0).exponential(3.0, 257)
    s = np.sort(x)
    for q in (50, 90, 95, 99):
        h = (len(s) - 1) * q / 100
        lo = int(np.floor(h))
        expected = s[lo] + (h - lo) * (s[min(lo + 1, len(s) - 1)] - s[lo])
        assert percentile(x, q) == pytest.approx(expected)


def test_latency_stats_fields():
    stats = latency_stats(np.array([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]), batch=4)
    assert stats.n == 8 and stats.batch == 4
    assert stats.min_ms == 2.0 and stats.max_ms == 9.0
    assert stats.mean_ms == 5.0
    assert stats.std_ms == 2.0  # population std of this classic example
    assert stats.cv == pytest.approx(0.4)
    assert stats.p50_ms == 4.5
    assert stats.p90_ms == pytest.approx(7.6)
    assert stats.throughput_ips == pytest.approx(4 * 8 / 0.040)  # 40 ms for 8 batches of 4
    assert stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p95_ms <= stats.p99_ms <= stats.max_ms
    assert set(stats.as_dict()) >= {"p95_ms", "p99_ms", "cv", "throughput_ips"}


def test_latency_stats_rejects_bad_samples():
    for bad in ([], [1.0, -1.0], [1.0, float("nan")]):
        with pytest.raises(InvalidInput):
            latency_stats(np.array(bad))


def test_measure_runs_warmup_then_timed_iterations():
    calls = []
    samples = measure(lambda: calls.append(1), Schedule(warmup_iters=3, iters=7))
    assert len(calls) == 10 and samples.shape == (7,)
    assert (samples >= 0).all()


def test_measure_times_what_it_calls():
    import time

    samples = measure(lambda: time.sleep(0.002), Schedule(warmup_iters=0, iters=5))
    assert samples.min() >= 2.0  # milliseconds; sleep never returns early


def test_measure_by_duration_and_warmup_seconds():
    calls = []
    samples = measure(lambda: calls.append(1), Schedule(warmup_iters=0, warmup_s=0.01, duration_s=0.02))
    assert len(samples) >= 10 and len(calls) > len(samples)  # warm-up calls happened too


def test_schedule_validation():
    with pytest.raises(InvalidInput):
        Schedule(iters=0)
    with pytest.raises(InvalidInput):
        Schedule(duration_s=0)
