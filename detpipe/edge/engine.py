"""Build-on-device: an ONNX target becomes a TensorRT engine built on the device itself.

The guide's rule: engines are built on the target (they are specific to the TensorRT
version and GPU). Built engines are cached under ``DIR/engine-cache/<key>/`` keyed by the
ONNX file's sha256 and the device class (GPU name, compute capability, TensorRT version),
so a reinstall or a rollback does not rebuild. Without TensorRT (a CPU device class) the
agent serves the ONNX model itself::

    engine = build_on_device(Path("slot/model.onnx"), sha256, Path("DIR/engine-cache"))   # None: no TensorRT
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from detpipe.export.sidecar import DeviceInfo, device_class, sidecar_path

log = logging.getLogger(__name__)


def engine_cache_key(onnx_sha256: str, device: DeviceInfo) -> str:
    """``<first 16 hex of the ONNX sha256>-<device class>``, e.g. ``3f2a…-orin-sm87-trt10.3.0``."""
    return f"{onnx_sha256[:16]}-{device_class(device)}"


def cached_engine(cache: Path, key: str) -> Path | None:
    """The cached engine for ``key`` when it and its sidecar are both there."""
    engine = cache / key / "model.engine"
    return engine if engine.is_file() and sidecar_path(engine).is_file() else None


def build_on_device(onnx: Path, onnx_sha256: str, cache: Path, precision: str = "fp16") -> Path | None:
    """The engine for ``onnx`` on this device (cached), or None when TensorRT is not here."""
    from detpipe.export.tensorrt_build import EngineBuildConfig, build_engine, engine_unavailable_reason

    reason = engine_unavailable_reason()
    if reason is not None:
        log.info("no engine build here (%s): the ONNX model is served", reason)
        return None
    from detpipe.export.sidecar import current_device_info

    key = engine_cache_key(onnx_sha256, current_device_info())
    found = cached_engine(cache, key)
    if found is not None:
        log.info("engine cache hit %s", key)
        return found
    work = cache / f".{key}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log.info("building a TensorRT %s engine on this device (cache key %s)", precision, key)
    build_engine(onnx, work / "model.engine", EngineBuildConfig(precision=precision))
    final = cache / key
    shutil.rmtree(final, ignore_errors=True)
    work.rename(final)
    return final / "model.engine"
