"""``detpipe bench`` end to end, as a process, on a small exported model (random weights: latency only)."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from detpipe.bench.core import latency_stats
from detpipe.bench.device import device_class, split_by_device_class
from detpipe.bench.render import markdown_table
from detpipe.bench.run import SPEEDUP_STAT, add_ratios, discover_models
from detpipe.device import resolve_device
from detpipe.errors import InvalidInput
from detpipe.export.sidecar import DeviceInfo, make_sidecar, write_sidecar
from detpipe.publish import PublishConfig, release_files
from detpipe.runtime.backends import backends_for, model_file
from detpipe.train.models import CONFIGS_DIR

PICO = CONFIGS_DIR / "yolov8-pico.yaml"
STATS = (
    "min_ms",
    "mean_ms",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "std_ms",
    "cv",
    "throughput_ips",
)


def _detpipe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    calib = tmp / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(calib / f"{i}.jpg"), rng.integers(0, 255, (64, 80, 3), dtype=np.uint8))
    out = tmp / "export"
    res = _detpipe(
        "export", "--weights", str(PICO), "--imgsz", "64", "--formats", "onnx,onnx-int8",
        "--calib", str(calib), "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def bench_report(export_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-out") / "bench.json"
    res = _detpipe(
        "bench", "--model", str(export_dir), "--model", str(PICO), "--imgsz", "64",
        "--warmup", "2", "--iters", "8", "--threads", "1", "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return res, out


def test_bench_writes_json_table_and_plot(bench_report):
    res, out = bench_report
    report = json.loads(out.read_text())
    rows = {(r["format"], r["backend"]): r for r in report["results"]}
    assert set(rows) == {("onnx", "onnxruntime"), ("onnx-int8", "onnxruntime"), ("pytorch", "pytorch")}
    for row in rows.values():
        assert (
            row["status"] == "ok" and row["batch"] == 1 and row["threads"] == 1 and row["imgsz"] == [64, 64]
        )
        for mode in ("infer", "e2e"):
            s = row[mode]
            assert set(STATS) <= set(s) and s["n"] == 8
            assert s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p95_ms"] <= s["p99_ms"] <= s["max_ms"]
            assert s["throughput_ips"] == pytest.approx(1000 * 8 / sum(row["samples_ms"][mode]), rel=1e-3)
        # (no wall-clock comparison of e2e and infer here: separate runs, flaky on a loaded machine)
    # labelled with what really ran: the providers onnxruntime's session uses, torch's device
    ort_cpu = {"runtime": "onnxruntime", "device": "cpu", "providers": ["CPUExecutionProvider"]}
    assert {k: r["ran_on"] for k, r in rows.items()} == {
        ("onnx", "onnxruntime"): ort_cpu,
        ("onnx-int8", "onnxruntime"): ort_cpu,
        ("pytorch", "pytorch"): {"runtime": "torch", "device": "cpu"},
    }
    assert report["settings"]["device"] == {"requested": "auto", "resolved": resolve_device("auto")}
    assert report["reference"] == "pytorch/pytorch" and report["speedup_statistic"] == "p50"
    assert rows[("pytorch", "pytorch")]["speedup_vs_reference"] == {"infer": 1.0, "e2e": 1.0}
    assert report["settings"]["percentiles"] == "numpy.percentile method='linear'"
    device = report["device"]
    assert device["cpu"]["model"] and device["cpu"]["cores_available"] >= 1
    assert device["versions"]["onnxruntime"] and device["jetson"] is None
    table = out.with_suffix(".md").read_text()
    assert "| onnx-int8 | onnxruntime |" in table and "| pytorch | pytorch |" in table
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| onnx | onnxruntime |" in res.stdout


def test_static_batch_models_are_skipped_for_other_batches(export_dir, tmp_path):
    out = tmp_path / "bench.json"
    res = _detpipe(
        "bench", "--model", str(export_dir / "model.onnx"), "--model", str(PICO), "--imgsz", "64",
        "--batch", "2", "--iters", "3", "--warmup", "1", "--modes", "infer", "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    rows = {r["format"]: r for r in json.loads(out.read_text())["results"]}
    assert rows["onnx"]["status"] == "skipped" and "static batch 1" in rows["onnx"]["reason"]
    assert rows["pytorch"]["status"] == "ok" and "e2e" not in rows["pytorch"]
    assert rows["pytorch"]["infer"]["throughput_ips"] == pytest.approx(
        2 * 3000 / sum(rows["pytorch"]["samples_ms"]["infer"]), rel=1e-3
    )


def test_engines_without_tensorrt_are_skipped_and_without_sidecar_refused(tmp_path):
    engine = tmp_path / "model.fp16.engine"
    engine.write_bytes(b"serialized")
    out = tmp_path / "bench.json"
    res = _detpipe("bench", "--model", str(engine), "--out", str(out))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("detpipe bench: error: ")
    assert "no sidecar" in res.stderr
    device = DeviceInfo("Orin", "8.7", "10.3.0", dla_cores=2)
    write_sidecar(engine, make_sidecar(engine, device, "fp16", [1, 3, 64, 64], {"dla_core": None}))
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    res = _detpipe("bench", "--model", str(engine), "--out", str(out))
    assert res.returncode == 0, res.stderr
    (row,) = json.loads(out.read_text())["results"]
    assert (row["format"], row["backend"], row["status"]) == ("engine-fp16", "tensorrt", "skipped")
    assert "TensorRT is not installed" in row["reason"]


def test_bad_input_exits_2(tmp_path):
    res = _detpipe("bench", "--model", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "b.json"))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"detpipe bench: error: {tmp_path / 'missing.onnx'}: no such file"
    ]
    res = _detpipe("bench", "--model", str(PICO), "--backend", "tensorrt", "--out", str(tmp_path / "b.json"))
    assert res.returncode == 2 and "no model can run on --backend tensorrt" in res.stderr


def test_model_discovery_and_backends(export_dir):
    models = discover_models([export_dir])
    assert [(m.path.name, m.kind, m.label) for m in models] == [
        ("model.int8.onnx", "onnx", "onnx-int8"),
        ("model.onnx", "onnx", "onnx"),
    ]
    onnx = model_file(export_dir / "model.onnx")
    assert backends_for(onnx, ["onnxruntime", "tensorrt", "onnxruntime-cuda"]) == [
        "onnxruntime",
        "onnxruntime-cuda",
    ]
    with pytest.raises(InvalidInput, match="--backend 'tflite'"):
        backends_for(onnx, ["tflite"])
    pt = model_file(PICO)
    assert backends_for(pt, ["auto"], "cpu") == ["pytorch"] and backends_for(pt, ["auto"], "0") == [
        "pytorch-cuda"
    ]
    assert backends_for(onnx, ["auto"], "cpu") == ["onnxruntime"]
    cuda_ep = "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers()
    assert backends_for(onnx, ["auto"], "0") == ["onnxruntime-cuda" if cuda_ep else "onnxruntime"]


GPU_META = {
    "cpu": {"machine": "x86_64"},
    "gpu": [{"index": 0, "name": "NVIDIA H100 80GB HBM3"}],
    "jetson": None,
}


def test_results_are_filed_under_the_device_they_ran_on():
    """A GPU machine whose onnxruntime ran on CPU: those figures never go under the GPU's class."""
    report = {
        "device": GPU_META,
        "results": [
            {"format": "onnx", "backend": "onnxruntime-cuda", "status": "ok", "ran_on": {"device": "cpu"}},
            {"format": "engine-fp16", "backend": "tensorrt", "status": "ok", "ran_on": {"device": "cuda:0"}},
            {"format": "pytorch", "backend": "pytorch", "status": "ok", "ran_on": {"device": "cpu"}},
        ],
    }
    split = split_by_device_class(report)
    assert {cls: [r["format"] for r in part["results"]] for cls, part in split.items()} == {
        "x86_64-cpu": ["onnx", "pytorch"],
        "h100-80gb-hbm3": ["engine-fp16"],
    }
    assert split["x86_64-cpu"]["device_class"] == "x86_64-cpu" and split["x86_64-cpu"]["device"] == GPU_META
    assert device_class({"cpu": {"machine": "aarch64"}, "jetson": {"model": "Orin"}}, "cuda:0") == "orin"
    assert device_class({"cpu": {"machine": "aarch64"}, "jetson": {"model": "Orin"}}, "cpu") == "aarch64-cpu"


