"""Shadow traffic: the comparison metrics, and a failing candidate that the live path never sees."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from model_files import fails_on_bright_input, onnx_variant

from detpipe.io import sha256_file
from detpipe.runtime.nms import Detections
from detpipe.serving.shadow import compare

pytestmark = pytest.mark.slow
ALL = ("--shadow-fraction", "1")


def _version(path) -> str:
    return f"sha-{sha256_file(path)[:12]}"


def _det(boxes, classes, scores=None) -> Detections:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores if scores is not None else np.linspace(0.9, 0.5, len(boxes)), np.float32)
    return Detections(boxes, scores, np.asarray(classes, np.int64))


def test_compare_matches_greedily_by_iou():
    live = _det([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], [0, 1, 1])
    shadow = _det([[0, 0, 10, 12], [21, 20, 31, 30], [90, 90, 95, 95], [100, 100, 110, 110]], [0, 0, 1, 1])
    c = compare(live, shadow)
    np.testing.assert_allclose(c.ious, [100 / 120, 90 / 110])
    assert (c.matched, c.class_agreements, c.delta) == (2, 1, 1)
    empty = compare(live, _det([], []))
    assert (empty.matched, empty.class_agreements, empty.delta) == (0, 0, -3)


def _metric(text: str, name: str, **labels: str) -> float:
    sel = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    m = re.search(rf"^{name}\{{{sel}\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _wait_for(server, name: str, value: float, **labels: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = server.get("/metrics").body.decode()
        if _metric(text, name, **labels) >= value:
            return text
        time.sleep(0.1)
    pytest.fail(f"{name}{labels} never reached {value}")


def test_a_shadow_of_the_same_network_agrees_fully(serve, pico_onnx, val_jpegs, tmp_path):
    candidate = onnx_variant(pico_onnx, tmp_path / "candidate.onnx", "candidate")
    server = serve(
        "--model", str(pico_onnx), "--name", "pico", "--shadow", str(candidate), "--shadow-fraction", "1"
    )
    live = _version(pico_onnx)
    pair = {"version": live, "shadow_version": _version(candidate)}
    answers = [server.post("/v1/models/pico:detect", j, "image/jpeg").json() for j in val_jpegs]
    text = _wait_for(server, "detpipe_shadow_requests_total", len(val_jpegs), outcome="ok", **pair)
    live_boxes = sum(len(a["detections"]) for a in answers)
    assert live_boxes > 0
    assert _metric(text, "detpipe_shadow_matched_boxes_total", **pair) == live_boxes
    assert _metric(text, "detpipe_shadow_class_agreements_total", **pair) == live_boxes
    assert _metric(text, "detpipe_shadow_iou_bucket", le="0.99", **pair) == 0  # every IoU is 1
    assert _metric(text, "detpipe_shadow_iou_count", **pair) == live_boxes
    assert _metric(text, "detpipe_shadow_detection_delta_bucket", le="0.0", **pair) == len(val_jpegs)
    assert _metric(text, "detpipe_shadow_detection_delta_bucket", le="-1.0", **pair) == 0
    assert _metric(text, "detpipe_shadow_duration_seconds_count", **pair) == len(val_jpegs)


def test_a_crashing_shadow_never_touches_the_live_answers(serve, pico_onnx, val_jpegs, tmp_path):
    broken = fails_on_bright_input(tmp_path / "broken.onnx")
    plain = serve("--model", str(pico_onnx), "--name", "pico")
    server = serve(
        "--model", str(pico_onnx), "--name", "pico", "--shadow", str(broken), "--shadow-fraction", "1"
    )
    for jpeg in val_jpegs:
        reply = server.post("/v1/models/pico:detect", jpeg, "image/jpeg")
        assert reply.status == 200
        assert reply.json() == plain.post("/v1/models/pico:detect", jpeg, "image/jpeg").json()
    pair = {"version": _version(pico_onnx), "shadow_version": _version(broken)}
    text = _wait_for(server, "detpipe_shadow_requests_total", 1, outcome="error", **pair)
    errors = _metric(text, "detpipe_shadow_requests_total", outcome="error", **pair)
    dropped = _metric(text, "detpipe_shadow_requests_total", outcome="dropped", **pair)
    assert errors + dropped <= len(val_jpegs) and errors >= 1
    assert _metric(text, "detpipe_shadow_requests_total", outcome="ok", **pair) == 0
    assert server.get("/readyz").status == 200


def test_a_shadow_of_another_input_size_is_refused(pico_onnx, tmp_path):
    import subprocess
    import sys

    other = fails_on_bright_input(tmp_path / "other.onnx", imgsz=32)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "detpipe.cli.main",
            "serve",
            "--model",
            str(pico_onnx),
            "--shadow",
            str(other),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == (
        "detpipe serve: error: shadow model takes (32, 32), the live model (64, 64): the shadow runs on "
        "the live model's input tensor, so both need the same --imgsz"
    )
