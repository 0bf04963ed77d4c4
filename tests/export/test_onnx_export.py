"""ONNX export: numerics against PyTorch on real images, batch modes, opset, simplification, metadata."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from detpipe.errors import InvalidInput
from detpipe.export.model import load_detection_model
from detpipe.export.onnx_export import OnnxExportConfig, compare_with_torch, export_onnx
from detpipe.runtime.image import preprocess
from detpipe.runtime.predictors import OnnxPredictor, TorchPredictor, read_onnx_metadata

# FP32 onnxruntime vs PyTorch on CPU: differences are float rounding only. Boxes are in input
# pixels (0..64 here), scores in [0, 1].
MAX_BOX_DIFF_PX = 1e-2
MAX_SCORE_DIFF = 1e-4


@pytest.fixture(scope="module")
def loaded(trained_pico):
    return load_detection_model(trained_pico)


@pytest.fixture(scope="module")
def static_onnx(loaded, tmp_path_factory):
    return export_onnx(
        loaded, tmp_path_factory.mktemp("onnx") / "model.onnx", OnnxExportConfig(imgsz=(64, 64))
    )


def test_static_export_matches_pytorch_on_real_images(loaded, static_onnx, val_images_bgr):
    assert static_onnx.input_shape == (1, 3, 64, 64)
    assert static_onnx.output_shape == (1, 4 + 2, 84)  # 8x8 + 4x4 + 2x2 anchors at 64 px
    check = compare_with_torch(loaded, static_onnx.path, val_images_bgr)
    assert check.images == len(val_images_bgr)
    assert check.max_abs_diff_boxes < MAX_BOX_DIFF_PX
    assert check.max_abs_diff_scores < MAX_SCORE_DIFF
    assert check.max_abs_diff == max(check.max_abs_diff_boxes, check.max_abs_diff_scores)


def test_numeric_check_detects_a_different_model(static_onnx, val_images_bgr):
    """The check is not vacuous: another network's outputs differ far beyond the bounds."""
    other = load_detection_model("yolov8n.yaml")  # random weights, 80 classes -> different scores
    x, _ = preprocess(val_images_bgr[:1], 64, 1)
    theirs = TorchPredictor(other, 64).infer(x)[:, :4]
    ours = OnnxPredictor(static_onnx.path).infer(x)[:, :4]
    assert np.abs(theirs - ours).max() > MAX_BOX_DIFF_PX


def test_dynamic_batch_export_runs_any_batch(loaded, tmp_path, val_images_bgr):
    info = export_onnx(loaded, tmp_path / "dyn.onnx", OnnxExportConfig(imgsz=(64, 64), dynamic_batch=True))
    assert info.input_shape == ("batch", 3, 64, 64)
    predictor = OnnxPredictor(info.path)
    assert predictor.batch is None
    x, _ = preprocess(val_images_bgr[:3], 64)
    batched = predictor.infer(x)
    single = np.concatenate([predictor.infer(x[i : i + 1]) for i in range(3)])
    assert batched.shape == (3, 6, 84)
    np.testing.assert_allclose(batched, single, atol=1e-4)
    check = compare_with_torch(loaded, info.path, val_images_bgr)
    assert check.max_abs_diff_boxes < MAX_BOX_DIFF_PX and check.max_abs_diff_scores < MAX_SCORE_DIFF


def test_opset_and_simplification(loaded, tmp_path, static_onnx):
    info = export_onnx(
        loaded, tmp_path / "raw.onnx", OnnxExportConfig(imgsz=(64, 64), opset=13, simplify=False)
    )
    proto = onnx.load(str(info.path))
    assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {13}
    assert not info.simplified and static_onnx.simplified
    assert static_onnx.num_nodes < info.num_nodes  # onnxslim folded shape arithmetic away


def test_metadata_round_trip(static_onnx, loaded):
    meta = read_onnx_metadata(static_onnx.path)
    assert meta["names"] == {str(k): v for k, v in loaded.names.items()}
    assert meta["imgsz"] == [64, 64] and meta["stride"] == 32 and meta["batch"] == 1
    assert OnnxPredictor(static_onnx.path).names == loaded.names


def test_bad_inputs_are_refused(loaded, tmp_path):
    with pytest.raises(InvalidInput, match="multiple of the model stride 32"):
        export_onnx(loaded, tmp_path / "x.onnx", OnnxExportConfig(imgsz=(70, 64)))
    with pytest.raises(InvalidInput, match="opset"):
        export_onnx(loaded, tmp_path / "x.onnx", OnnxExportConfig(imgsz=(64, 64), opset=9))
    with pytest.raises(InvalidInput, match="no such file"):
        load_detection_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidInput, match="not an ultralytics checkpoint"):
        load_detection_model(tmp_path / "junk.pt")
    assert not (tmp_path / "x.onnx").exists()


def test_export_dfl_decode_equals_ultralytics():
    import torch
    from ultralytics.nn.modules import DFL

    from detpipe.export.model import _dfl_forward

    dfl = DFL(16)
    x = torch.randn(2, 64, 300) * 4
    expected = dfl(x)
    got = _dfl_forward(dfl, x)
    assert got.shape == expected.shape == (2, 4, 300)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_export_graph_takes_the_dfl_softmax_over_the_last_axis(static_onnx):
    graph = onnx.load(str(static_onnx.path)).graph
    softmax = [n for n in graph.node if n.op_type == "Softmax"]
    assert len(softmax) == 1
    axis = next((a.i for a in softmax[0].attribute if a.name == "axis"), -1)
    assert axis in (-1, 3)  # (B, 4, anchors, bins): onnxruntime's fast path
