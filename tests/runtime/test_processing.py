"""YOLO pre/post-processing: letterbox geometry, NMS semantics, box mapping, ultralytics parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from detpipe.errors import InvalidInput
from detpipe.runtime.image import Letterbox, letterbox, preprocess
from detpipe.runtime.nms import PostprocessConfig, nms, postprocess
from detpipe.runtime.predictors import TorchPredictor


def test_letterbox_keeps_aspect_and_centres():
    image = np.full((50, 100, 3), 7, np.uint8)  # h=50, w=100
    out, lb = letterbox(image, 64)
    assert out.shape == (64, 64, 3)
    assert lb.orig_shape == (50, 100)
    assert lb.gain == (0.64, 32 / 50)  # 100 -> 64 wide, 50 -> 32 high
    assert lb.pad == (0, 16)
    assert (out[:16] == 114).all() and (out[48:] == 114).all()  # grey bands above and below
    assert (out[16:48] == 7).all()


def test_preprocess_is_rgb_nchw_unit_range_and_pads_the_batch():
    image = np.zeros((64, 64, 3), np.uint8)
    image[..., 0] = 255  # blue in BGR
    x, lbs = preprocess([image], 64, batch=3)
    assert x.shape == (3, 3, 64, 64) and x.dtype == np.float32 and x.flags.c_contiguous
    assert x[0, 2].max() == 1.0 and x[0, 0].max() == 0.0  # blue is channel 2 in RGB
    assert np.allclose(x[1:], 114 / 255)  # padding images
    assert len(lbs) == 1


def test_nms_matches_torchvision():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (300, 2)).astype(np.float32)
    wh = rng.uniform(5, 60, (300, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + wh], 1)
    scores = rng.uniform(0, 1, 300).astype(np.float32)
    for iou in (0.3, 0.5, 0.7):
        expected = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou).numpy()
        np.testing.assert_array_equal(nms(boxes, scores, iou), expected)


def test_nms_drops_only_overlaps_above_threshold():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30]], np.float32)  # IoU(0,1) = 0.5
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0, 1, 2]  # 0.5 is not > 0.5
    assert nms(boxes, scores, 0.49).tolist() == [0, 2]


def _raw(boxes_xywh: list, scores: list, anchors: int = 10) -> np.ndarray:
    """A raw (1, 4 + nc, anchors) output with the given candidates first, zeros elsewhere."""
    nc = len(scores[0])
    out = np.zeros((1, 4 + nc, anchors), np.float32)
    for i, (b, s) in enumerate(zip(boxes_xywh, scores, strict=True)):
        out[0, :4, i] = b
        out[0, 4:, i] = s
    return out


def test_postprocess_maps_boxes_back_to_the_original_image():
    # original 100x50 (w x h) letterboxed into 64x64: gain 0.64, pad top 16
    lb = Letterbox(orig_shape=(50, 100), gain=(0.64, 0.64), pad=(0, 16))
    raw = _raw([[32, 32, 16, 16]], [[0.1, 0.9]])
    (det,) = postprocess(raw, [lb], PostprocessConfig(conf=0.25))
    assert det.classes.tolist() == [1]
    np.testing.assert_allclose(det.scores, [0.9])
    # centre (32, 32) -> x 32/0.64 = 50, y (32-16)/0.64 = 25; size 16/0.64 = 25
    np.testing.assert_allclose(det.boxes, [[37.5, 12.5, 62.5, 37.5]], atol=1e-5)


def test_postprocess_filters_by_confidence_is_class_aware_and_clips():
    lb = Letterbox(orig_shape=(64, 64), gain=(1.0, 1.0), pad=(0, 0))
    raw = _raw(
        [[10, 10, 10, 10], [10, 10, 10, 10], [10, 10, 10, 10], [62, 62, 10, 10]],
        [[0.9, 0.0], [0.8, 0.0], [0.0, 0.7], [0.01, 0.0]],
    )
    (det,) = postprocess(raw, [lb], PostprocessConfig(conf=0.05, iou=0.5))
    # box 1 is suppressed by box 0 (same class); box 2 survives (other class); box 3 under conf
    assert det.scores.tolist() == pytest.approx([0.9, 0.7])
    assert det.classes.tolist() == [0, 1]
    (det,) = postprocess(raw, [lb], PostprocessConfig(conf=0.005, iou=0.5))
    assert det.boxes[-1].tolist() == [57.0, 57.0, 64.0, 64.0]  # clipped to the image
    (det,) = postprocess(raw, [lb], PostprocessConfig(conf=0.05, iou=0.5, agnostic=True))
    assert det.scores.tolist() == pytest.approx([0.9])


def test_postprocess_multi_label_and_max_det():
    lb = Letterbox(orig_shape=(64, 64), gain=(1.0, 1.0), pad=(0, 0))
    raw = _raw([[10, 10, 10, 10], [40, 40, 10, 10]], [[0.9, 0.6], [0.5, 0.0]])
    (det,) = postprocess(raw, [lb], PostprocessConfig(conf=0.1, multi_label=True))
    got = sorted(zip(np.round(det.scores.astype(float), 3).tolist(), det.classes.tolist(), strict=True))
    assert got == [(0.5, 0), (0.6, 1), (0.9, 0)]
    (det,) = postprocess(raw, [lb], PostprocessConfig(conf=0.1, max_det=1))
    assert det.scores.tolist() == pytest.approx([0.9])


def test_torch_predictor_matches_ultralytics_predict(trained_pico, val_images_bgr):
    """Our pre/post-processing around the PyTorch model reproduces ultralytics' own predictions."""
    from detpipe.ultralytics_env import configure_offline

    configure_offline()
    from ultralytics import YOLO

    ours = TorchPredictor(trained_pico, imgsz=64, postprocess_cfg=PostprocessConfig(conf=0.25, iou=0.7))
    theirs = YOLO(str(trained_pico))
    compared = 0
    for image in val_images_bgr:
        (det,) = ours([image])
        (res,) = theirs.predict(image, imgsz=64, conf=0.25, iou=0.7, rect=False, verbose=False, device="cpu")
        ref = res.boxes
        order = np.argsort(-ref.conf.numpy(), kind="stable")
        assert len(det) == len(ref)
        np.testing.assert_allclose(det.boxes, ref.xyxy.numpy()[order], atol=1e-2)
        np.testing.assert_allclose(det.scores, ref.conf.numpy()[order], atol=1e-4)
        np.testing.assert_array_equal(det.classes, ref.cls.numpy()[order].astype(int))
        compared += len(det)
    assert compared > 0, "the trained model found nothing at conf 0.25: the comparison would be empty"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"conf": 1.5}, "conf must be in [0, 1], got 1.5"),
        ({"iou": -0.1}, "iou must be in [0, 1], got -0.1"),
        ({"max_det": 0}, "max_det must be >= 1, got 0"),
    ],
)
def test_postprocess_config_refuses_bad_values(kwargs, message):
    with pytest.raises(InvalidInput) as info:
        PostprocessConfig(**kwargs)
    assert str(info.value) == message
