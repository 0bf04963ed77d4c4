"""The one warm-up (the server's and the edge health check's) and the one static-batch padding.

A NaN-output model fails the same check in every caller, each with its own error: the
runtime's ``WarmUpFailed``, the server's InvalidInput (``detpipe serve`` exits 2 with one
line), the agent's ``HealthCheckFailed``. A static-batch model gets grey padding rows from
the data plane and from the shadow, through a real ``detpipe serve``.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from model_files import constant_head, fails_on_bright_input

from detpipe.edge.health import HealthCheckFailed, check_model
from detpipe.errors import InvalidInput
from detpipe.runtime.backends import load_predictor, model_file
from detpipe.runtime.image import stack_batch, to_input
from detpipe.runtime.warmup import WarmUp, WarmUpFailed, check_output, load_warm, probe_image, warm_up
from detpipe.serving.config import ServerConfig
from detpipe.serving.model import load_model

ANCHORS = 21  # a 32 px input: 4x4 + 2x2 + 1x1
NAN_VALUES = 1 * 6 * ANCHORS


def test_output_rules():
    ok = np.zeros((1, 6, 84), dtype=np.float32)
    check_output(ok, batch=1, classes=2)
    check_output(ok, batch=1, classes=None)  # no class names: any number of classes from one
    for bad, classes, message in (
        (np.zeros((1, 7, 84), np.float32), 2, r"expected \(1, 6, anchors\) for 2 classes"),
        (np.zeros((2, 6, 84), np.float32), 2, r"expected \(1, 6"),
        (np.zeros((6, 84), np.float32), 2, r"^output shape \(6, 84\)"),
        (np.zeros((1, 4, 84), np.float32), None, r"expected \(1, 4 \+ classes, anchors\)"),
        (np.full((1, 6, 84), np.inf, np.float32), 2, r"^output has 504 non-finite values \(NaN/inf\)$"),
    ):
        with pytest.raises(WarmUpFailed, match=message):
            check_output(bad, batch=1, classes=classes)
    img = probe_image()
    assert img.shape == (480, 640, 3) and img.dtype == np.uint8
    assert np.array_equal(img, probe_image())  # the same input on every device


def test_a_nan_model_fails_the_one_warm_up_in_every_caller(tmp_path):
    nan = constant_head(tmp_path / "nan.onnx", math.nan)
    reason = f"output has {NAN_VALUES} non-finite values (NaN/inf)"
    for image in (None, probe_image()):
        with pytest.raises(WarmUpFailed, match=re.escape(reason)):
            load_warm(model_file(nan), "onnxruntime", threads=1, image=image)
    with pytest.raises(InvalidInput) as served:
        load_model(ServerConfig(model=str(nan), threads=1))
    assert type(served.value) is InvalidInput and str(served.value) == f"nan.onnx: warm-up {reason}"
    with pytest.raises(HealthCheckFailed) as edge:
        check_model(nan)
    assert str(edge.value) == reason  # the agent's status.json shows it as it was
    res = subprocess.run([sys.executable, "-m", "detpipe.cli.main", "serve", "--model", str(nan)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines()[-1] == f"detpipe serve: error: nan.onnx: warm-up {reason}"


def test_a_passing_model_and_the_two_inputs(tmp_path):
    zero = constant_head(tmp_path / "zero.onnx", 0.0, batch=3)
    predictor, result = load_warm(model_file(zero), "onnxruntime", threads=1)
    assert result == WarmUp((3, 6, ANCHORS), 0) and predictor.batch == 3  # the whole static batch ran
    assert check_model(zero) == WarmUp((3, 6, ANCHORS), 0)
    # the server warms up on the grey padding image, the agent on the probe: a model that fails only
    # on bright inputs passes the first and fails the second (tests/deploy's failing canary relies on it)
    bright = load_predictor(model_file(fails_on_bright_input(tmp_path / "bright.onnx")), "onnxruntime")
    assert warm_up(bright).output_shape[:2] == (1, 6)
    with pytest.raises(WarmUpFailed, match=r"^inference failed: "):
        warm_up(bright, probe_image())


def test_stack_batch_pads_a_static_batch_with_the_grey_image():
    rows = [np.random.default_rng(i).random((3, 8, 8), dtype=np.float32) for i in range(2)]
    x = stack_batch(rows, 8, batch=4)
    assert x.shape == (4, 3, 8, 8) and x.dtype == np.float32 and x.flags.c_contiguous
    assert np.array_equal(x[:2], np.stack(rows))
    assert np.array_equal(x[2:], to_input([], 8, 2))  # exactly the padding preprocess gives
    assert stack_batch(rows, 8).shape == (2, 3, 8, 8)  # a dynamic batch: no padding
    assert stack_batch(rows, 8, batch=1).shape == (2, 3, 8, 8)  # never truncated
    with pytest.raises(InvalidInput, match=r"input row 1 has shape \[3, 8, 9\], expected \[3, 8, 8\]"):
        stack_batch([rows[0], np.zeros((3, 8, 9), np.float32)], 8)


@pytest.mark.slow
def test_a_static_batch_model_is_padded_by_the_data_plane_and_the_shadow(serve, tmp_path):
    static = constant_head(tmp_path / "static.onnx", 0.0, batch=3)
    shadow = constant_head(tmp_path / "shadow.onnx", 0.0, batch=2)  # another batch, the same input
    server = serve(
        "--model", str(static), "--shadow", str(shadow), "--shadow-fraction", "1", "--threads", "1"
    )
    assert server.get("/v1/models/static").json()["max_batch"] == 3
    jpeg = cv2.imencode(".jpg", probe_image())[1].tobytes()
    for _ in range(3):  # one image per call: 2 padding rows live, 1 in the shadow
        reply = server.post("/v1/models/static:detect", jpeg, "image/jpeg")
        assert reply.status == 200 and reply.json()["detections"] == [], reply.body
    shadow_requests = re.compile(r'^detpipe_shadow_requests_total\{.*outcome="(\w+)".*\} (\S+)$', re.M)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        outcomes = dict(shadow_requests.findall(server.get("/metrics").body.decode()))
        if float(outcomes.get("ok", 0)) >= 3:
            break
        time.sleep(0.1)
    assert float(outcomes.get("ok", 0)) == 3 and float(outcomes.get("error", 0)) == 0, outcomes
