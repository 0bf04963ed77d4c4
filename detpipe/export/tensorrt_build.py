"""Build TensorRT engines (FP16, INT8) from the exported ONNX model with the tensorrt Python API.

``tensorrt`` is imported only when a build starts, so this module loads on machines without
it; :func:`engine_unavailable_reason` tells the export stage whether a build can run here.

    cfg = EngineBuildConfig(precision="int8", workspace_gib=4, dla_core=None,
                            timing_cache=Path("out/timing.cache"), calib_cache=Path("out/calib.cache"))
    sidecar = build_engine("out/model.onnx", "out/model.int8.engine", cfg, calib_paths=paths)

- FP16: the ``FP16`` builder flag.
- INT8: the ``INT8`` flag (with FP16 for layers that stay in higher precision) and an
  ``IInt8EntropyCalibrator2`` fed with the same calibration images as onnxruntime's INT8;
  the calibration cache is read when present and written after calibration.
- A timing cache (read, then updated) makes rebuilds on the same device fast.
- ``dla_core``: run on a Jetson Orin DLA core with GPU fallback for unsupported layers.
- A dynamic-batch ONNX gets an optimization profile ``1 .. max_batch`` (opt = max_batch).

Every engine is written atomically with its sidecar (:mod:`detpipe.export.sidecar`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detpipe.errors import DetpipeError, InvalidInput, Unavailable
from detpipe.export.sidecar import (
    DeviceInfo,
    current_device_info,
    import_tensorrt,
    make_sidecar,
    write_sidecar,
)
from detpipe.io import sha256_file, write_bytes

log = logging.getLogger(__name__)

PRECISIONS = ("fp16", "int8")


@dataclass(frozen=True)
class EngineBuildConfig:
    """TensorRT build settings.

    Attributes:
        precision: 'fp16' or 'int8'.
        workspace_gib: builder workspace memory-pool limit in GiB.
        dla_core: DLA core to build for (Jetson Orin), None for the GPU.
        timing_cache: timing cache file (read when present, written after the build).
        calib_cache: INT8 calibration cache file (read when present, written after calibration).
        calib_batch: images per INT8 calibration batch.
        max_batch: the largest batch of a dynamic-batch ONNX (ignored for a static one).
        device_index: CUDA device.
    """

    precision: str = "fp16"
    workspace_gib: float = 4.0
    dla_core: int | None = None
    timing_cache: Path | None = None
    calib_cache: Path | None = None
    calib_batch: int = 8
    max_batch: int = 1
    device_index: int = 0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise InvalidInput(f"engine precision {self.precision!r}: expected fp16 or int8")
        if self.workspace_gib <= 0:
            raise InvalidInput(f"workspace {self.workspace_gib} GiB: must be > 0")
        if self.dla_core is not None and self.dla_core < 0:
            raise InvalidInput(f"--dla-core {self.dla_core}: must be >= 0")


def engine_unavailable_reason(device_index: int = 0) -> str | None:
    """Why engines cannot be built here (no tensorrt package, no CUDA GPU), or None when they can."""
    try:
        current_device_info(device_index)
    except (Unavailable, InvalidInput) as e:
        return str(e)
    return None


class _TrtLogger:
    """Route TensorRT's log through Python logging (created lazily, needs tensorrt)."""

    @staticmethod
    def create(trt: Any) -> Any:
        class Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: Any, msg: str) -> None:
                level = {
                    trt.ILogger.INTERNAL_ERROR: logging.ERROR,
                    trt.ILogger.ERROR: logging.ERROR,
                    trt.ILogger.WARNING: logging.WARNING,
                    trt.ILogger.INFO: logging.DEBUG,
                }.get(severity, logging.DEBUG)
                log.log(level, "TensorRT: %s", msg)

        return Logger()


