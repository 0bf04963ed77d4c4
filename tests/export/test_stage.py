"""``detpipe export`` end to end, as a process: artifacts, report, gate pass/fail, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _detpipe(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def exported(trained_pico, small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage") / "export"
    res = _detpipe(
        "export",
        "--weights", str(trained_pico),
        "--formats", "onnx,onnx-int8,engine-fp16",
        "--imgsz", "64",
        "--calib", str(small_data.train_list),
        "--calib-images", "48",
        "--val-annotations", str(small_data.val_annotations),
        "--val-images", str(small_data.val_images),
        "--gate", "fp32=0.5,int8=2.0",
        "--device", "cpu",  # a CPU-only run: the only kind that may skip an engine format
        "--allow-missing",
        "--out", str(out),
    )  # fmt: skip
    return res, out


def test_export_succeeds_and_writes_every_artifact(exported):
    res, out = exported
    assert res.returncode == 0, res.stderr[-3000:]
    names = {p.name for p in out.iterdir()}
    assert {
        "model.onnx",
        "model.int8.onnx",
        "export_report.json",
        "export_report.md",
        "accuracy.png",
    } <= names
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| onnx-int8 | ok |" in res.stdout  # the markdown table


def test_report_lists_accuracy_deltas_and_gate(exported):
    _, out = exported
    report = json.loads((out / "export_report.json").read_text())
    formats = report["formats"]
    assert formats["onnx"]["status"] == formats["onnx-int8"]["status"] == "ok"
    assert formats["onnx"]["numeric_check"]["max_abs_diff"] < 1e-2
    assert formats["onnx-int8"]["calibration"] == {
        "source": formats["onnx-int8"]["calibration"]["source"],
        "images": 48,
        "requested": 48,
        "method": "minmax",
    }
    acc = report["accuracy"]
    assert acc["evaluated"] and acc["val_images"] == 32
    base = acc["pytorch"]["mAP50-95"]
    assert base > 0.15
    for fmt in ("onnx", "onnx-int8"):
        m = acc["formats"][fmt]
        assert m["delta_mAP50-95_points"] == pytest.approx(100 * (m["mAP50-95"] - base), abs=1e-3)
    assert abs(acc["formats"]["onnx"]["delta_mAP50-95_points"]) < 0.1  # FP32 ONNX = PyTorch
    gate = report["gate"]
    assert gate["enabled"] and gate["passed"] is True
    assert [d["format"] for d in gate["decisions"]] == ["onnx", "onnx-int8", "engine-fp16"]
    assert gate["decisions"][2]["passed"] and gate["decisions"][2]["value"] is None  # --allow-missing
    assert gate["decisions"][2]["missing"].startswith("skipped: CPU-only run (device cpu)")
    assert gate["limits_points"]["onnx-int8"] == 2.0 and gate["min_map"] == 0.01
    assert report["device"] == {"requested": "cpu", "resolved": "cpu"}


def test_engine_formats_are_skipped_loudly_on_a_cpu_only_run(exported):
    res, out = exported
    entry = json.loads((out / "export_report.json").read_text())["formats"]["engine-fp16"]
    assert entry["status"] == "skipped"
    assert entry["reason"] == "CPU-only run (device cpu): engines need a CUDA GPU"
    assert any("engine-fp16 SKIPPED (CPU-only run)" in line for line in res.stderr.splitlines())
    assert not list(out.glob("*.engine"))
    assert "| engine-fp16 | skipped: CPU-only run" in res.stdout and "pass (no result" in res.stdout


def test_gate_fails_the_stage_on_an_int8_model_calibrated_on_garbage(trained_pico, small_data, tmp_path):
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    for i in range(8):
        cv2.imwrite(str(garbage / f"{i}.png"), np.zeros((64, 64, 3), np.uint8))
    out = tmp_path / "export"
    res = _detpipe(
        "export",
        "--weights", str(trained_pico),
        "--formats", "onnx-int8",
        "--calib", str(garbage),
        "--val-annotations", str(small_data.val_annotations),
        "--val-images", str(small_data.val_images),
        "--max-drop", "2.0",
        "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 4, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("detpipe export: error: accuracy gate failed: onnx-int8: mAP50-95 dropped ")
    assert "limit 2.00" in last and "Traceback" not in res.stderr
    report = json.loads((out / "export_report.json").read_text())  # written before failing
    assert report["gate"]["passed"] is False
    assert [d["format"] for d in report["gate"]["decisions"] if not d["passed"]] == ["onnx-int8"]


def test_without_a_val_set_the_export_succeeds_unevaluated(trained_pico, tmp_path):
    out = tmp_path / "export"
    res = _detpipe("export", "--weights", str(trained_pico), "--formats", "onnx", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "export_report.json").read_text())
    assert report["imgsz"] == [64, 64]  # the checkpoint's training size
    assert report["accuracy"] == {"evaluated": False, "reason": "no val set given"}
    assert report["gate"]["passed"] is None and not report["gate"]["enabled"]
    assert report["formats"]["onnx"]["numeric_check"] is None  # no real images to compare on


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--formats", "onnx,tflite"], "--formats: unknown tflite"),
        (["--formats", "onnx-int8"], "onnx-int8 need calibration images: pass --calib"),
        (["--gate", "fp8=1"], "--gate 'fp8=1': expected KEY=POINTS"),
        (["--device", "gpu0"], "--device gpu0: expected auto, cpu, cuda"),
        (
            ["--calib", "/nonexistent/list.txt", "--formats", "onnx-int8"],
            "/nonexistent/list.txt: no such file",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(trained_pico, tmp_path, args, message):
    out = tmp_path / "export"
    res = _detpipe("export", "--weights", str(trained_pico), "--out", str(out), *args)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"detpipe export: error: {message}"), lines
    assert not out.exists()
