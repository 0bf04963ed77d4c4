"""The accuracy gate: limits, decisions, and real models that pass or fail it."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from detpipe.errors import GateFailed, InvalidInput
from detpipe.export.calib import calibration_images
from detpipe.export.evaluation import EVAL_POSTPROCESS, ValImages, evaluate_predictor, pytorch_predictor
from detpipe.export.gate import GateConfig, enforce, evaluate_gate, gate_from_report, parse_gate
from detpipe.export.model import load_detection_model
from detpipe.export.onnx_export import OnnxExportConfig, export_onnx
from detpipe.export.quantize import QuantizeConfig, quantize_onnx
from detpipe.runtime.predictors import OnnxPredictor


def test_parse_gate():
    assert parse_gate("fp16=1.0,int8=2.0") == {"fp16": 1.0, "int8": 2.0}
    assert parse_gate(" onnx-int8 = 0.5 ") == {"onnx-int8": 0.5}
    for bad in ("fp16", "bf16=1", "int8=-1", "int8=abc", ",", "int8=nan"):
        with pytest.raises(InvalidInput, match="--gate"):
            parse_gate(bad)


def test_limits_per_precision_and_format():
    cfg = GateConfig(max_drop={"int8": 3.0, "onnx-int8": 1.0})
    assert cfg.limit_for("onnx-int8") == 1.0  # format beats precision
    assert cfg.limit_for("engine-int8") == 3.0
    assert cfg.limit_for("engine-fp16") == 1.0  # default
    assert cfg.limit_for("onnx") == 0.5
    with pytest.raises(InvalidInput):
        GateConfig(metric="AP75")


def test_decisions_and_enforce():
    base = {"mAP50-95": 0.500, "mAP50": 0.700}
    results = {
        "onnx": {"mAP50-95": 0.500, "mAP50": 0.700},
        "engine-fp16": {"mAP50-95": 0.490, "mAP50": 0.690},  # -1.0 point: exactly at the limit
        "onnx-int8": {"mAP50-95": 0.475, "mAP50": 0.690},  # -2.5 points
        "engine-int8": {"mAP50-95": math.nan, "mAP50": 0.0},
    }
    decisions = evaluate_gate(base, results, GateConfig())
    verdict = {d.format: d.passed for d in decisions}
    assert verdict == {"onnx": True, "engine-fp16": True, "onnx-int8": False, "engine-int8": False}
    assert decisions[2].drop_points == pytest.approx(2.5)
    with pytest.raises(GateFailed) as e:
        enforce(decisions)
    message = str(e.value)
    assert "onnx-int8: mAP50-95 dropped 2.50 points (50.00 -> 47.50), limit 2.00" in message
    assert "engine-int8" in message and "engine-fp16" not in message
    enforce(decisions, GateConfig(enabled=False))  # recorded, not enforced
    enforce(decisions[:2])  # all passing: no exception
    on_map50 = evaluate_gate(base, results, GateConfig(metric="mAP50"))
    assert [d.passed for d in on_map50[:3]] == [True, True, True]


def test_gate_from_report_re_decides_with_other_limits():
    report = {
        "accuracy": {
            "evaluated": True,
            "pytorch": {"mAP50-95": 0.5, "mAP50": 0.7},
            "formats": {"onnx-int8": {"mAP50-95": 0.485, "mAP50": 0.69, "delta_mAP50-95_points": -1.5}},
        }
    }
    assert [d.passed for d in gate_from_report(report, GateConfig())] == [True]  # int8 default 2.0
    strict = gate_from_report(report, GateConfig(max_drop=parse_gate("int8=1.0")))
    assert [d.passed for d in strict] == [False]
    with pytest.raises(GateFailed, match="not evaluated on a val set"):  # nothing unevaluated ships
        gate_from_report({"accuracy": {"evaluated": False}}, GateConfig())


def _corrupt_weights(src, dst, seed=0):
    """Add noise (half of each tensor's std) to every conv weight: a broken model of the same graph."""
    model = onnx.load(str(src))
    rng = np.random.default_rng(seed)
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.ndim == 4 and w.size > 64:
            noisy = w + rng.normal(0, 0.5 * w.std(), w.shape).astype(w.dtype)
            init.CopyFrom(numpy_helper.from_array(noisy, init.name))
    onnx.save(model, str(dst))
    return dst


@pytest.fixture(scope="module")
def evaluated(trained_pico, small_data, tmp_path_factory):
    """mAP of PyTorch and of good and broken exports, all with the same evaluator."""
    tmp = tmp_path_factory.mktemp("gate")
    loaded = load_detection_model(trained_pico)
    val = ValImages.from_dir(small_data.val_annotations, small_data.val_images)
    fp32 = export_onnx(loaded, tmp / "model.onnx", OnnxExportConfig(imgsz=(64, 64))).path
    good_int8 = quantize_onnx(
        fp32, tmp / "good.int8.onnx", calibration_images(small_data.train_list, 64), QuantizeConfig()
    ).path
    garbage_dir = tmp / "garbage"
    garbage_dir.mkdir()
    import cv2

    for i in range(8):  # "calibration" images that look nothing like the data: flat black
        cv2.imwrite(str(garbage_dir / f"{i}.png"), np.zeros((64, 64, 3), np.uint8))
    bad_int8 = quantize_onnx(
        fp32, tmp / "garbage.int8.onnx", calibration_images(garbage_dir), QuantizeConfig()
    ).path
    corrupted = _corrupt_weights(fp32, tmp / "corrupted.onnx")

    def run(path):
        return evaluate_predictor(OnnxPredictor(path, postprocess_cfg=EVAL_POSTPROCESS), val)

    return {
        "pytorch": evaluate_predictor(pytorch_predictor(trained_pico, (64, 64)), val),
        "onnx": run(fp32),
        "onnx-int8": run(good_int8),
        "garbage-int8": run(bad_int8),
        "corrupted": run(corrupted),
    }


def test_trained_model_has_meaningful_accuracy(evaluated):
    assert evaluated["pytorch"]["mAP50-95"] > 0.15, evaluated["pytorch"]
    assert evaluated["pytorch"]["detections"] > 0


def test_gate_passes_good_exports(evaluated):
    results = {"onnx": evaluated["onnx"], "onnx-int8": evaluated["onnx-int8"]}
    decisions = evaluate_gate(
        evaluated["pytorch"], results, GateConfig(max_drop=parse_gate("fp32=0.5,int8=2.0"))
    )
    assert all(d.passed for d in decisions), [d.reason() for d in decisions]
    assert evaluated["onnx"]["mAP50-95"] == pytest.approx(evaluated["pytorch"]["mAP50-95"], abs=1e-3)
    enforce(decisions)


def test_gate_fails_broken_exports(evaluated):
    results = {"onnx": evaluated["corrupted"], "onnx-int8": evaluated["garbage-int8"]}
    decisions = evaluate_gate(
        evaluated["pytorch"], results, GateConfig(max_drop=parse_gate("fp32=0.5,int8=2.0"))
    )
    assert not any(d.passed for d in decisions)
    assert all(d.drop_points > 5 for d in decisions), [d.reason() for d in decisions]
    with pytest.raises(GateFailed, match=r"onnx: mAP50-95 dropped .*onnx-int8: mAP50-95 dropped"):
        enforce(decisions)
