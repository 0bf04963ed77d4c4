"""Named argument sets for the pipelines: the study's defaults, its cluster layout, a quick profile.

The pipelines' own parameter defaults are the study's settings (COCO, 640 px, long
training); ``QUICK`` shrinks everything so a whole run fits a laptop or CI box (synthetic
data, tiny images, a few epochs, ONNX formats only). ``STUDY_4X4`` is the layout the study
trained every sweep cell with: 4 nodes x 4 GPUs as one PyTorchJob per cell, global batch
256 (16 per GPU, README "Training" recipe)::

    args = arguments("small_data_sweep", quick=False, profile="study-4x4")
    # the same from the CLI: detpipe pipeline submit --pipeline small_data_sweep \
    #     --set nnodes=4 --set nproc_per_node=4 --set batch=256 --set launcher=pytorchjob
"""

from __future__ import annotations

import inspect
from typing import Any

from detpipe.errors import InvalidInput
from detpipe.pipelines import build
from detpipe.pipelines.small_data_sweep import sweep_grid

# Tiny data needs frequent optimizer steps and a short warm-up: ultralytics' defaults (nbs=64,
# 3 warm-up epochs, mosaic) learn nothing in a few CPU epochs (tests/data/test_learnable.py).
QUICK_TRAIN = {"nbs": 8, "optimizer": "AdamW", "lr0": 0.002, "lrf": 0.1, "warmup_epochs": 0.5, "mosaic": 0.0}

QUICK_SWEEP_FRACTIONS = (5.0, 10.0, 20.0, 50.0, 100.0)

QUICK: dict[str, dict[str, Any]] = {
    "train_to_edge": {
        "release_version": "0.1.0",
        "synth_images": 160,
        "synth_imgsz": 256,
        "arch": "yolov8n.yaml",
        "fraction": 100.0,
        "epochs": 6,
        "imgsz": 192,
        "batch": 8,
        "train_overrides": QUICK_TRAIN,
        "device": "cpu",
        "workers": 0,
        "formats": ["onnx", "onnx-int8"],
        "calib_images": 64,
        # A 6-epoch CPU model scored on 40 val images loses 3.4-4.1 mAP50-95 points in INT8
        # (minmax, entropy and percentile calibration alike); calibrated on all 64 images asked
        # for (train2017_50_p, no longer the 7 of train2017_5_p) it still loses 3.7 (19.3 -> 15.6,
        # docs/BENCHMARKS.md), so the loose limit is the model's, not the calibration's.
        # The study-scale default is 2.0.
        "max_drop": "fp16=1.0,int8=5.0",
        "bench_iters": 30,
    },
    # The study's phenomenon on synthetic data in under 10 minutes on 2 CPU cores (measured in
    # docs/BENCHMARKS.md, "make sweep"): the pico YOLOv8 (1/8 of YOLOv8's width, shipped in
    # detpipe/train/configs) trains 30 epochs at every fraction of 320 64-px images, so the full
    # set nears convergence and less data costs accuracy the way the study saw it: collapsed at
    # 5 %, a cliff from 20 % to 10 %, diminishing returns from 50 % up (a power law fits from 10 %).
    "small_data_sweep": {
        "cells": sweep_grid(models=("yolov8-pico.yaml",), fractions=QUICK_SWEEP_FRACTIONS, seeds=(0,)),
        "synth_images": 320,
        "synth_imgsz": 64,
        "synth_classes": 3,
        "epochs": 30,
        "imgsz": 64,
        "batch": 16,
        "train_overrides": {**QUICK_TRAIN, "nbs": 16, "lr0": 0.004},
        "device": "cpu",
        "workers": 0,
        "fit_min_fraction": 10.0,  # the power law describes the curve above the collapse (5 %: 0)
    },
    # Active learning on the quick sweep's data and recipe (320 64-px synthetic images, 3 long-tailed
    # classes, the pico model 30 epochs), so the sweep's power law (docs/BENCHMARKS.md, "make sweep":
    # a = 0.636, b = 1.711, alpha = 0.473, N in % of its 298 annotated images) is the same data's
    # curve: a seed set of 10 % (30 images), 3 rounds of 30, uncertainty against random, 2 seeds.
    # Validation only after the last epoch (val: false): the rounds are scored on the val split by
    # the evaluation, and it costs a quarter of the CPU time; the whole run fits 10 minutes on 2 cores
    # (docs/BENCHMARKS.md, "Active learning").
    "active_learning": {
        "synth_images": 320,
        "synth_imgsz": 64,
        "synth_classes": 3,
        "strategies": ["uncertainty", "random"],
        "seeds": [0, 1],
        "rounds": 3,
        "budget": 30,
        "seed_fraction": 10.0,
        "arch": "yolov8-pico.yaml",
        "epochs": 30,
        "imgsz": 64,
        "batch": 16,
        "train_overrides": {**QUICK_TRAIN, "nbs": 16, "lr0": 0.004, "val": False},
        "device": "cpu",
        "workers": 0,
        "power_law": [0.636, 1.711, 0.473],
    },
}


STUDY_4X4: dict[str, Any] = {"nnodes": 4, "nproc_per_node": 4, "launcher": "pytorchjob", "batch": 256}
"""Every cell of ``small_data_sweep`` (or the ``train_to_edge`` model) as a 4-pod x 4-GPU job;
``launcher="trainjob"`` runs the same on Kubeflow Trainer v2."""

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "quick": QUICK,
    "study-4x4": {"small_data_sweep": STUDY_4X4, "train_to_edge": STUDY_4X4},
}


def arguments(
    pipeline: str, quick: bool, overrides: dict[str, Any] | None = None, profile: str | None = None
) -> dict[str, Any]:
    """Pipeline arguments: a profile (``quick``, or ``profile`` by name) updated with ``overrides``.

    Override values are checked against the pipeline's parameters: unknown names are refused
    and ints given for float parameters become floats (``--set fraction=5``).

    Raises:
        InvalidInput: an unknown profile or parameter, or a value of the wrong type.
    """
    if profile is not None and profile not in PROFILES:
        raise InvalidInput(f"profile {profile!r}: choose from {', '.join(PROFILES)}")
    base = PROFILES[profile][pipeline] if profile else (QUICK[pipeline] if quick else {})
    params = inspect.signature(build(pipeline).pipeline_func).parameters
    checked = {}
    for key, value in (overrides or {}).items():
        if key not in params:
            raise InvalidInput(f"--set {key}: {pipeline} has no such parameter; it has {', '.join(params)}")
        kind = params[key].annotation
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind in (int, float, str, bool, list, dict) and not isinstance(value, kind):
            raise InvalidInput(f"--set {key}={value!r}: expected {kind.__name__}")
        checked[key] = value
    return {**base, **checked}
