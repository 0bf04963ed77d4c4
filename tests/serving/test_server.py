"""``detpipe serve`` as a real uvicorn process: detections, batching, errors, metrics, shutdown."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from serve_client import http

from detpipe.runtime.image import decode_image
from detpipe.runtime.nms import PostprocessConfig
from detpipe.runtime.predictors import OnnxPredictor

pytestmark = pytest.mark.slow
JSON = "application/json"


def _expected(onnx_path, jpeg: bytes, conf: float = 0.25) -> dict:
    """What the server must answer: the same model run directly, in this process."""
    predictor = OnnxPredictor(onnx_path, threads=1, postprocess_cfg=PostprocessConfig(conf=conf))
    image = decode_image(jpeg)
    [det] = predictor([image])
    return {"boxes": det.boxes, "scores": det.scores, "classes": det.classes, "hw": image.shape[:2]}


def _assert_same(prediction: dict, expected: dict) -> None:
    dets = prediction["detections"]
    assert (prediction["height"], prediction["width"]) == expected["hw"]
    assert len(dets) == len(expected["scores"])
    if dets:
        np.testing.assert_allclose([d["box"] for d in dets], expected["boxes"], atol=0.01)
        np.testing.assert_allclose([d["score"] for d in dets], expected["scores"], atol=1e-5)
        assert [d["class_id"] for d in dets] == expected["classes"].tolist()


def _predict_body(jpegs: list[bytes], **parameters: float) -> bytes:
    instances = [{"b64": base64.b64encode(j).decode()} for j in jpegs]
    return json.dumps({"instances": instances, "parameters": parameters}).encode()


def test_detect_and_predict_match_the_model_run_directly(serve, pico_onnx, val_jpegs):
    server = serve("--model", str(pico_onnx), "--name", "pico")
    reply = server.post("/v1/models/pico:detect", val_jpegs[0], "image/jpeg")
    assert reply.status == 200, reply.body
    assert reply.headers["x-model-name"] == "pico"
    assert re.fullmatch(r"sha-[0-9a-f]{12}", reply.headers["x-model-version"])
    body = reply.json()
    assert (body["model_name"], body["model_version"]) == ("pico", reply.headers["x-model-version"])
    expected = _expected(pico_onnx, val_jpegs[0])
    assert len(expected["scores"]) > 0, "the trained model should find objects in a val image"
    _assert_same(body, expected)
    names = OnnxPredictor(pico_onnx).names
    assert [d["class_name"] for d in body["detections"]] == [names[c] for c in expected["classes"]]

    reply = server.post("/v1/models/pico:predict", _predict_body(val_jpegs[:3], conf=0.1), "application/json")
    assert reply.status == 200, reply.body
    predictions = reply.json()["predictions"]
    assert len(predictions) == 3
    for jpeg, prediction in zip(val_jpegs[:3], predictions, strict=True):
        _assert_same(prediction, _expected(pico_onnx, jpeg, conf=0.1))


def _batch_counts(server) -> tuple[float, float]:
    metrics = server.get("/metrics").body.decode()
    count = float(re.search(r"^detpipe_inference_batch_size_count (\S+)", metrics, re.M).group(1))
    total = float(re.search(r"^detpipe_inference_batch_size_sum (\S+)", metrics, re.M).group(1))
    return count, total


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(serve, pico_onnx, val_jpegs):
    # a batch closes when it holds 8 images or 5 s after its first: 8 concurrent images make one call
    server = serve("--model", str(pico_onnx), "--max-batch", "8", "--max-delay-ms", "5000")
    reply = server.post("/v1/models/model:predict", _predict_body(val_jpegs), "application/json")
    assert reply.status == 200
    assert _batch_counts(server) == (1, 8)

    # 3 waves of 8 single-image requests from 8 threads: exactly 3 model calls of 8 images,
    # and every answer is routed back to its own caller
    expected = {j: _expected(pico_onnx, j) for j in val_jpegs}
    barrier = threading.Barrier(8)

    def wave_client(jpeg: bytes) -> list:
        replies = []
        for _ in range(3):
            barrier.wait(timeout=30)
            replies.append(server.post("/v1/models/model:detect", jpeg, "image/png"))
        return replies

    with ThreadPoolExecutor(8) as pool:
        per_client = list(pool.map(wave_client, val_jpegs))
    for jpeg, replies in zip(val_jpegs, per_client, strict=True):
        for reply in replies:
            assert reply.status == 200
            _assert_same(reply.json(), expected[jpeg])
    assert _batch_counts(server) == (1 + 3, 8 + 24)


def test_bad_requests_get_4xx_with_one_line_reasons(serve, pico_onnx, val_jpegs):
    server = serve("--model", str(pico_onnx), "--max-body-mb", "0.05", "--max-images", "2")
    cases = [
        (server.post("/v1/models/model:detect", b"not an image", "image/jpeg"), 400,
         "image 0: not a supported image (12 bytes; expected JPEG, PNG, WebP, BMP)"),
        (server.post("/v1/models/model:detect", b"", "image/jpeg"), 400, "image 0: empty image"),
        (server.post("/v1/models/other:detect", val_jpegs[0], "image/jpeg"), 404,
         "model 'other' is not served here (this server serves 'model')"),
        (server.post("/v1/models/model:detect", val_jpegs[0], "text/plain"), 415,
         "content type 'text/plain': send image bytes as image/* or application/octet-stream, "
         "or a multipart/form-data upload"),
        (server.post("/v1/models/model:detect?conf=1.5", val_jpegs[0], "image/jpeg"), 400,
         "conf: Input should be less than or equal to 1"),
        (server.post("/v1/models/model:detect", b"\xff" * 60_000, "image/jpeg"), 413,
         "request body of 60000 bytes; the limit is 52428"),
        (server.post("/v1/models/model:predict", b"{", "application/json"), 400,
         "body is not valid JSON: Expecting property name enclosed in double quotes: "
         "line 1 column 2 (char 1)"),
        (server.post("/v1/models/model:predict", b'{"images": []}', "application/json"), 400,
         'expected a JSON object {"instances": [{"b64": "<base64 image>"}, ...]}'),
        (server.post("/v1/models/model:predict", b'{"instances": []}', "application/json"), 400,
         "no images in the request"),
        (server.post("/v1/models/model:predict", _predict_body(val_jpegs[:3]), "application/json"), 413,
         "3 images in one request; the limit is 2"),
        (server.post("/v1/models/model:predict", b'{"instances": [{"b64": "@@"}]}', "application/json"), 400,
         "instances[0]: b64 is not valid base64"),
        (server.post("/v1/models/model:predict", _predict_body(val_jpegs[:1], nms=1), JSON), 400,
         "parameters: unknown nms (known: conf, iou, max_det)"),
        (server.post("/v1/models/model:predict", _predict_body(val_jpegs[:1], max_det=2.5), JSON), 400,
         "parameters.max_det: expected an integer, got 2.5"),
        (server.get("/v2/models"), 404, "Not Found"),
    ]  # fmt: skip
    for reply, status, message in cases:
        assert (reply.status, reply.json()) == (status, {"error": message})
    # nothing was lost: the server still answers
    assert server.post("/v1/models/model:detect", val_jpegs[0], "image/jpeg").status == 200


def test_over_the_queue_limit_answers_503_with_retry_after(serve, pico_onnx, val_jpegs):
    server = serve("--model", str(pico_onnx), "--max-queue", "2")
    reply = server.post("/v1/models/model:predict", _predict_body(val_jpegs[:3]), "application/json")
    assert reply.status == 503
    assert reply.headers["retry-after"] == "1"
    assert reply.json() == {"error": "server busy: 0 images queued, limit 2; retry shortly"}
    # refused before any decoding: three undecodable images get 503, not 400
    garbage = json.dumps({"instances": [{"b64": "AAAA"}] * 3}).encode()
    assert server.post("/v1/models/model:predict", garbage, JSON).status == 503
    assert (
        server.post("/v1/models/model:predict", _predict_body(val_jpegs[:2]), "application/json").status
        == 200
    )


def test_health_metadata_and_metrics(serve, pico_onnx, val_jpegs):
    server = serve("--model", str(pico_onnx), "--name", "pico")
    assert server.get("/healthz").json() == {"live": True}
    assert server.get("/v2/health/live").status == 200
    ready = server.get("/readyz")
    assert ready.status == 200 and ready.json()["ready"] is True
    assert server.get("/v2/health/ready").status == 200
    assert server.get("/v1/models").json() == {"models": ["pico"]}
    meta = server.get("/v1/models/pico").json()
    assert meta["imgsz"] == [64, 64]
    assert (meta["format"], meta["backend"], meta["max_batch"], meta["ready"]) == (
        "onnx", "onnxruntime", None, True,
    )  # fmt: skip
    assert set(meta["classes"]) == {"0", "1"}
    server.post("/v1/models/pico:detect", val_jpegs[0], "image/jpeg")
    server.post("/v1/models/pico:detect", b"x", "image/jpeg")
    server.post("/v1/models/pico:detect", b"y", "image/jpeg")
    http(
        server.url + "/v1/models/pico:detect", val_jpegs[0], {"Content-Type": "image/jpeg"}, method="PROPFIND"
    )
    # a method llhttp does not know is refused by the parser, before the app and its metrics
    assert http(server.url + "/healthz", b"", {}, method="BREW").status == 400
    text = server.get("/metrics").body.decode()
    version = server.get("/v1/models/pico").headers["x-model-version"]
    labels = f'model="pico",route="/v1/models/{{name}}:detect",version="{version}"'
    assert f'detpipe_http_requests_total{{code="200",method="POST",{labels}}} 1.0' in text
    assert f'detpipe_http_requests_total{{code="400",method="POST",{labels}}} 2.0' in text
    # any other method name is "other": label values stay a fixed set
    assert 'method="PROPFIND"' not in text and 'method="BREW"' not in text
    assert re.search(r'^detpipe_http_requests_total\{code="405",method="other",.*\} 1.0$', text, re.M)
    assert re.search(
        r'detpipe_model_info\{backend="onnxruntime",format="onnx",name="pico",version="sha-\w+"\} 1.0', text
    )
    assert "detpipe_model_ready 1.0" in text
    assert "detpipe_queue_images 0.0" in text


def test_sigterm_drains_admitted_requests_then_exits(serve, pico_onnx, val_jpegs):
    # a lone image waits up to 1.5 s for its batch to fill: SIGTERM arrives while it waits
    server = serve("--model", str(pico_onnx), "--max-delay-ms", "1500")
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(server.post, "/v1/models/model:detect", val_jpegs[0], "image/jpeg")
        time.sleep(0.5)
        server.proc.send_signal(signal.SIGTERM)
        reply = pending.result(timeout=30)
    assert reply.status == 200
    _assert_same(reply.json(), _expected(pico_onnx, val_jpegs[0]))
    assert server.proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    log = server.log.read_text()
    assert "Application shutdown complete" in log
    assert "Traceback" not in log


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "missing.onnx"], "missing.onnx: no such file, directory or release URI"),
        (
            ["--model", "MODEL", "--name", "a/b"],
            "invalid model name 'a/b': use letters, digits, '.', '_' and '-'",
        ),
        (
            ["--model", "MODEL", "--backend", "tensorrt"],
            "backend tensorrt cannot run model.onnx (onnx file)",
        ),
    ],
)
def test_bad_model_exits_2_with_one_line(pico_onnx, args, message):
    args = [str(pico_onnx) if a == "MODEL" else a for a in args]
    res = subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "serve", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines()[-1] == f"detpipe serve: error: {message}"
    assert "Traceback" not in res.stderr


def test_a_static_batch_model_gets_one_image_per_call(serve, trained_pico, val_jpegs, tmp_path):
    """Pipeline releases are exported with a fixed batch of 1: batches are capped at it."""
    from detpipe.export.model import load_detection_model
    from detpipe.export.onnx_export import OnnxExportConfig, export_onnx

    static = export_onnx(
        load_detection_model(trained_pico), tmp_path / "static.onnx", OnnxExportConfig(imgsz=(64, 64))
    )
    server = serve("--model", str(static.path), "--max-batch", "8")
    assert server.get("/v1/models/static").json()["max_batch"] == 1
    reply = server.post("/v1/models/static:predict", _predict_body(val_jpegs[:3]), JSON)
    assert reply.status == 200
    for jpeg, prediction in zip(val_jpegs[:3], reply.json()["predictions"], strict=True):
        _assert_same(prediction, _expected(static.path, jpeg))
    metrics = server.get("/metrics").body.decode()
    assert "detpipe_inference_batch_size_count 3.0" in metrics


def test_bad_security_settings_exit_2_with_one_line(pico_onnx, tmp_path):
    shared = tmp_path / "shared-token"
    shared.write_text("a-token\n")
    shared.chmod(0o644)
    cases = [
        (["--allow-reload"], "--allow-reload needs --reload-token-file FILE (or DETPIPE_RELOAD_TOKEN_FILE)"),
        (["--allow-reload", "--reload-token-file", str(shared)],
         f"--reload-token-file {shared}: readable by group or others (mode 644); chmod 600 it"),
        (["--allow-reload", "--reload-token-file", str(tmp_path / "none")],
         f"--reload-token-file {tmp_path / 'none'}: cannot read (No such file or directory)"),
        (["--max-inflight-mb", "1"], "max_inflight_bytes (1048576) is below max_body_bytes (33554432): "
         "a request at the body limit could never be read"),
    ]  # fmt: skip
    for args, message in cases:
        res = subprocess.run(
            [sys.executable, "-m", "detpipe.cli.main", "serve", "--model", str(pico_onnx), *args],
            capture_output=True, text=True, timeout=120, env={**os.environ, "DETPIPE_RELOAD_TOKEN_FILE": ""},
        )  # fmt: skip
        assert res.returncode == 2, res.stderr
        assert res.stderr.strip().splitlines()[-1] == f"detpipe serve: error: {message}"
        assert "a-token" not in res.stderr and "Traceback" not in res.stderr


def test_loop_uvloop_without_uvloop_exits_3_with_one_line(pico_onnx, tmp_path):
    hide = tmp_path / "no-uvloop" / "uvloop"  # first on the path: `import uvloop` fails as when not installed
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text("raise ImportError('no uvloop here')\n")
    path = os.pathsep.join(filter(None, [str(hide.parent), os.environ.get("PYTHONPATH")]))
    res = subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "serve", "--model", str(pico_onnx), "--loop", "uvloop"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": path},
    )  # fmt: skip
    assert res.returncode == 3, res.stderr
    message = "--loop uvloop: uvloop is not installed (pip install uvloop)"
    assert res.stderr.strip().splitlines()[-1] == f"detpipe serve: error: {message}"
    assert "Traceback" not in res.stderr