def _entropy_calibrator(
    trt: Any, paths: Sequence[Path], input_shape: tuple[int, ...], cache: Path | None, device_index: int
) -> Any:
    """An ``IInt8EntropyCalibrator2`` over preprocessed calibration batches."""
    from tqdm import tqdm

    from detpipe.export.calib import calibration_batches
    from detpipe.export.cuda_mem import get_cuda

    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise Unavailable(
            f"TensorRT {trt.__version__} has no implicit INT8 calibration (IInt8EntropyCalibrator2); "
            "use the onnx-int8 format or an explicitly quantized model"
        )
    batch, _, h, w = input_shape
    cuda = get_cuda(device_index)

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = calibration_batches(paths, (h, w), batch)
            self.buffer = cuda.empty(tuple(input_shape))
            self.bar = tqdm(total=max(len(paths) // batch, 1), desc="calibrating (TensorRT)", unit="batch")

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            x = next(self.batches, None)
            if x is None:
                self.bar.close()
                return None
            self.buffer.copy_from_host(x)
            self.bar.update(1)
            return [self.buffer.ptr]

        def read_calibration_cache(self) -> bytes | None:
            if cache is not None and cache.is_file():
                log.info("using INT8 calibration cache %s", cache)
                return cache.read_bytes()
            return None

        def write_calibration_cache(self, data: Any) -> None:
            if cache is not None:
                write_bytes(cache, bytes(data))

    return EntropyCalibrator()


def build_engine(
    onnx_path: str | Path,
    out: str | Path,
    cfg: EngineBuildConfig,
    calib_paths: Sequence[Path] | None = None,
    extra_sidecar: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a TensorRT engine from ``onnx_path`` and write it with its sidecar.

    Args:
        onnx_path: the FP32 ``model.onnx``.
        out: the engine path (``model.fp16.engine``); the sidecar goes to ``out + '.json'``.
        cfg: build settings.
        calib_paths: calibration images (required for INT8 unless ``cfg.calib_cache`` exists).
        extra_sidecar: extra keys for the sidecar (class names, source model hash, ...).

    Returns:
        The sidecar dict (also written next to the engine).

    Raises:
        Unavailable: no tensorrt or no GPU here, no DLA on this device, no INT8 calibration API.
        InvalidInput: the ONNX file does not parse, or INT8 without calibration data.
        DetpipeError: TensorRT failed to build (its log says why).
    """
    trt = import_tensorrt()
    device = current_device_info(cfg.device_index)
    onnx_path, out = Path(onnx_path), Path(out)
    start = time.perf_counter()
    trt_logger = _TrtLogger.create(trt)
    builder = trt.Builder(trt_logger)
    major = int(str(trt.__version__).split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InvalidInput(f"{onnx_path}: TensorRT cannot parse it: {errors}")
    inp = network.get_input(0)
    shape = tuple(inp.shape)
    config = builder.create_builder_config()
    workspace = int(cfg.workspace_gib * (1 << 30))
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)

    profile = None
    if shape[0] == -1:
        _, c, h, w = shape
        profile = builder.create_optimization_profile()
        profile.set_shape(inp.name, (1, c, h, w), (cfg.max_batch, c, h, w), (cfg.max_batch, c, h, w))
        config.add_optimization_profile(profile)
        shape = (cfg.max_batch, c, h, w)

    cache_bytes = cfg.timing_cache.read_bytes() if cfg.timing_cache and cfg.timing_cache.is_file() else b""
    timing_cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(timing_cache, ignore_mismatch=False)

    if not hasattr(trt.BuilderFlag, "FP16"):
        raise Unavailable(
            f"TensorRT {trt.__version__} is strongly typed only (no FP16/INT8 builder flags); "
            "detpipe builds engines with TensorRT 8.6 to 10.x"
        )
    if not getattr(builder, "platform_has_fast_fp16", True):
        log.warning("%s: no fast FP16 on this GPU; building anyway", device.gpu_name)
    config.set_flag(trt.BuilderFlag.FP16)
    calibration = None
    if cfg.precision == "int8":
        if not getattr(builder, "platform_has_fast_int8", True):
            log.warning("%s: no fast INT8 on this GPU; building anyway", device.gpu_name)
        if not calib_paths and not (cfg.calib_cache and cfg.calib_cache.is_file()):
            raise InvalidInput("engine-int8 needs calibration images (--calib) or a calibration cache")
        config.set_flag(trt.BuilderFlag.INT8)
        calib_shape = (cfg.calib_batch if profile is not None else shape[0], *shape[1:])
        if profile is not None:
            calib_profile = builder.create_optimization_profile()
            calib_profile.set_shape(inp.name, calib_shape, calib_shape, calib_shape)
            config.set_calibration_profile(calib_profile)
        config.int8_calibrator = _entropy_calibrator(
            trt, list(calib_paths or []), calib_shape, cfg.calib_cache, cfg.device_index
        )
        calibration = {
            "calibrator": "IInt8EntropyCalibrator2",
            "images": len(calib_paths or []),
            "batch": calib_shape[0],
            "cache": cfg.calib_cache.name if cfg.calib_cache else None,
        }

    if cfg.dla_core is not None:
        if device.dla_cores == 0:
            raise Unavailable(f"--dla-core {cfg.dla_core}: {device.gpu_name} has no DLA cores")
        if cfg.dla_core >= device.dla_cores:
            raise InvalidInput(f"--dla-core {cfg.dla_core}: this device has {device.dla_cores} DLA core(s)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = cfg.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    log.info("building TensorRT %s engine for %s (input %s)…", cfg.precision, device.gpu_name, shape)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise DetpipeError(
            f"TensorRT failed to build the {cfg.precision} engine from {onnx_path} (see the log)"
        )
    write_bytes(out, bytes(serialized))
    if cfg.timing_cache is not None:
        write_bytes(cfg.timing_cache, bytes(config.get_timing_cache().serialize()))
    build_flags = {
        "fp16": True,
        "int8": cfg.precision == "int8",
        "workspace_bytes": workspace,
        "dla_core": cfg.dla_core,
        "gpu_fallback": cfg.dla_core is not None,
        "dynamic_batch": {"min": 1, "opt": cfg.max_batch, "max": cfg.max_batch}
        if profile is not None
        else None,
        "timing_cache": cfg.timing_cache.name if cfg.timing_cache else None,
        "calibration": calibration,
        "version_compatible": False,
        "hardware_compatibility": "none",
        "build_seconds": round(time.perf_counter() - start, 1),
    }
    extra = {
        "source_onnx": {"file": onnx_path.name, "sha256": sha256_file(onnx_path)},
        **(extra_sidecar or {}),
    }
    sidecar = make_sidecar(out, device, cfg.precision, list(shape), build_flags, extra)
    write_sidecar(out, sidecar)
    log.info("wrote %s (%.1f MB) in %.0f s", out, out.stat().st_size / 1e6, build_flags["build_seconds"])
    return sidecar


def device_for_report(device_index: int = 0) -> DeviceInfo | None:
    """The device engines would be built for, or None where there is none."""
    try:
        return current_device_info(device_index)
    except (Unavailable, InvalidInput):
        return None
