"""Deployment targets and model scales, with the published figures the rules start from.

Model tables: ultralytics' docs (https://docs.ultralytics.com/models/yolo12/ and
/models/yolo11/, read 2026-12-01): COCO val2017 mAP50-95, T4 TensorRT FP16 latency at 640 px
(batch 1), parameters (M) and FLOPs (G) per scale.

Platforms: NVIDIA's spec sheets. The figures come in different units, and the guide quotes
them as given (Jetson Nano in FP16 TFLOPS, the Orin modules in *sparse* INT8 TOPS including
their DLAs, desktop GPUs in dense tensor throughput). The consistent reading used here:
every platform gets a *dense* FP16 TFLOPS and a dense INT8 TOPS figure; a sparse figure is
halved (2:4 structured sparsity doubles the quoted number) and, on Ampere-class tensor cores,
dense FP16 is half of dense INT8.

FPS estimate (first order, detpipe's own rule): the T4's FP16 latency scaled by the ratio of
the platforms' dense FP16 throughput, by (imgsz / 640)^2 and by the precision's speed-up
(:data:`PRECISION_SPEEDUP`), never below a 0.5 ms floor (kernel launches and I/O at batch 1).
It ranks scales; confirm on the device with ``detpipe bench``.
"""

from __future__ import annotations

from dataclasses import dataclass

from detpipe.errors import InvalidInput


@dataclass(frozen=True)
class ModelSpec:
    """One published model: ``name`` (``yolo12n``), mAP50-95, T4 FP16 ms, params (M), GFLOPs."""

    name: str
    scale: str
    map5095: float
    t4_ms: float
    params_m: float
    gflops: float


SCALES = ("n", "s", "m", "l", "x")
YOLO12 = (
    ModelSpec("yolo12n", "n", 0.406, 1.64, 2.6, 6.5),
    ModelSpec("yolo12s", "s", 0.480, 2.61, 9.3, 21.4),
    ModelSpec("yolo12m", "m", 0.525, 4.86, 20.2, 67.5),
    ModelSpec("yolo12l", "l", 0.537, 6.77, 26.4, 88.9),
    ModelSpec("yolo12x", "x", 0.552, 11.79, 59.1, 199.0),
)
"""YOLO12 (ultralytics docs, YOLO12 page): the study's family."""
YOLO11 = (
    ModelSpec("yolo11n", "n", 0.395, 1.5, 2.6, 6.5),
    ModelSpec("yolo11s", "s", 0.470, 2.5, 9.4, 21.5),
    ModelSpec("yolo11m", "m", 0.515, 4.7, 20.1, 68.0),
    ModelSpec("yolo11l", "l", 0.534, 6.2, 25.3, 86.9),
    ModelSpec("yolo11x", "x", 0.547, 11.3, 56.9, 194.9),
)
"""YOLO11 (ultralytics docs, YOLO11 page): the all-convolution peer, for Maxwell-class GPUs."""
FAMILIES = {"yolo12": YOLO12, "yolo11": YOLO11}

T4_FP16_TFLOPS = 65.0
"""NVIDIA T4 datasheet: 65 TFLOPS mixed-precision FP16 (the anchor of the latencies above)."""
LATENCY_FLOOR_MS = 0.5
"""detpipe's choice: no batch-1 engine runs faster than this, whatever the peak throughput."""
REFERENCE_IMGSZ = 640
PRECISION_SPEEDUP = {"fp32": 0.5, "fp16": 1.0, "int8": 1.5}
"""Speed relative to FP16 on the same GPU. FP32 at half the FP16 rate (tensor-core peak ratio);
INT8 at 1.5x, detpipe's choice: below the 2x peak ratio, as YOLO engines keep some layers in
FP16 and are partly memory-bound at batch 1."""


@dataclass(frozen=True)
class Platform:
    """A deployment target.

    Attributes:
        name: The ``--platform`` value.
        title: What it is, for people.
        fp16_tflops: Dense FP16 throughput (the consistent reading, see the module docstring).
        int8_tops: Dense INT8 throughput; None where TensorRT has no INT8 (compute capability < 6.1).
        family: The model family recommended there.
        source: Where the figure comes from, as quoted.
        gpus: GPUs in the system (one stream runs on one).
    """

    name: str
    title: str
    fp16_tflops: float
    int8_tops: float | None
    family: str
    source: str
    gpus: int = 1


PLATFORMS = {
    p.name: p
    for p in (
        Platform(
            "jetson-nano",
            "Jetson Nano 4GB (Maxwell, JetPack 4)",
            0.472,
            None,
            "yolo11",
            "472 GFLOPS FP16; compute capability 5.3: no TensorRT INT8",
        ),
        Platform("orin-nano", "Jetson Orin Nano 8GB", 10.0, 20.0, "yolo12", "40 TOPS INT8 sparse"),
        Platform(
            "orin-nx", "Jetson Orin NX 16GB", 25.0, 50.0, "yolo12", "100 TOPS INT8 sparse (GPU + 2 DLA)"
        ),
        Platform(
            "agx-orin", "Jetson AGX Orin 64GB", 68.75, 137.5, "yolo12", "275 TOPS INT8 sparse (GPU + 2 DLA)"
        ),
        Platform(
            "rtx-3080",
            "GeForce RTX 3080",
            119.0,
            238.0,
            "yolo12",
            "GA102: 238 TOPS INT8 dense, 119 TFLOPS FP16",
        ),
        Platform(
            "rtx-5090",
            "GeForce RTX 5090",
            419.0,
            838.0,
            "yolo12",
            "3352 AI TOPS = FP4 sparse; /4 for INT8 dense",
        ),
        Platform(
            "dgx", "DGX H100 (8x H100 SXM)", 989.5, 1979.0, "yolo12", "per GPU: 1979 TOPS INT8 dense", gpus=8
        ),
    )
}
"""``--platform`` choices. Jetson Nano gets YOLO11 (detpipe's choice): YOLO12's attention blocks
have no fast Maxwell kernels under JetPack 4's TensorRT 8.2, YOLO11 is its convolutional peer."""


def get_platform(name: str) -> Platform:
    """The platform called ``name``.

    Raises:
        InvalidInput: An unknown name.
    """
    try:
        return PLATFORMS[name]
    except KeyError:
        raise InvalidInput(f"--platform {name!r}: expected one of {', '.join(PLATFORMS)}") from None


def estimate_fps(model: ModelSpec, platform: Platform, imgsz: int, precision: str) -> float:
    """Frames per second of ``model`` on ``platform`` at batch 1 (see the module docstring).

    Raises:
        InvalidInput: INT8 on a platform without it, or an unknown precision.
    """
    if precision not in PRECISION_SPEEDUP:
        raise InvalidInput(f"unknown precision {precision!r}")
    if precision == "int8" and platform.int8_tops is None:
        raise InvalidInput(f"{platform.name}: no INT8 support")
    ratio = T4_FP16_TFLOPS / platform.fp16_tflops
    ms = model.t4_ms * ratio * (imgsz / REFERENCE_IMGSZ) ** 2 / PRECISION_SPEEDUP[precision]
    return 1000.0 / max(ms, LATENCY_FLOOR_MS)
