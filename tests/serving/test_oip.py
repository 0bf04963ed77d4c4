"""The Open Inference Protocol (v2) driven by the field's own client, tritonclient.http.

Outputs are checked against onnxruntime on the same tensor; bad tensors get a 400 naming the
tensor and the problem; raw-image detection also takes multipart uploads.
"""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest
import tritonclient.http as triton
from serve_client import http
from tritonclient.utils import InferenceServerException

from detpipe.runtime.image import decode_image, preprocess
from detpipe.runtime.predictors import OnnxPredictor
from detpipe.serving.timing import model_ms

pytestmark = pytest.mark.slow


def _batch(val_jpegs: list[bytes], n: int) -> np.ndarray:
    x, _ = preprocess([decode_image(j) for j in val_jpegs[:n]], (64, 64))
    return x


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infer_matches_onnxruntime(serve, pico_onnx, val_jpegs, binary):
    server = serve("--model", str(pico_onnx), "--name", "pico")
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("pico")
    meta = client.get_model_metadata("pico")
    assert meta["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 3, 64, 64]}]
    assert meta["outputs"] == [{"name": "output0", "datatype": "FP32", "shape": [-1, 6, 84]}]
    assert meta["platform"] == "onnxruntime_onnx"
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]

    x = _batch(val_jpegs, 3)
    inp = triton.InferInput("images", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = triton.InferRequestedOutput("output0", binary_data=binary)
    result = client.infer("pico", [inp], outputs=[out], request_id="r1")
    expected = OnnxPredictor(pico_onnx, threads=1).infer(x)
    np.testing.assert_allclose(result.as_numpy("output0"), expected, rtol=1e-5, atol=1e-5)
    response = result.get_response()
    assert (response["model_name"], response["id"]) == ("pico", "r1")
    assert response["model_version"] == meta["versions"][0]

    version = meta["versions"][0]
    result = client.infer("pico", [inp], model_version=version)  # the versioned route
    np.testing.assert_allclose(result.as_numpy("output0"), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(InferenceServerException, match="has no version '7'"):
        client.infer("pico", [inp], model_version="7")
    with pytest.raises(InferenceServerException, match="'other' is not served here"):
        client.infer("other", [inp])

    with urllib.request.urlopen(server.url + "/openapi.json", timeout=10) as r:  # PlainRoute is documented
        paths = json.load(r)["paths"]
    params = paths["/v2/models/{name}/versions/{version}/infer"]["post"]["parameters"]
    assert [p["name"] for p in params] == ["name", "version"]


def test_tritonclient_model_config_statistics_and_repository_index(serve, pico_onnx, val_jpegs):
    """Triton's configuration, statistics and repository extensions, read by tritonclient itself."""
    server = serve("--model", str(pico_onnx), "--name", "pico", "--max-batch", "4", "--max-delay-ms", "2")
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    config = client.get_model_config("pico")
    assert (config["name"], config["platform"], config["max_batch_size"]) == ("pico", "onnxruntime_onnx", 4)
    assert config["input"] == [{"name": "images", "data_type": "TYPE_FP32", "dims": [3, 64, 64]}]
    assert config["output"] == [{"name": "output0", "data_type": "TYPE_FP32", "dims": [6, 84]}]
    assert config["dynamic_batching"] == {"max_queue_delay_microseconds": 2000}
    version = client.get_model_metadata("pico")["versions"][0]

    assert client.get_inference_statistics("pico") == {"model_stats": []}  # nothing run yet
    x = _batch(val_jpegs, 3)
    inp = triton.InferInput("images", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    client.infer("pico", [inp])
    client.infer("pico", [inp])
    [stats] = client.get_inference_statistics("pico")["model_stats"]
    assert (stats["name"], stats["version"]) == ("pico", version)
    assert (stats["inference_count"], stats["execution_count"]) == (6, 2)  # 2 calls of 3 images
    assert stats["inference_stats"]["success"]["count"] == 2 and stats["inference_stats"]["success"]["ns"] > 0
    assert [b["batch_size"] for b in stats["batch_stats"]] == [3]
    assert client.get_inference_statistics("pico", model_version=version)["model_stats"] == [stats]
    assert client.get_inference_statistics()["model_stats"] == [stats]  # every model
    assert client.get_model_repository_index() == [{"name": "pico", "version": version, "state": "READY"}]
    with pytest.raises(InferenceServerException, match="not served here"):
        client.get_model_config("other")


def _infer_error(server, doc: dict, blob: bytes = b"") -> tuple[int, dict]:
    header = json.dumps(doc).encode()
    headers = {"Content-Type": "application/octet-stream"}
    if blob:
        headers["Inference-Header-Content-Length"] = str(len(header))
    from serve_client import http

    reply = http(server.url + "/v2/models/pico/infer", header + blob, headers)
    return reply.status, reply.json()


def test_bad_tensors_get_400_with_the_reason(serve, pico_onnx):
    server = serve("--model", str(pico_onnx), "--name", "pico")
    good = {"name": "images", "datatype": "FP32", "shape": [1, 3, 64, 64]}
    blob = np.zeros((1, 3, 64, 64), np.float32).tobytes()
    cases = [
        (
            {"inputs": [{**good, "name": "x", "data": [0]}]},
            b"",
            "input 'x': unknown; this model's input is 'images'",
        ),
        (
            {"inputs": [{**good, "datatype": "INT8", "data": [0]}]},
            b"",
            "input 'images': datatype 'INT8'; the model takes FP32",
        ),
        (
            {"inputs": [{**good, "shape": [1, 3, 32, 32], "data": [0]}]},
            b"",
            "input 'images': shape [1, 3, 32, 32]; the model takes [n, 3, 64, 64]",
        ),
        (
            {"inputs": [{**good, "data": [0.0] * 10}]},
            b"",
            "input 'images': 10 values for shape [1, 3, 64, 64] (12288 expected)",
        ),
        (
            {"inputs": [{**good, "data": ["a"] * 12288}]},
            b"",
            "input 'images': data must be numbers (flat or nested as the shape)",
        ),
        (
            {"inputs": [{**good, "parameters": {"binary_data_size": 100}}]},
            blob,
            "input 'images': binary_data_size 100; shape [1, 3, 64, 64] FP32 is 49152 bytes",
        ),
        (
            {"inputs": [{**good, "parameters": {"binary_data_size": 49152}}]},
            blob[:-4],
            "input 'images': 49148 bytes of binary data after the header; expected 49152",
        ),
        (
            {"inputs": [{**good, "data": [0.0] * 12288}], "outputs": [{"name": "boxes"}]},
            b"",
            "output 'boxes': unknown; this model's output is 'output0'",
        ),
        ({"inputs": []}, b"", "expected 1 input (images), got 0"),
        (
            {"inputs": [{**good, "shape": [33, 3, 64, 64], "data": [0]}]},
            b"",
            "input 'images': batch 33; the limit is 32 per request",
        ),
    ]
    for doc, data, message in cases:
        assert _infer_error(server, doc, data) == (400, {"error": message}), message
    from serve_client import http

    reply = http(server.url + "/v2/models/pico/infer", b"{}", {"Inference-Header-Content-Length": "99"})
    assert reply.status == 400
    assert reply.json() == {
        "error": "Inference-Header-Content-Length '99': expected an integer <= the body's 2 bytes"
    }
    assert http(server.url + "/v2/models/other/infer", b"{}").status == 404


def test_multipart_upload_detects_like_the_raw_body(serve, pico_onnx, val_jpegs):
    server = serve("--model", str(pico_onnx), "--name", "pico")
    raw = server.post("/v1/models/pico:detect", val_jpegs[0], "image/jpeg").json()
    boundary = "detpipe-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + val_jpegs[0]
        + f"\r\n--{boundary}--\r\n".encode()
    )
    reply = server.post("/v1/models/pico:detect", body, f"multipart/form-data; boundary={boundary}")
    assert reply.status == 200, reply.body
    assert reply.json() == raw
    empty = f'--{boundary}\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--{boundary}--\r\n'
    reply = server.post("/v1/models/pico:detect", empty.encode(), f"multipart/form-data; boundary={boundary}")
    assert reply.status == 400
    assert reply.json() == {"error": "multipart body has no file: upload the image as file=@image.jpg"}
    reply = server.post("/v1/models/pico:detect", b"garbage", "multipart/form-data")
    assert reply.status == 400 and set(reply.json()) == {"error"}


def _model_seconds(server) -> tuple[float, float]:
    """``detpipe_inference_duration_seconds`` sum and count, from ``/metrics``."""
    values = {}
    for line in server.get("/metrics").body.decode().splitlines():
        name, _, value = line.partition(" ")
        values[name] = value
    return float(values["detpipe_inference_duration_seconds_sum"]), float(
        values["detpipe_inference_duration_seconds_count"]
    )


def _server_timing(headers: dict[str, str]) -> float:
    ms = model_ms(headers["server-timing"])
    assert ms is not None, headers["server-timing"]
    return ms


@pytest.mark.parametrize("max_batch", ["1", "8"])
def test_server_timing_header_is_the_requests_model_calls(serve, pico_onnx, val_jpegs, max_batch):
    server = serve("--model", str(pico_onnx), "--name", "pico", "--max-batch", max_batch)
    for n in (1, 3):  # at --max-batch 1 three images are three calls; at 8 one call (or more)
        x = _batch(val_jpegs, n)
        tensor = {"name": "images", "shape": list(x.shape), "datatype": "FP32"}
        header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": x.nbytes}}]}).encode()
        headers = {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        }
        before = _model_seconds(server)
        reply = http(server.url + "/v2/models/pico/infer", header + x.tobytes(), headers)
        after = _model_seconds(server)
        assert reply.status == 200, reply.body[:200]
        calls = after[1] - before[1]
        assert (1 <= calls <= n) if max_batch == "8" else calls == n
        # the header is those calls' time (ms, 3 decimals), as the histogram summed them
        assert _server_timing(reply.headers) == pytest.approx(
            (after[0] - before[0]) * 1000, abs=0.002 * calls
        )
    reply = server.post("/v1/models/pico:detect", val_jpegs[0], "image/jpeg")
    assert reply.status == 200 and _server_timing(reply.headers) > 0
