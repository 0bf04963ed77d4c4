"""Load and fault injection against a real ``detpipe serve`` process (loopback, bounded).

32 concurrent clients send 400 requests, 20 % of them malformed in eight ways. No request may
get a 5xx; every bad one gets a 4xx with ``{"error": ...}``; every good one the detections of
the model run directly; the server's RSS may grow by at most ``RSS_BOUND_MIB``; it must still be
ready afterwards.
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np
import psutil
import pytest
from model_files import png_bomb

from detpipe.export.runtime import OnnxPredictor, PostprocessConfig, decode_image

pytestmark = pytest.mark.slow

CLIENTS = 32
REQUESTS = 400
BAD_SHARE = 0.2
RSS_BOUND_MIB = 64
"""Decoders are bounded (2 threads x 40 Mpx x 3 B), bodies are refused from Content-Length:
what remains is allocator churn of 400 requests in 32 connections, well under 64 MiB (measured: +5 MiB)."""
DETECT = "/v1/models/pico:detect"
PREDICT = "/v1/models/pico:predict"
JSON = "application/json"


def _faults(jpeg: bytes) -> dict[str, tuple[str, bytes, str]]:
    """fault class -> (path, body, content type): each must be refused with a 4xx."""
    return {
        "garbage": (DETECT, random.Random(1).randbytes(3000), "image/jpeg"),
        "truncated-jpeg": (DETECT, jpeg[: len(jpeg) // 3], "image/jpeg"),
        "bomb": (DETECT, png_bomb(20000, 20000), "image/png"),
        "deep-json": (PREDICT, b"[" * 100_000, JSON),
        "huge-int": (
            PREDICT,
            b'{"instances": [], "parameters": {"max_det": ' + b"9" * 5000 + b"}}",
            "application/json",
        ),
        "content-type": (DETECT, jpeg, "text/plain"),
        "over-limit": (DETECT, b"\xff" * (1024 * 1024 + 1), "image/jpeg"),
        "unknown-model": ("/v1/models/nope:detect", jpeg, "image/jpeg"),
    }


class _Client:
    """One keep-alive connection per thread, as a real client pool would hold."""

    def __init__(self, url: str) -> None:
        self.host, self.port = urlsplit(url).hostname, urlsplit(url).port
        self.local = threading.local()

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request("POST", path, body, {"Content-Type": content_type})
            resp = conn.getresponse()
            data = resp.read()
        except (ConnectionError, http.client.HTTPException):  # the server may close after a 413
            conn.close()
            self.local.conn = None
            raise
        if resp.getheader("connection", "").lower() == "close":
            conn.close()
            self.local.conn = None
        return resp.status, data


def _expected(onnx_path, jpegs: list[bytes]) -> dict[bytes, list[tuple]]:
    predictor = OnnxPredictor(onnx_path, threads=1, postprocess_cfg=PostprocessConfig(conf=0.25))
    out = {}
    for jpeg in jpegs:
        [det] = predictor([decode_image(jpeg)])
        out[jpeg] = [det.boxes, det.scores, det.classes]
    return out


def test_load_with_faults_no_5xx_exact_answers_bounded_memory(serve, pico_onnx, val_jpegs, summary_line):
    server = serve("--model", str(pico_onnx), "--name", "pico", "--max-body-mb", "1")
    client = _Client(server.url)
    faults = _faults(val_jpegs[0])
    rng = random.Random(0)
    n_bad = int(REQUESTS * BAD_SHARE)
    plan: list[tuple[str, Callable[[], tuple[int, bytes]], bytes | None]] = []
    for i in range(n_bad):
        kind = list(faults)[i % len(faults)]
        path, body, ctype = faults[kind]
        plan.append((kind, lambda p=path, b=body, c=ctype: client.post(p, b, c), None))
    for i in range(REQUESTS - n_bad):
        jpeg = val_jpegs[i % len(val_jpegs)]
        if i % 2:
            plan.append(("good", lambda j=jpeg: client.post(DETECT, j, "image/jpeg"), jpeg))
        else:
            body = json.dumps({"instances": [{"b64": base64.b64encode(jpeg).decode()}]}).encode()
            plan.append(("good", lambda b=body: client.post(PREDICT, b, "application/json"), jpeg))
    rng.shuffle(plan)

    for jpeg in val_jpegs:  # warm the allocator and the model before the baseline
        client.post(DETECT, jpeg, "image/jpeg")
    proc = psutil.Process(server.proc.pid)
    rss_before = proc.memory_info().rss

    def run(step):
        kind, send, jpeg = step
        try:
            status, body = send()
        except (ConnectionError, http.client.HTTPException) as e:
            return kind, 0, repr(e).encode(), jpeg
        return kind, status, body, jpeg

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(run, plan, timeout=300))
    rss_after = proc.memory_info().rss
    growth_mib = (rss_after - rss_before) / 2**20

    expected = _expected(pico_onnx, val_jpegs)
    statuses = Counter()
    for kind, status, body, jpeg in results:
        statuses[(kind, status)] += 1
        assert status != 0, f"{kind}: connection failed: {body!r}"
        assert status < 500, f"{kind}: {status} {body[:200]!r}"
        if kind == "good":
            assert status == 200, body[:200]
            doc = json.loads(body)
            dets = (doc["predictions"][0] if "predictions" in doc else doc)["detections"]
            boxes, scores, classes = expected[jpeg]
            assert len(dets) == len(scores)
            if dets:
                np.testing.assert_allclose([d["box"] for d in dets], boxes, atol=0.01)
                np.testing.assert_allclose([d["score"] for d in dets], scores, atol=1e-5)
                assert [d["class_id"] for d in dets] == classes.tolist()
        else:
            assert 400 <= status < 500, f"{kind}: {status}"
            assert set(json.loads(body)) == {"error"}, body[:200]
    assert growth_mib < RSS_BOUND_MIB, f"server RSS grew by {growth_mib:.0f} MiB"
    assert server.get("/readyz").status == 200

    by_class = Counter(kind for kind, *_ in results if kind != "good")
    codes = {k: sorted({s for (kk, s) in statuses if kk == k}) for k in faults}
    summary_line(
        f"serve load-and-fault: {REQUESTS} requests from {CLIENTS} clients, 5xx: 0, "
        f"good: {REQUESTS - n_bad} (all equal to the model run directly), bad: {n_bad} ("
        + ", ".join(f"{k} {by_class[k]}x -> {'/'.join(map(str, codes[k]))}" for k in faults)
        + f"), RSS growth {growth_mib:+.1f} MiB (bound {RSS_BOUND_MIB} MiB), ready afterwards"
    )
