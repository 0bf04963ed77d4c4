"""Hot reload in a real server: under concurrent load no request fails, a bad model is refused,
and only a caller with the token may reload, only from the allowed roots (security review)."""

from __future__ import annotations

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
from serve_client import http, reload_args

from detpipe.io import sha256_file
from detpipe.serving.access import REFUSED, RELOAD_OFF

pytestmark = pytest.mark.slow
LOAD = "/v2/repository/models/pico/load"
DETAILS = " (details in the server log)"
NO_TOKEN = "reload needs Authorization: Bearer <the token of --reload-token-file>"


def _version(path) -> str:
    return f"sha-{sha256_file(path)[:12]}"


def test_reload_under_load_drops_no_request(serve, pico_onnx, val_jpegs, tmp_path, summary_line):
    a, b = (
        onnx_variant(pico_onnx, tmp_path / "a.onnx", "a"),
        onnx_variant(pico_onnx, tmp_path / "b.onnx", "b"),
    )
    server = serve("--model", str(a), "--name", "pico", *reload_args(tmp_path))
    stop = threading.Event()
    seen: list[tuple[int, str]] = []
    sent_after_swap: list[str] = []  # versions of requests sent once the load call had answered
    swapped = threading.Event()

    def client(i: int) -> None:
        while not stop.is_set():
            after = swapped.is_set()
            reply = server.post("/v1/models/pico:detect", val_jpegs[i % len(val_jpegs)], "image/jpeg")
            seen.append((reply.status, reply.headers.get("x-model-version", "")))
            if after:
                sent_after_swap.append(reply.headers.get("x-model-version", ""))

    with ThreadPoolExecutor(8) as pool:
        for i in range(8):
            pool.submit(client, i)
        time.sleep(1.0)
        reply = server.load("pico", b)
        swapped.set()
        time.sleep(1.0)
        stop.set()
    assert reply.status == 200, reply.body
    assert reply.json() == {"name": "pico", "version": _version(b)}  # no local path in the answer
    assert reply.headers["x-model-version"] == _version(b)
    statuses = Counter(s for s, _ in seen)
    assert statuses == {200: len(seen)}, statuses
    versions = [v for _, v in seen]
    assert {_version(a), _version(b)} == set(versions)
    # once the load call answered, no request sent after it reached the old model
    assert sent_after_swap and set(sent_after_swap) == {_version(b)}
    metrics = server.get("/metrics").body.decode()
    info = re.findall(r'^detpipe_model_info\{.*version="([^"]+)"\} 1.0$', metrics, re.M)
    assert info == [_version(b)]
    assert 'detpipe_model_reloads_total{outcome="success"} 1.0' in metrics
    summary_line(
        f"serve reload under load: {len(seen)} requests from 8 clients across the swap, failed: 0, "
        f"{versions.count(_version(a))} answered by the old model, {versions.count(_version(b))} by the new"
    )


def _served_dir(tmp_path, pico_onnx):
    """``tmp_path/served/model.onnx``: reloads may load from ``served/`` (the model file's directory)."""
    root = tmp_path / "served"
    root.mkdir()
    return root, shutil.copy(pico_onnx, root / "model.onnx")


def test_reload_is_off_by_default_and_then_needs_the_bearer_token(serve, pico_onnx, tmp_path):
    root, model = _served_dir(tmp_path, pico_onnx)
    other = onnx_variant(pico_onnx, root / "other.onnx", "other")
    server = serve("--model", str(model), "--name", "pico")
    before = server.get("/v1/models/pico").headers["x-model-version"]
    # before the review: 200 for anyone, loading any file named
    for token in ("detpipe-test-reload-token-6f1c2a", None):
        reply = server.load("pico", other, token=token)
        assert (reply.status, reply.json()) == (403, {"error": RELOAD_OFF})

    guarded = serve("--model", str(model), "--name", "pico", *reload_args(tmp_path))
    for token in (None, "wrong", "detpipe-test-reload-token-6f1c2", ""):
        reply = guarded.load("pico", other, token=token)
        assert reply.status == 401, (token, reply.body)
        assert reply.headers["www-authenticate"] == "Bearer"
        assert reply.json() == {"error": NO_TOKEN}
    basic = http(guarded.url + LOAD, b"", {"Authorization": "Basic cGljbzpwaWNv"}, method="POST")
    assert basic.status == 401
    for s in (server, guarded):
        assert s.get("/v1/models/pico").headers["x-model-version"] == before
    reply = guarded.load("pico", other)
    assert (reply.status, reply.json()["version"]) == (200, _version(other)), reply.body
    assert "source" not in guarded.get("/v1/models/pico").json()


