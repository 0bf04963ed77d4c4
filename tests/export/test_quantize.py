"""ONNX INT8 (onnxruntime static QDQ): structure, FP32 head, calibration sources and methods."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from detpipe.errors import InvalidInput
from detpipe.export.calib import calibration_images
from detpipe.export.model import load_detection_model
from detpipe.export.onnx_export import OnnxExportConfig, export_onnx
from detpipe.export.quantize import QuantizeConfig, head_nodes_to_exclude, quantize_onnx
from detpipe.runtime.image import preprocess
from detpipe.runtime.predictors import OnnxPredictor, read_onnx_metadata


@pytest.fixture(scope="module")
def fp32_onnx(trained_pico, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "model.onnx"
    return export_onnx(load_detection_model(trained_pico), out, OnnxExportConfig(imgsz=(64, 64))).path


@pytest.fixture(scope="module")
def int8_onnx(fp32_onnx, small_data):
    paths = calibration_images(small_data.train_list, limit=32)
    return quantize_onnx(fp32_onnx, fp32_onnx.with_name("model.int8.onnx"), paths, QuantizeConfig())


def test_head_decode_is_excluded_and_branches_are_not(fp32_onnx):
    graph = onnx.load(str(fp32_onnx))
    names = set(head_nodes_to_exclude(graph))
    dfl = {n.name for n in graph.graph.node if n.name.startswith("/model.22/dfl/")}
    assert {"/model.22/dfl/Softmax", "/model.22/dfl/MatMul"} <= dfl <= names  # DFL decode
    assert "/model.22/Sigmoid" in names  # class scores
    assert {"/model.22/cv2.0/cv2.0.2/Conv", "/model.22/cv3.2/cv3.2.2/Conv"} <= names  # branch outputs
    assert not any(n.startswith(("/model.22/cv2.0/cv2.0.0", "/model.21/")) for n in names)


def test_int8_model_is_qdq_with_fp32_head(int8_onnx, fp32_onnx):
    graph = onnx.load(str(int8_onnx.path)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") > 50 and ops.count("DequantizeLinear") > 50
    weights = {i.name: i for i in graph.initializer}
    int8_weights = [w for w in weights.values() if w.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) > 50  # conv weights stored as int8
    per_channel = [
        w for w in weights.values() if w.name.endswith("_scale") and len(w.dims) == 1 and w.dims[0] > 1
    ]
    assert per_channel, "expected per-channel weight scales"
    by_name = {n.name: n for n in graph.node}
    excluded = head_nodes_to_exclude(onnx.load(str(fp32_onnx)))
    assert int8_onnx.excluded_nodes == len(excluded)
    for name in excluded:  # kept as the original float op, not folded into a quantized one
        assert name in by_name, name
    producer = {o: n.op_type for n in graph.node for o in n.output}
    assert producer[graph.output[0].name] == "Concat"  # final output is not dequantized INT8
    assert read_onnx_metadata(int8_onnx.path)["names"] == read_onnx_metadata(fp32_onnx)["names"]


def test_int8_outputs_stay_close_to_fp32(int8_onnx, fp32_onnx, val_images_bgr):
    x, _ = preprocess(val_images_bgr, 64)
    fp32, int8 = OnnxPredictor(fp32_onnx), OnnxPredictor(int8_onnx.path)
    a = np.concatenate([fp32.infer(x[i : i + 1]) for i in range(len(x))])
    b = np.concatenate([int8.infer(x[i : i + 1]) for i in range(len(x))])
    top = a[:, 4:].max(1) > 0.25  # anchors with a confident detection
    assert top.sum() > 0
    assert np.abs(a[:, 4:] - b[:, 4:]).max() < 0.25  # scores
    box_err = np.abs(a[:, :4] - b[:, :4]).transpose(0, 2, 1)[top]
    assert np.median(box_err) < 1.0  # pixels, for confident anchors


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_other_calibration_methods(method, fp32_onnx, small_data, tmp_path, val_images_bgr):
    paths = calibration_images(small_data.train_list, limit=8)
    info = quantize_onnx(fp32_onnx, tmp_path / "m.onnx", paths, QuantizeConfig(method=method))
    assert info.method == method and info.calibration_images == 8
    x, _ = preprocess(val_images_bgr[:1], 64)
    diff = np.abs(OnnxPredictor(info.path).infer(x) - OnnxPredictor(fp32_onnx).infer(x))
    assert diff[:, 4:].max() < 0.3


def test_calibration_sources(small_data, tmp_path):
    from_list = calibration_images(small_data.train_list, limit=1000)
    assert len(from_list) == 128 and all(p.is_file() for p in from_list)
    from_yaml = calibration_images(small_data.yolo / "dataset.yaml", limit=1000)
    assert sorted(p.resolve() for p in from_yaml) == sorted(p.resolve() for p in from_list)
    from_dir = calibration_images(small_data.root / "images" / "train2017", limit=20, seed=1)
    assert len(from_dir) == 20
    assert from_dir == calibration_images(small_data.root / "images" / "train2017", limit=20, seed=1)
    assert from_dir != calibration_images(small_data.root / "images" / "train2017", limit=20, seed=2)
    with pytest.raises(InvalidInput, match="no such file"):
        calibration_images(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("./images/nope.jpg\n")
    with pytest.raises(InvalidInput, match="no calibration images"):
        calibration_images(tmp_path / "empty.txt")
    with pytest.raises(InvalidInput, match="calibration method"):
        QuantizeConfig(method="kl")


def test_a_dynamic_batch_model_quantizes_and_runs_any_batch(
    trained_pico, small_data, tmp_path, val_images_bgr
):
    """onnxruntime's symbolic shape inference gives up on a dynamic batch axis; quantization must not."""
    cfg = OnnxExportConfig(imgsz=(64, 64), batch=8, dynamic_batch=True)
    fp32 = export_onnx(load_detection_model(trained_pico), tmp_path / "model.onnx", cfg).path
    paths = calibration_images(small_data.train_list, limit=16)
    int8 = quantize_onnx(fp32, tmp_path / "model.int8.onnx", paths, QuantizeConfig()).path
    predictor = OnnxPredictor(int8)
    assert predictor.batch is None
    x, _ = preprocess(val_images_bgr[:3], 64)
    together = predictor.infer(x)
    alone = np.concatenate([predictor.infer(x[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(together, alone, atol=1e-4)
