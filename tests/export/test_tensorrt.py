"""TensorRT engines: build (FP16, INT8 with calibration, dynamic batch), sidecar, refusal, accuracy.

These run where the tensorrt package and a CUDA GPU are present and are reported as skipped
elsewhere (``pytest -m gpu`` selects them).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from detpipe.errors import InvalidInput
from detpipe.export.calib import calibration_images
from detpipe.export.model import load_detection_model
from detpipe.export.onnx_export import OnnxExportConfig, export_onnx
from detpipe.export.sidecar import EngineIncompatible, read_sidecar, sidecar_path
from detpipe.export.tensorrt_build import EngineBuildConfig, build_engine, engine_unavailable_reason
from detpipe.runtime.image import preprocess
from detpipe.runtime.predictors import OnnxPredictor

REASON = engine_unavailable_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=f"no TensorRT/GPU: {REASON}")]


@pytest.fixture(scope="module")
def onnx_models(trained_pico, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trt")
    loaded = load_detection_model(trained_pico)
    static = export_onnx(loaded, tmp / "model.onnx", OnnxExportConfig(imgsz=(64, 64))).path
    dynamic = export_onnx(
        loaded, tmp / "dynamic.onnx", OnnxExportConfig(imgsz=(64, 64), batch=4, dynamic_batch=True)
    ).path
    return tmp, static, dynamic


@pytest.fixture(scope="module")
def fp16_engine(onnx_models):
    tmp, static, _ = onnx_models
    engine = tmp / "model.fp16.engine"
    cfg = EngineBuildConfig(precision="fp16", workspace_gib=1, timing_cache=tmp / "timing.cache")
    sidecar = build_engine(static, engine, cfg, extra_sidecar={"names": {"0": "disc", "1": "square"}})
    return engine, sidecar


def _close_to_onnx(predictor, onnx_path, images, box_px, score):
    x, _ = preprocess(images, 64, 1)
    ref = OnnxPredictor(onnx_path)
    for i in range(len(images)):
        a, b = ref.infer(x[i : i + 1]), predictor.infer(x[i : i + 1])
        assert a.shape == b.shape
        confident = a[0, 4:].max(0) > 0.25
        assert np.abs(a[0, 4:] - b[0, 4:]).max() < score
        if confident.any():
            assert np.median(np.abs(a[0, :4, confident] - b[0, :4, confident])) < box_px


def test_fp16_engine_sidecar(fp16_engine, onnx_models):
    from detpipe.export.sidecar import current_device_info
    from detpipe.io import sha256_file

    engine, sidecar = fp16_engine
    device = current_device_info()
    assert sidecar == read_sidecar(engine)
    assert sidecar["precision"] == "fp16" and sidecar["input_shape"] == [1, 3, 64, 64]
    assert sidecar["tensorrt_version"] == device.tensorrt_version
    assert sidecar["gpu"]["name"] == device.gpu_name
    assert sidecar["gpu"]["compute_capability"] == device.compute_capability
    assert sidecar["sha256"] == sha256_file(engine)
    assert sidecar["build_flags"]["fp16"] and sidecar["build_flags"]["workspace_bytes"] == 1 << 30
    assert (onnx_models[0] / "timing.cache").stat().st_size > 0


def test_fp16_engine_matches_onnx(fp16_engine, onnx_models, val_images_bgr):
    from detpipe.runtime.tensorrt import TensorRTPredictor

    predictor = TensorRTPredictor(fp16_engine[0])
    assert predictor.imgsz == (64, 64) and predictor.batch == 1
    _close_to_onnx(predictor, onnx_models[1], val_images_bgr, box_px=0.5, score=0.02)
    assert len(predictor(val_images_bgr[:2])) == 2


def test_int8_engine_with_calibration_cache(onnx_models, small_data, val_images_bgr):
    from detpipe.runtime.tensorrt import TensorRTPredictor

    tmp, static, _ = onnx_models
    cache = tmp / "calib.cache"
    paths = calibration_images(small_data.train_list, 32)
    cfg = EngineBuildConfig(precision="int8", workspace_gib=1, calib_cache=cache, calib_batch=8)
    sidecar = build_engine(static, tmp / "model.int8.engine", cfg, calib_paths=paths)
    assert sidecar["build_flags"]["int8"] and sidecar["build_flags"]["calibration"]["images"] == 32
    assert cache.stat().st_size > 0
    # A rebuild without images reuses the cache.
    again = build_engine(static, tmp / "again.int8.engine", cfg, calib_paths=[])
    assert again["precision"] == "int8"
    _close_to_onnx(
        TensorRTPredictor(tmp / "model.int8.engine"), static, val_images_bgr, box_px=2.0, score=0.25
    )


def test_dynamic_batch_engine(onnx_models, val_images_bgr):
    from detpipe.runtime.tensorrt import TensorRTPredictor

    tmp, _, dynamic = onnx_models
    engine = tmp / "dynamic.fp16.engine"
    sidecar = build_engine(dynamic, engine, EngineBuildConfig(precision="fp16", workspace_gib=1, max_batch=4))
    assert sidecar["build_flags"]["dynamic_batch"] == {"min": 1, "opt": 4, "max": 4}
    predictor = TensorRTPredictor(engine)
    assert predictor.batch is None and predictor.max_batch == 4
    x, _ = preprocess(val_images_bgr[:3], 64)
    batched = predictor.infer(x)
    single = np.concatenate([predictor.infer(x[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(batched, single, atol=0.05)


def test_mismatched_or_tampered_engines_are_refused(fp16_engine, tmp_path):
    from detpipe.runtime.tensorrt import TensorRTPredictor

    engine, sidecar = fp16_engine
    copy = tmp_path / engine.name
    copy.write_bytes(engine.read_bytes())
    other = {**sidecar, "tensorrt_version": "8.5.2", "gpu": {**sidecar["gpu"], "compute_capability": "7.2"}}
    sidecar_path(copy).write_text(json.dumps(other))
    with pytest.raises(EngineIncompatible, match="refusing to load, built for another device"):
        TensorRTPredictor(copy)
    sidecar_path(copy).write_text(json.dumps(sidecar))
    copy.write_bytes(engine.read_bytes()[:-16] + b"\x00" * 16)
    with pytest.raises(InvalidInput, match="does not match its sidecar"):
        TensorRTPredictor(copy)


def test_export_and_bench_cli_with_engines(trained_pico, small_data, tmp_path):
    out = tmp_path / "export"
    res = subprocess.run(
        [
            sys.executable, "-m", "detpipe.cli.main", "export", "--weights", str(trained_pico),
            "--formats", "onnx,engine-fp16,engine-int8", "--calib", str(small_data.train_list),
            "--calib-images", "32", "--val-annotations", str(small_data.val_annotations),
            "--val-images", str(small_data.val_images), "--gate", "fp16=1.0,int8=3.0", "--out", str(out),
        ],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "export_report.json").read_text())
    for fmt in ("engine-fp16", "engine-int8"):
        assert report["formats"][fmt]["status"] == "ok"
        assert fmt in report["accuracy"]["formats"]
        assert (out / f"{report['formats'][fmt]['file']}.json").is_file()
    assert report["gate"]["passed"] is True
    res = subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "bench", "--model", str(out), "--iters", "20",
         "--out", str(tmp_path / "bench.json")],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    rows = {
        (r["format"], r["backend"]): r for r in json.loads((tmp_path / "bench.json").read_text())["results"]
    }
    assert rows[("engine-fp16", "tensorrt")]["status"] == "ok"
    assert rows[("engine-int8", "tensorrt")]["status"] == "ok"
