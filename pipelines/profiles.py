"""Named argument sets for the pipelines: the study's defaults and a quick local profile.

The pipelines' own parameter defaults are the study's settings (COCO, 640 px, long
training); ``QUICK`` shrinks everything so a whole run fits a laptop or CI box (synthetic
data, tiny images, a few epochs, ONNX formats only).
"""

from __future__ import annotations

from typing import Any

from detpipe.pipelines.small_data_sweep import sweep_grid

QUICK: dict[str, dict[str, Any]] = {
    "train_to_edge": {
        "release_name": "yolov8n-synth",
        "release_version": "0.1.0",
        "synth_images": 160,
        "synth_imgsz": 256,
        "arch": "yolov8n.yaml",
        "fraction": 100.0,
        "epochs": 12,
        "imgsz": 224,
        "batch": 16,
        "device": "cpu",
        "workers": 0,
        "formats": ["onnx", "onnx-int8"],
        "calib_images": 64,
        "bench_iters": 30,
    },
    "small_data_sweep": {
        "cells": sweep_grid(models=("yolov8n.yaml",), fractions=(20.0, 100.0), seeds=(0,)),
        "synth_images": 160,
        "synth_imgsz": 256,
        "epochs": 3,
        "imgsz": 160,
        "batch": 16,
        "device": "cpu",
        "workers": 0,
    },
}


def arguments(pipeline: str, quick: bool, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Pipeline arguments: the quick profile (when asked) updated with ``overrides``."""
    return {**(QUICK[pipeline] if quick else {}), **(overrides or {})}