def test_a_failed_reload_keeps_the_old_model_and_names_no_path(serve, pico_onnx, val_jpegs, tmp_path):
    root, model = _served_dir(tmp_path, pico_onnx)
    server = serve("--model", str(model), "--name", "pico", *reload_args(tmp_path))
    before = server.get("/v1/models/pico").headers["x-model-version"]
    junk = root / "junk.onnx"
    junk.write_bytes(b"not a model")
    # inside the root: the class of the failure, never the path (before: "<path>: not an ONNX model ...")
    cases = [
        (junk, 400, "reload failed: not a model this server can serve" + DETAILS),
        (root / "missing.onnx", 404, "reload failed: no such model, release or version" + DETAILS),
    ]
    # outside it: one answer whether the file exists, is a model or junk (before: 200, 404, 400)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "junk.onnx").write_bytes(b"not a model")
    for path in (
        onnx_variant(pico_onnx, outside / "real.onnx", "x"),
        outside / "junk.onnx",
        outside / "none.onnx",
    ):
        cases.append((path, 403, REFUSED))
    for uri in ("/etc/passwd", "s3://detpipe/models/pico/1", "file:///etc/passwd", "relative.onnx", "\x00"):
        cases.append((uri, 403, REFUSED))
    for uri, status, message in cases:
        reply = server.load("pico", uri)
        assert (reply.status, reply.json()) == (status, {"error": message}), uri
    assert server.load("pico", version="2").json() == {
        "error": "a version applies to a release (<store>/models/<name>[/<version>]), not to a file"
    }
    # the token is checked before the body is even read
    wrong = {"Authorization": "Bearer x"}
    bad_body = http(server.url + LOAD, b'{"parameters": {"url": 1}}', wrong, method="POST")
    assert bad_body.status == 401
    assert server.load("pico", uri="x", version="no/such").status == 400
    assert server.load("pico", token=None).status == 401
    assert server.load("other").status == 404
    reply = server.post("/v1/models/pico:detect", val_jpegs[0], "image/jpeg")
    assert (reply.status, reply.headers["x-model-version"]) == (200, before)
    assert 'detpipe_model_reloads_total{outcome="failure"} 2.0' in server.get("/metrics").body.decode()
    log = server.log.read_text()
    assert f"reload of {junk} failed" in log and "not an ONNX model" in log  # the details are in the log


def _device(tmp_path, pico_onnx):
    """The OTA agent's layout: DIR/slots/{a,b}/model.onnx, DIR/current -> slots/a."""
    d = tmp_path / "device"
    for slot in ("a", "b"):
        (d / "slots" / slot).mkdir(parents=True)
        onnx_variant(pico_onnx, d / "slots" / slot / "model.onnx", slot)
    (d / "current").symlink_to("slots/a")
    return d


def test_reload_loads_the_current_slot_only(serve, pico_onnx, tmp_path):
    d = _device(tmp_path, pico_onnx)
    a, b = d / "slots" / "a" / "model.onnx", d / "slots" / "b" / "model.onnx"
    (d / "slots" / "a" / "link.onnx").symlink_to(b)  # a symlink inside the served slot, out of it
    extra = tmp_path / "extra"
    extra.mkdir()
    widened = onnx_variant(pico_onnx, extra / "model.onnx", "extra")
    server = serve("--model", str(d / "current" / "model.onnx"), "--name", "pico", *reload_args(tmp_path))
    # the inactive slot (before: 200, around TUF's rollback protection), through .., file://, a symlink
    for uri in (b, d / "current" / ".." / "b" / "model.onnx", f"file://{b}", d / "slots" / "a" / "link.onnx",
                d / "current" / ".." / ".." / "slots" / "b" / "model.onnx", widened):  # fmt: skip
        reply = server.load("pico", uri)
        assert (reply.status, reply.json()) == (403, {"error": REFUSED}), uri
    assert server.load("pico", d / "current" / "model.onnx").json()["version"] == _version(a)
    (d / ".current").symlink_to("slots/b")
    os.replace(d / ".current", d / "current")  # the agent switches: b is current now, a is not
    assert server.load("pico", d / "current" / "model.onnx").json()["version"] == _version(b)
    assert server.load("pico", a).status == 403
    assert server.load("pico", b).status == 200  # the current slot, by its own name

    wide = serve("--model", str(d / "current" / "model.onnx"), "--name", "pico", "--reload-root", str(extra),
                 *reload_args(tmp_path))  # fmt: skip
    assert wide.load("pico", widened).json()["version"] == _version(widened)
    assert wide.load("pico", a).status == 403


def test_sighup_reloads_what_model_names(serve, pico_onnx, val_jpegs, tmp_path):
    current = tmp_path / "current.onnx"
    shutil.copy(pico_onnx, current)
    server = serve("--model", str(current), "--name", "pico")  # SIGHUP needs no --allow-reload
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
