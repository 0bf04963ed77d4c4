"""The guide's rules and detpipe's constants, pinned value by value."""

from __future__ import annotations

import pytest

from detpipe.errors import InvalidInput
from detpipe.recommend import rules
from detpipe.recommend.platforms import PLATFORMS, YOLO12, estimate_fps, get_platform


@pytest.mark.parametrize(
    ("sensor", "classes", "epochs"),
    [("rgb", 1, 330), ("rgb", 4, 410), ("rgb", 80, 966), ("thermal", 4, 900), ("thermal", 80, 1942)],
)
def test_epochs(sensor, classes, epochs):
    assert rules.epochs_for(sensor, classes) == epochs


def test_epoch_budget_and_patience():
    assert rules.epoch_budget(410) == 492  # ceil(410 * 1.2)
    assert rules.patience_for(410) == 82
    assert rules.patience_for(2) == 1


@pytest.mark.parametrize(("classes", "lr0"), [(1, 0.01), (2, 0.01), (3, 0.01), (12, 0.005), (80, 0.001936)])
def test_lr0_is_capped_at_001(classes, lr0):
    assert rules.lr0_for(classes) == lr0


def test_images_needed():
    assert rules.images_needed("rgb", 80) == 120_500  # ~ COCO train2017's 118,287 images
    assert rules.images_needed("thermal", 5) == 11_000


@pytest.mark.parametrize(("share", "imgsz"), [(0.0, 640), (0.41, 640), (0.5, 960), (0.69, 960), (0.7, 1280)])
def test_imgsz_from_small_share(share, imgsz):
    assert rules.imgsz_for(share) == imgsz


def test_augmentation_presets():
    rgb = rules.augmentation_for("rgb", "x", 0.1)
    assert rgb["hsv_h"] == 0.015 and rgb["hsv_s"] == 0.7 and rgb["mixup"] == 0.2 and rgb["scale"] == 0.5
    thermal = rules.augmentation_for("thermal", "x", 0.1)
    assert (thermal["hsv_h"], thermal["hsv_s"], thermal["mixup"], thermal["hsv_v"]) == (0.0, 0.0, 0.0, 0.4)
    small = rules.augmentation_for("rgb", "n", 0.6)
    assert (small["scale"], small["close_mosaic"], small["mixup"]) == (0.3, 20, 0.0)


def test_precision_follows_the_export_gate_limits():
    assert rules.precision_for(True, 2.0) == "int8"
    assert rules.precision_for(True, 1.9) == "fp16"
    assert rules.precision_for(False, 5.0) == "fp16"  # Jetson Nano: no INT8
    assert rules.precision_for(True, 0.5) == "fp32"


def test_platforms_and_the_consistent_reading():
    assert set(PLATFORMS) == {
        "jetson-nano",
        "orin-nano",
        "orin-nx",
        "agx-orin",
        "rtx-3080",
        "rtx-5090",
        "dgx",
    }
    assert PLATFORMS["agx-orin"].int8_tops == 275 / 2  # quoted sparse, read dense
    assert PLATFORMS["jetson-nano"].int8_tops is None and PLATFORMS["jetson-nano"].family == "yolo11"
    with pytest.raises(InvalidInput, match="expected one of jetson-nano"):
        get_platform("tx2")


def test_fps_estimate():
    n = YOLO12[0]
    assert estimate_fps(n, PLATFORMS["orin-nx"], 640, "fp16") == pytest.approx(1000 / (1.64 * 65 / 25))
    assert estimate_fps(n, PLATFORMS["orin-nx"], 640, "int8") == pytest.approx(1.5 * 1000 / (1.64 * 65 / 25))
    assert estimate_fps(n, PLATFORMS["orin-nx"], 320, "fp16") == pytest.approx(4 * 1000 / (1.64 * 65 / 25))
    assert estimate_fps(n, PLATFORMS["dgx"], 640, "fp16") == 2000.0  # the 0.5 ms floor
    with pytest.raises(InvalidInput, match="no INT8"):
        estimate_fps(n, PLATFORMS["jetson-nano"], 640, "int8")