def test_a_release_files_cpu_figures_under_the_cpu_class(tmp_path):
    (tmp_path / "train" / "weights").mkdir(parents=True)
    (tmp_path / "train" / "weights" / "best.pt").write_bytes(b"w")
    bench = {"device": GPU_META, "results": [{"format": "onnx", "backend": "onnxruntime", "status": "ok",
                                              "ran_on": {"device": "cpu"}}]}  # fmt: skip
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    cfg = PublishConfig(store=str(tmp_path / "store"), name="m", version="1", train_dir=tmp_path / "train",
                        bench_json=tmp_path / "bench.json")  # fmt: skip
    files = release_files(cfg, tmp_path / "scratch")
    assert sorted(files) == ["bench/x86_64-cpu.json", "weights.pt"]
    assert json.loads(files["bench/x86_64-cpu.json"].read_text())["results"] == bench["results"]


def test_ratios_are_against_pytorch():
    rows = [
        {"status": "ok", "format": "onnx", "backend": "onnxruntime", "infer": {"p50_ms": 10.0}},
        {"status": "ok", "format": "pytorch", "backend": "pytorch", "infer": {"p50_ms": 15.0}},
        {"status": "skipped", "format": "engine-fp16", "backend": "tensorrt"},
    ]
    assert add_ratios(rows) == "pytorch/pytorch"
    assert rows[0]["speedup_vs_reference"] == {"infer": 1.5}
    assert "speedup_vs_reference" not in rows[2]


