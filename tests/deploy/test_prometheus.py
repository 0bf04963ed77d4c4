"""The analysis queries against a real Prometheus scraping a real stable and a real failing canary.

Two ``detpipe serve`` processes serve releases of model ``pico`` from a local store: the
stable 1.0.0 (with 1.1.0, the same network, as its shadow on every request) and the canary
2.0.0, whose model fails at run time on real images (tests/deploy/conftest.py). Prometheus
scrapes both every second. The checks are the ones the AnalysisTemplates carry
(:func:`detpipe.deploy.queries.checks`), with the real versions in place of Argo's
``{{args.*}}`` placeholders; ``detpipe deploy status --prometheus`` measures them for the
canary a (recorded) cluster names.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import pytest

from detpipe.cli.main import main
from detpipe.deploy.cluster import object_path
from detpipe.deploy.config import CanaryConfig
from detpipe.deploy.prometheus import evaluate, query
from detpipe.deploy.queries import REQUESTS, checks, routes_regex
from detpipe.deploy.render import render

from .conftest import VERSIONS
from .fake_kube import FakeKube
from .fake_kube import serve as serve_kube

pytestmark = pytest.mark.slow

REQUESTS_EACH = 16
PACE_S = 0.25  # spread over several 1 s scrapes, so rate() has samples to work on
WINDOW = "2m"  # covers the traffic until the last query, however slow the machine


def _wait_for(url: str, promql: str, want: float, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    value = math.nan
    while time.monotonic() < deadline:
        value = query(url, promql)
        if value == want:
            return
        time.sleep(0.5)
    raise AssertionError(f"{promql} = {value} after {timeout}s, want {want}")


def _wait_until_finite(url: str, promql: str, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = query(url, promql)
        if math.isfinite(value):
            return value
        time.sleep(0.5)
    raise AssertionError(f"{promql}: no finite value after {timeout}s")


def _status_cli(kubeconfig: Path, prometheus: str, capsys: pytest.CaptureFixture[str]) -> dict:
    argv = ["deploy", "status", "--strategy", "gateway", "--prometheus", prometheus]
    code = main([*argv, "--analysis-window", WINDOW, "--json", "--kubeconfig", str(kubeconfig)])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_error_rate_fails_the_failing_canary_and_passes_stable(
    serve, prometheus, canary_releases, val_jpegs, tmp_path, capsys
) -> None:
    cache = ("--cache-dir", str(tmp_path / "cache"), "--allow-unsigned")  # test releases, unsigned
    stable = serve(
        "--model", canary_releases["stable"], "--shadow", canary_releases["shadow"], "--shadow-fraction", "1",
        "--shadow-queue", "64", "--max-batch", "1", *cache, wait=False,
    )  # fmt: skip
    canary = serve("--model", canary_releases["failing"], "--max-batch", "1", *cache, wait=False)
    stable.wait_ready()
    canary.wait_ready()
    for server, version in ((stable, VERSIONS["stable"]), (canary, VERSIONS["failing"])):
        assert server.request("/v1/models/pico").headers["x-model-version"] == version
    url = prometheus([stable.url.removeprefix("http://"), canary.url.removeprefix("http://")])

    _wait_for(url, "sum(up)", 2)  # both scraped once: the counters' growth is seen from here on
    codes = {"stable": [], "canary": []}
    for i in range(REQUESTS_EACH):
        time.sleep(PACE_S)
        jpeg = val_jpegs[i % len(val_jpegs)]
        codes["stable"].append(stable.request("/v1/models/pico:detect", jpeg, "image/jpeg").status)
        reply = canary.request("/v1/models/pico:detect", jpeg, "image/jpeg")
        codes["canary"].append(reply.status)
        assert reply.status != 500 or "error" in reply.json()
    assert codes == {"stable": [200] * REQUESTS_EACH, "canary": [500] * REQUESTS_EACH}
    for version in (VERSIONS["stable"], VERSIONS["failing"]):  # both servers' counters scraped in full
        total = f'sum({REQUESTS}{{model="pico",version="{version}",route=~"{routes_regex()}"}})'
        _wait_for(url, total, REQUESTS_EACH)

    canary_checks = {c.name: c for c in checks("pico", VERSIONS["failing"], window=WINDOW)}
    stable_checks = {c.name: c for c in checks("pico", VERSIONS["stable"], window=WINDOW)}
    (verdict,) = evaluate(url, [canary_checks["error-rate"]])
    assert verdict == {"name": "error-rate", "value": 1.0, "limit": 0.01, "verdict": "fail"}
    (verdict,) = evaluate(url, [stable_checks["error-rate"]])  # the 5xx series are the canary's only
    assert verdict == {"name": "error-rate", "value": 0.0, "limit": 0.01, "verdict": "pass"}

    # latency: stable's p95 over every other version's (the canary's): each side answered
    ratio = query(url, stable_checks["latency-p95-ratio"].query)
    assert math.isfinite(ratio) and ratio > 0

    # the shadow ran on every stable request: its agreement with the live model (same network) is 1
    (agreement,) = checks("pico", VERSIONS["shadow"], window=WINDOW, min_agreement=0.9)[2:]
    assert agreement.name == "shadow-agreement"
    _wait_until_finite(url, agreement.query)
    assert evaluate(url, [agreement]) == [
        {"name": "shadow-agreement", "value": 1.0, "limit": 0.9, "verdict": "pass"}
    ]

    # a version nobody serves: no samples, inconclusive rather than pass or fail
    assert evaluate(url, checks("pico", "0.0.0", window=WINDOW)[:1])[0]["verdict"] == "inconclusive"

    # `detpipe deploy status --prometheus`: the canary the cluster names, measured
    kube = FakeKube()
    for doc in render(CanaryConfig(canary_releases["failing"], strategy="gateway")):
        kube.objects[object_path(doc["kind"], "detpipe", doc["metadata"]["name"])] = copy.deepcopy(doc)
    with serve_kube(kube, tmp_path / "kubeconfig"):
        status = _status_cli(tmp_path / "kubeconfig", url, capsys)
    assert (status["canary_version"], status["canary_weight"]) == (VERSIONS["failing"], 10)
    by_name = {c["name"]: c for c in status["checks"]}
    assert by_name["error-rate"] == {"name": "error-rate", "value": 1.0, "limit": 0.01, "verdict": "fail"}
