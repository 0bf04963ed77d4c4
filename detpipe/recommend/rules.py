"""The deployment guide's decision rules, one function each.

From the guide (as the issue quotes it):

* epochs = round(E_base + k * sqrt(C)): thermal 600 + 150 * sqrt(C), RGB 250 + 80 * sqrt(C);
* lr0 = 0.01 / sqrt(C / 3), capped at 0.01 (the guide's formula gives more than 0.01 for
  C < 3; the cap wins, so 1 and 2 classes train at 0.01 like 3);
* thermal augmentation: no hue/saturation jitter, no mixup;
* precision: FP16 by default, INT8 when the accuracy budget allows;
* data: images_needed = base + C x per-class images, RGB vs thermal.

detpipe's own choices where the guide gives no number (each constant says so):
patience, the safety margin of the epoch budget, the per-class image counts, the scales'
data minimums, the small-object input sizes and the augmentation values.
"""

from __future__ import annotations

import math

from detpipe.export.gate import DEFAULT_MAX_DROP

EPOCH_RULE = {"rgb": (250.0, 80.0), "thermal": (600.0, 150.0)}
"""The guide: (E_base, k) of epochs = E_base + k * sqrt(C)."""
EPOCH_SAFETY_MARGIN = 1.2
"""detpipe's choice: the epoch budget (time/cost planning) is 20 % above the epochs."""
PATIENCE_SHARE = 0.2
"""detpipe's choice: patience = 20 % of the epochs. The study flags runs that peak in their
last 10 % as unconverged; twice that window lets a plateau end a run without cutting one
that still improves."""
LR0_MAX = 0.01
"""The guide: lr0 = 0.01 / sqrt(C / 3), at most 0.01 (ultralytics' default lr0)."""
IMAGES_RULE = {"rgb": (500, 1500), "thermal": (1000, 2000)}
"""(base, per class) of images_needed = base + C x per_class. RGB: ultralytics' "tips for best
training results" ask >= 1500 images per class; with 80 classes the rule gives 120,500, close
to COCO train2017's 118,287. Thermal: detpipe's choice, a third more (no colour cue)."""
SCALE_MIN_IMAGES = {"n": 1000, "s": 2500, "m": 5000, "l": 10000, "x": 20000}
"""detpipe's choice: fewest training images per scale before a smaller scale generalizes
better (doubling per step; the study's cliff for yolo12n lies near 2.5-5 % of COCO)."""
SMALL_IMGSZ = ((0.7, 1280), (0.5, 960), (0.0, 640))
"""detpipe's choice: input size by the share of small objects (< 32 px at 640, COCO's
"small"). COCO itself (41 % small) trains at 640, so the first step is above it."""
FPS_IMGSZ_STEPS = (640, 512, 416, 320)
"""detpipe's choice: sizes tried, largest first, when no scale reaches the FPS at the input
size the objects call for (multiples of the 32 px stride)."""
FPS_HEADROOM = 1.2
"""detpipe's choice: an engine must estimate 20 % above the target FPS (pre/post-processing)."""
IMBALANCE_WARN = 10.0
"""detpipe's choice: warn when the largest class has 10x the instances of the smallest."""

AUGMENT_RGB = {
    "hsv_h": 0.015,
    "hsv_s": 0.7,
    "hsv_v": 0.4,
    "degrees": 0.0,
    "translate": 0.1,
    "scale": 0.5,
    "fliplr": 0.5,
    "mosaic": 1.0,
    "close_mosaic": 10,
}
"""ultralytics' defaults (cfg/default.yaml) for RGB."""
MIXUP_RGB = {"n": 0.0, "s": 0.05, "m": 0.15, "l": 0.15, "x": 0.2}
"""mixup per scale from the YOLOv12 authors' COCO recipe (github.com/sunsmarterjie/yolov12)."""
AUGMENT_THERMAL_CHANGES = {"hsv_h": 0.0, "hsv_s": 0.0, "mixup": 0.0}
"""The guide: thermal images get no hue/saturation jitter and no mixup (value jitter stays:
the temperature range maps to brightness)."""
AUGMENT_SMALL_CHANGES = {"scale": 0.3, "close_mosaic": 20}
"""detpipe's choice for small objects: shrink less (scale jitter 0.3) and train the last 20
epochs without mosaic, which shrinks objects further."""
SMALL_PRESET_SHARE = 0.5
"""detpipe's choice: the small-object preset applies from this small-object share."""


def epochs_for(sensor: str, classes: int) -> int:
    """The guide's epochs: E_base + k * sqrt(C), rounded."""
    base, k = EPOCH_RULE[sensor]
    return round(base + k * math.sqrt(classes))


def epoch_budget(epochs: int) -> int:
    """Epochs with the safety margin, rounded up."""
    return math.ceil(epochs * EPOCH_SAFETY_MARGIN)


def patience_for(epochs: int) -> int:
    """Early-stopping patience: :data:`PATIENCE_SHARE` of the epochs, rounded."""
    return max(1, round(epochs * PATIENCE_SHARE))


def lr0_for(classes: int) -> float:
    """The guide's initial LR: 0.01 / sqrt(C / 3), capped at 0.01."""
    return round(min(LR0_MAX, 0.01 / math.sqrt(classes / 3.0)), 6)


def images_needed(sensor: str, classes: int) -> int:
    """The guide's data rule: base + C x per-class images."""
    base, per_class = IMAGES_RULE[sensor]
    return base + classes * per_class


def imgsz_for(small_share: float) -> int:
    """Input size for a small-object share in [0, 1]."""
    return next(size for low, size in SMALL_IMGSZ if small_share >= low)


def augmentation_for(sensor: str, scale: str, small_share: float) -> dict[str, float]:
    """ultralytics augmentation hyperparameters for the sensor, model scale and objects."""
    aug: dict[str, float] = {**AUGMENT_RGB, "mixup": MIXUP_RGB[scale]}
    if sensor == "thermal":
        aug.update(AUGMENT_THERMAL_CHANGES)
    if small_share >= SMALL_PRESET_SHARE:
        aug.update(AUGMENT_SMALL_CHANGES)
    return aug


def precision_for(int8_supported: bool, map_budget: float) -> str:
    """``int8`` when the platform has it and the budget covers the export gate's INT8 limit,
    else ``fp16`` when it covers FP16's, else ``fp32`` (the gate's limits: detpipe.export.gate)."""
    if int8_supported and map_budget >= DEFAULT_MAX_DROP["int8"]:
        return "int8"
    return "fp16" if map_budget >= DEFAULT_MAX_DROP["fp16"] else "fp32"
