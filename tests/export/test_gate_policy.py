"""What may reach a release: an absolute mAP floor, no silently missing formats, and engine
formats that fail (not skip) on a GPU step. The "learned nothing" model is the pico YOLOv8
straight from its YAML (random weights); the GPU step without TensorRT is this machine's real
TensorRT absence behind a GPU count of one."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from detpipe.errors import GateFailed, Unavailable
from detpipe.export.gate import FLOOR_HINT, GateConfig, enforce, evaluate_gate, gate_from_report
from detpipe.export.stage import ExportConfig, run_export
from detpipe.export.tensorrt_build import engine_unavailable_reason
from detpipe.train.models import CONFIGS_DIR

PICO_YAML = CONFIGS_DIR / "yolov8-pico.yaml"


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_floor_and_missing_formats_in_the_gate():
    base = {"mAP50-95": 0.004}
    results = {"onnx": {"mAP50-95": 0.004}}
    floor = evaluate_gate(base, results, GateConfig())
    assert [(d.format, d.passed, d.below_floor) for d in floor] == [
        ("onnx", False, True)
    ]  # drop 0, below 0.01
    with pytest.raises(GateFailed) as e:
        enforce(floor)
    assert str(e.value) == (
        "accuracy gate failed: onnx: mAP50-95 0.40 points is below the floor of 1.00 points -- " + FLOOR_HINT
    )
    both = evaluate_gate({"mAP50-95": 0.02}, {"onnx": {"mAP50-95": 0.004}}, GateConfig())
    assert both[0].reason() == (
        "onnx: mAP50-95 dropped 1.60 points (2.00 -> 0.40), limit 0.50, and is below the floor of 1.00 points"
    )  # one unit, points, for every figure
    enforce(evaluate_gate(base, results, GateConfig(min_map=0.0)))  # floor off: passes

    missing = evaluate_gate(
        {"mAP50-95": 0.5}, {"onnx": {"mAP50-95": 0.5}}, GateConfig(), {"engine-fp16": "skipped: x"}
    )
    assert [(d.format, d.passed) for d in missing] == [("onnx", True), ("engine-fp16", False)]
    with pytest.raises(GateFailed, match=r"engine-fp16: requested but has no accuracy result \(skipped: x\)"):
        enforce(missing)
    allowed = evaluate_gate(
        {"mAP50-95": 0.5}, {}, GateConfig(allow_missing=True), {"engine-fp16": "skipped: x"}
    )
    assert allowed[0].passed and allowed[0].value is None


def test_gate_from_report_sees_requested_formats_without_results():
    report = {
        "formats": {
            "onnx": {"status": "ok", "requested": True},
            "engine-int8": {"status": "skipped", "requested": True, "reason": "CPU-only run (device cpu)"},
        },
        "accuracy": {"evaluated": True, "pytorch": {"mAP50-95": 0.3}, "formats": {"onnx": {"mAP50-95": 0.3}}},
    }
    with pytest.raises(
        GateFailed, match=r"engine-int8: requested but has no accuracy result \(skipped: CPU-only"
    ):
        enforce(gate_from_report(report, GateConfig()))
    enforce(gate_from_report(report, GateConfig(allow_missing=True)))


@pytest.mark.slow
def test_a_model_that_learned_nothing_fails_export_with_what_to_change(small_data, tmp_path):
    out = tmp_path / "export"
    res = subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "export", "--weights", str(PICO_YAML), "--formats", "onnx",
         "--imgsz", "64", "--device", "cpu", "--val-annotations", str(small_data.val_annotations),
         "--val-images", str(small_data.val_images), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 4, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("detpipe export: error: accuracy gate failed: onnx: mAP50-95 ")
    assert (
        "points is below the floor of 1.00 points" in last and "more epochs" in last and "pretrained" in last
    )
    report = json.loads((out / "export_report.json").read_text())  # the report is still written
    assert report["accuracy"]["pytorch"]["mAP50-95"] < 0.01 and report["gate"]["passed"] is False


def test_gpu_step_without_a_gpu_fails_with_exit_3(tmp_path):
    if _cuda():
        pytest.skip("this machine has a GPU")
    with pytest.raises(Unavailable, match="GPU step but there is no CUDA GPU here"):
        run_export(ExportConfig(weights=PICO_YAML, out=tmp_path / "a", formats=("onnx",), require_gpu=True))
    res = subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "export", "--weights", str(PICO_YAML), "--formats", "onnx",
         "--device", "cuda", "--out", str(tmp_path / "b")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 3
    assert res.stderr.splitlines() == [
        "detpipe export: error: --device cuda: CUDA is not available here (use --device cpu or auto)"
    ]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_an_engine_that_cannot_be_built_on_a_gpu_fails_the_export(tmp_path, monkeypatch):
    """On a GPU (count 1), without TensorRT here: the engine format is an error, never a skip."""
    reason = engine_unavailable_reason(0)
    if reason is None or _cuda():
        pytest.skip("TensorRT can build here; the GPU test suite covers real builds")
    monkeypatch.setattr("detpipe.device.cuda_device_count", lambda: 1)
    out = tmp_path / "export"
    cfg = ExportConfig(weights=PICO_YAML, out=out, formats=("onnx", "engine-fp16"), imgsz=(64, 64))
    with pytest.raises(Unavailable) as e:
        run_export(cfg)
    assert str(e.value) == f"engine-fp16: requested on a GPU step but cannot be built: {reason}"
    assert not out.exists()
