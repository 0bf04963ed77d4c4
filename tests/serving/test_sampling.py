"""Field sampling (``detpipe serve --sample-payloads``) against real processes: the server, moto's S3.

Rate, layout and content on S3 and what ``detpipe mine``'s pool reads of it; a stalled store
(moto stopped with SIGSTOP) with a queue of 1: samples dropped and counted while every request
answers; the size cap; OIP tensors never sampled; the queue written out at SIGTERM; bad flags.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
from store_servers import MotoServer, s3_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
KEY = re.compile(r"pico/(sha-[0-9a-f]{12})/(\d{4}-\d{2}-\d{2})/(\d{8}T\d{12}Z-[0-9a-f]{16})\.(jpg|json)")
OUTCOMES = ("written", "dropped_full", "dropped_cap", "failed")


def _metric(text: str, name: str, **labels: str) -> float:
    sel = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    m = re.search(rf"^{name}{{{sel}}} (\S+)$" if labels else rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _outcomes(server) -> dict[str, float]:
    text = server.get("/metrics").body.decode()
    counts = {o: _metric(text, "detpipe_payload_samples_total", outcome=o) for o in OUTCOMES}
    return {**counts, "queued": _metric(text, "detpipe_payload_samples_queued"),
            "bytes": _metric(text, "detpipe_payload_sample_bytes_total")}  # fmt: skip


def _drained(server, timeout: float = 120) -> dict[str, float]:
    """The sampling metrics once nothing waits to be written (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = _outcomes(server)
        if counts["queued"] == 0 or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def _predict_body(jpegs: list[bytes]) -> bytes:
    return json.dumps({"instances": [{"b64": base64.b64encode(j).decode()} for j in jpegs]}).encode()


def test_about_rate_times_images_land_on_s3_as_the_pool_reads_them(
    serve, pico_onnx, val_jpegs, s3, tmp_path, monkeypatch
):
    prefix = f"s3://detpipe-test/{uuid.uuid4().hex[:8]}/payloads"
    n_detect, n_predict, rate = 160, 20, 0.5  # 160 + 20 x 2 = 200 images
    day_before = datetime.now(UTC).date()
    server = serve("--model", str(pico_onnx), "--name", "pico", "--sample-payloads", prefix,
                   "--sample-rate", str(rate), "--sample-queue", "256", env=s3.env)  # fmt: skip
    answers: dict[str, dict] = {}  # sha256 of an image -> the server's answer for it
    for i in range(n_detect):
        jpeg = val_jpegs[i % len(val_jpegs)]
        reply = server.post("/v1/models/pico:detect", jpeg, "image/jpeg")
        assert reply.status == 200, reply.body
        body = reply.json()
        answers[hashlib.sha256(jpeg).hexdigest()] = {k: body[k] for k in ("width", "height", "detections")}
    version = reply.headers["x-model-version"]
    for i in range(n_predict):
        pair = [val_jpegs[(2 * i) % len(val_jpegs)], val_jpegs[(2 * i + 1) % len(val_jpegs)]]
        reply = server.post("/v1/models/pico:predict", _predict_body(pair), "application/json")
        assert reply.status == 200, reply.body
    counts = _drained(server)
    day_after = datetime.now(UTC).date()
    images = n_detect + 2 * n_predict
    sigma = math.sqrt(images * rate * (1 - rate))
    assert counts["queued"] == 0
    assert counts["dropped_full"] == counts["dropped_cap"] == counts["failed"] == 0
    assert abs(counts["written"] - rate * images) <= 4 * sigma, counts  # [72, 128] of 200

    store = s3.store(prefix)
    keys = store.list("")
    parsed = [KEY.fullmatch(k) for k in keys]
    assert all(parsed), [k for k, m in zip(keys, parsed, strict=True) if not m][:3]
    jpgs = [k for k in keys if k.endswith(".jpg")]
    assert len(jpgs) == len(keys) - len(jpgs) == counts["written"]
    assert {m.group(1) for m in parsed} == {version}
    assert {m.group(2) for m in parsed} <= {day_before.isoformat(), day_after.isoformat()}
    assert len({m.group(3) for m in parsed}) == counts["written"]  # one id per sample, unique
    total = 0
    routes = set()
    for key in jpgs:
        image = store.get_bytes(key)
        doc = json.loads(store.get_bytes(key[: -len(".jpg")] + ".json"))
        total += len(image) + store.stat(key[: -len(".jpg")] + ".json").size
        digest = hashlib.sha256(image).hexdigest()
        assert image in val_jpegs  # the bytes as received
        sid = key.rsplit("/", 1)[1][: -len(".jpg")]
        assert (doc["id"], doc["image"], doc["sha256"], doc["bytes"]) == (
            sid,
            f"{sid}.jpg",
            digest,
            len(image),
        )
        assert (doc["model_name"], doc["model_version"]) == ("pico", version)
        assert doc["nms"] == {"conf": 0.25, "iou": 0.7, "max_det": 300}
        when = datetime.strptime(doc["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert key.split("/")[2] == when.date().isoformat() and sid.startswith(
            when.strftime("%Y%m%dT%H%M%S%f")
        )
        assert {k: doc[k] for k in ("width", "height", "detections")} == answers[digest]
        routes.add(doc["route"])
    assert routes == {"detect", "predict"}
    assert counts["bytes"] == total

    from detpipe.mine.pool import list_pool

    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    pool = list_pool(f"{prefix}/pico", cache=tmp_path / "pool")
    assert sorted(p.name for p in pool) == sorted(k[len("pico/") :] for k in jpgs)
    assert all(p.path.read_bytes() in val_jpegs for p in pool)


def test_a_stalled_store_drops_samples_while_every_request_answers(serve, pico_onnx, val_jpegs):
    moto = MotoServer()
    try:
        bucket = moto.make_bucket()
        env = {**s3_env(moto.endpoint), "DETPIPE_S3_TIMEOUT": "60", "DETPIPE_S3_RETRIES": "1"}
        server = serve("--model", str(pico_onnx), "--name", "pico", "--sample-payloads", f"s3://{bucket}/p",
                       "--sample-rate", "1", "--sample-queue", "1", env=env)  # fmt: skip
        assert server.post("/v1/models/pico:detect", val_jpegs[0], "image/jpeg").status == 200
        assert _drained(server)["written"] == 1  # the store works before it stalls
        moto.proc.send_signal(signal.SIGSTOP)
        try:
            n = 24
            for i in range(n):
                reply = server.post("/v1/models/pico:detect", val_jpegs[i % len(val_jpegs)], "image/jpeg")
                assert reply.status == 200, reply.body
            stalled = _outcomes(server)
            # the first sample waits in the writer for the stopped store; the queue of 1 is full
            assert (stalled["queued"], stalled["written"], stalled["dropped_full"]) == (1, 1, n - 1)
            assert server.get("/readyz").status == 200
        finally:
            moto.proc.send_signal(signal.SIGCONT)
        counts = _drained(server)
        assert counts["queued"] == 0 and counts["written"] + counts["failed"] == 2
        assert counts["dropped_full"] == n - 1
        assert len([k for k in moto_keys(moto, bucket) if k.endswith(".jpg")]) == counts["written"]
    finally:
        moto.kill()


def moto_keys(moto: MotoServer, bucket: str, prefix: str = "p") -> list[str]:
    from detpipe.store import S3Config, open_store

    return open_store(f"s3://{bucket}/{prefix}", s3=S3Config.from_env(s3_env(moto.endpoint))).list("")


def test_the_cap_stops_writing_and_tensors_are_never_sampled(serve, pico_onnx, val_jpegs, tmp_path):
    out = tmp_path / "payloads"
    cap = 8 * 1024
    mib = str(cap / 1024 / 1024)
    server = serve("--model", str(pico_onnx), "--name", "pico", "--sample-payloads", str(out),
                   "--sample-rate", "1", "--sample-max-mb", mib, "--sample-queue", "64")  # fmt: skip
    x = np.full((1, 3, 64, 64), 0.5, np.float32)  # a letterboxed input tensor, as tritonclient sends it
    header = json.dumps({"inputs": [{"name": "images", "datatype": "FP32", "shape": list(x.shape),
                                     "parameters": {"binary_data_size": x.nbytes}}]}).encode()  # fmt: skip
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    from serve_client import http

    for _ in range(3):
        assert http(server.url + "/v2/models/pico/infer", header + x.tobytes(), headers).status == 200
    assert _drained(server) == {**dict.fromkeys(OUTCOMES, 0.0), "queued": 0.0, "bytes": 0.0}
    assert not out.exists() or not any(out.rglob("*.*"))

    n = 20
    for i in range(n):
        assert (
            server.post("/v1/models/pico:detect", val_jpegs[i % len(val_jpegs)], "image/jpeg").status == 200
        )
    counts = _drained(server)
    files = [p for p in out.rglob("*") if p.is_file()]
    written = sum(p.stat().st_size for p in files)
    assert written == counts["bytes"] <= cap
    assert counts["written"] >= 1 and counts["dropped_cap"] >= 1
    assert counts["written"] + counts["dropped_cap"] == n and counts["dropped_full"] == counts["failed"] == 0
    assert len([p for p in files if p.suffix == ".jpg"]) == counts["written"]
    assert "payload sampling stopped" in server.log.read_text()


def test_sigterm_writes_what_is_queued_and_gives_up_on_a_dead_store(serve, pico_onnx, val_jpegs):
    stores = {"late": MotoServer(), "dead": MotoServer()}  # one comes back after SIGTERM, one never
    try:
        servers, buckets = {}, {name: moto.make_bucket() for name, moto in stores.items()}
        for name, moto in stores.items():
            env = {**s3_env(moto.endpoint), "DETPIPE_S3_TIMEOUT": "60", "DETPIPE_S3_RETRIES": "1"}
            servers[name] = serve("--model", str(pico_onnx), "--name", "pico", "--sample-rate", "1",
                                  "--sample-queue", "64", "--sample-payloads", f"s3://{buckets[name]}/p",
                                  env=env, wait=False)  # fmt: skip
        n = 6
        for name, server in servers.items():
            server.wait_ready()
            stores[name].proc.send_signal(signal.SIGSTOP)
            for i in range(n):
                assert server.post("/v1/models/pico:detect", val_jpegs[i], "image/jpeg").status == 200
            assert _outcomes(server)["queued"] == n  # all wait for the stopped store

        late = servers["late"]
        late.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # SIGTERM lands while the store is still stopped
        stores["late"].proc.send_signal(signal.SIGCONT)
        assert late.proc.wait(timeout=60) in (0, -signal.SIGTERM)
        keys = moto_keys(stores["late"], buckets["late"])
        assert len([k for k in keys if k.endswith(".jpg")]) == n
        assert "not written at shutdown" not in late.log.read_text()

        dead = servers["dead"]
        assert dead.stop(timeout=60) in (0, -signal.SIGTERM)  # SIGTERM: gives up after 5 s
        assert f"{n} queued samples not written at shutdown" in dead.log.read_text()
    finally:
        for moto in stores.values():
            moto.proc.send_signal(signal.SIGCONT)
            moto.kill()


def _serve_error(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "detpipe.cli.main", "serve", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--sample-payloads", "runs/x"],
            "--sample-payloads and --sample-rate go together: pass both or neither",
        ),
        (["--sample-rate", "0.1"], "--sample-payloads and --sample-rate go together: pass both or neither"),
        (
            ["--sample-payloads", "runs/x", "--sample-rate", "1.5"],
            "argument --sample-rate: must be in [0, 1], got 1.5",
        ),
        (["--sample-payloads", "s3://Bad_Bucket/p", "--sample-rate", "0.1"], None),
        (
            ["--sample-payloads", "s3://detpipe/models", "--sample-rate", "0.1"],
            "inside the releases (models/) or the OTA repository (ota/); give a prefix of its own, "
            "e.g. s3://detpipe/payloads",
        ),
    ],
)
def test_bad_sampling_flags_exit_2_with_one_line(pico_onnx, extra, message):
    res = _serve_error("--model", str(pico_onnx), *extra)
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert "Traceback" not in res.stderr
    if message is not None:
        assert last.endswith(message), last
    else:
        assert last.startswith("detpipe serve: error: ") and "Bad_Bucket" in last, last


def test_a_model_name_that_is_no_path_segment_is_refused(pico_onnx, tmp_path):
    odd = tmp_path / "pico model.onnx"  # the name comes from the file stem: 'pico model'
    odd.write_bytes(pico_onnx.read_bytes())
    res = _serve_error("--model", str(odd), "--sample-payloads", str(tmp_path / "p"), "--sample-rate", "0.1")
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        "detpipe serve: error: payload sampling: invalid model name 'pico model': use letters, digits, '.', "
        "'_' and '-' (it becomes a store path segment)"
    )