def test_speedup_is_a_ratio_of_medians_named_in_the_table():
    """Issue 21: one 2.1 s PyTorch stall made onnx-int8 read 1.71x faster although its p50 was slower."""
    pytorch = np.array([97.0] * 9 + [2100.0])  # mean 297 ms, p50 97 ms
    int8 = np.array([119.0] * 10)  # mean = p50 = 119 ms
    rows = [
        {"status": "ok", "format": fmt, "backend": backend, "reason": None,
         **{mode: latency_stats(samples).as_dict() for mode in ("infer", "e2e")}}
        for fmt, backend, samples in [("pytorch", "pytorch", pytorch), ("onnx-int8", "onnxruntime", int8)]
    ]  # fmt: skip
    assert rows[1]["infer"]["mean_ms"] < rows[0]["infer"]["mean_ms"]  # means would say int8 is faster
    reference = add_ratios(rows)
    assert rows[1]["speedup_vs_reference"] == pytest.approx({"infer": 97 / 119, "e2e": 97 / 119})
    report = {
        "device": {"cpu": {"model": "x", "cores_available": 2}, "jetson": None, "gpu": [],
                   "versions": {"onnxruntime": "1", "torch": "2", "tensorrt": None}},
        "settings": {"batch": 1, "threads": 1, "schedule": {"iters": 10, "warmup_iters": 0},
                     "percentiles": "linear"},
        "reference": reference,
        "speedup_statistic": SPEEDUP_STAT,
        "results": rows,
    }  # fmt: skip
    table = markdown_table(report)
    assert "| speedup (p50, infer / e2e) |" in table
    assert "| onnx-int8 | onnxruntime |" in table and "| 0.82x / 0.82x |" in table
