"""Hot reload in a real server: under concurrent load no request fails, and a bad model is refused."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from model_files import onnx_variant
from serve_client import http

from detpipe.io import sha256_file

pytestmark = pytest.mark.slow
LOAD = "/v2/repository/models/pico/load"


def _version(path) -> str:
    return f"sha-{sha256_file(path)[:12]}"


def _load(server, uri: str | None = None):
    body = json.dumps({"parameters": {"uri": str(uri)}}).encode() if uri else b""
    return http(server.url + LOAD, body, {"Content-Type": "application/json"}, method="POST")


def test_reload_under_load_drops_no_request(serve, pico_onnx, val_jpegs, tmp_path, summary_line):
    a, b = (
        onnx_variant(pico_onnx, tmp_path / "a.onnx", "a"),
        onnx_variant(pico_onnx, tmp_path / "b.onnx", "b"),
    )
    server = serve("--model", str(a), "--name", "pico")
    stop = threading.Event()
    seen: list[tuple[int, str]] = []

    def client(i: int) -> None:
        while not stop.is_set():
            reply = server.post("/v1/models/pico:detect", val_jpegs[i % len(val_jpegs)], "image/jpeg")
            seen.append((reply.status, reply.headers.get("x-model-version", "")))

    with ThreadPoolExecutor(8) as pool:
        for i in range(8):
            pool.submit(client, i)
        time.sleep(1.0)
        reply = _load(server, b)
        swapped_at = len(seen)
        time.sleep(1.0)
        stop.set()
    assert reply.status == 200, reply.body
    assert reply.json()["version"] == _version(b)
    assert reply.headers["x-model-version"] == _version(b)
    statuses = Counter(s for s, _ in seen)
    assert statuses == {200: len(seen)}, statuses
    versions = [v for _, v in seen]
    assert {_version(a), _version(b)} == set(versions)
    # once the load call answered, no later request reached the old model (8 were in flight)
    assert _version(a) not in versions[swapped_at + 8 :]
    metrics = server.get("/metrics").body.decode()
    info = re.findall(r'^detpipe_model_info\{.*version="([^"]+)"\} 1.0$', metrics, re.M)
    assert info == [_version(b)]
    assert 'detpipe_model_reloads_total{outcome="success"} 1.0' in metrics
    summary_line(
        f"serve reload under load: {len(seen)} requests from 8 clients across the swap, failed: 0, "
        f"{versions.count(_version(a))} answered by the old model, {versions.count(_version(b))} by the new"
    )


def test_a_failed_reload_keeps_the_old_model(serve, pico_onnx, val_jpegs, tmp_path):
    server = serve("--model", str(pico_onnx), "--name", "pico")
    before = server.get("/v1/models/pico").headers["x-model-version"]
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    reply = _load(server, junk)
    assert reply.status == 400
    assert reply.json() == {"error": f"{junk}: not an ONNX model (it does not parse as one)"}
    reply = _load(server, tmp_path / "missing.onnx")
    assert reply.status == 404
    assert reply.json() == {"error": f"{tmp_path / 'missing.onnx'}: no such file, directory or release URI"}
    assert http(server.url + LOAD, b'{"parameters": {"url": 1}}', method="POST").json() == {
        "error": "load request: unknown parameters url (known: uri, version)"
    }
    assert http(server.url + "/v2/repository/models/other/load", b"", method="POST").status == 404
    reply = server.post("/v1/models/pico:detect", val_jpegs[0], "image/jpeg")
    assert (reply.status, reply.headers["x-model-version"]) == (200, before)
    assert 'detpipe_model_reloads_total{outcome="failure"} 2.0' in server.get("/metrics").body.decode()


def test_sighup_reloads_what_model_names(serve, pico_onnx, val_jpegs, tmp_path):
    current = tmp_path / "current.onnx"
    shutil.copy(pico_onnx, current)
    server = serve("--model", str(current), "--name", "pico")
    new = onnx_variant(pico_onnx, tmp_path / "next.onnx", "next")
    os.replace(new, current)  # as an OTA agent swaps the file it points the server at
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply = server.post("/v1/models/pico:detect", val_jpegs[0], "image/jpeg")
        assert reply.status == 200
        if reply.headers["x-model-version"] == _version(current):
            break
        time.sleep(0.1)
    else:
        pytest.fail("SIGHUP did not reload the model")
    assert server.proc.poll() is None
