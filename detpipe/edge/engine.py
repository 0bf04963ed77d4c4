"""Build-on-device: an ONNX target becomes a TensorRT engine built on the device itself.

The guide's rule: engines are built on the target (they are specific to the TensorRT
version and GPU). Built engines are cached under ``DIR/engine-cache/<key>/`` keyed by the
ONNX file's full sha256, the precision and the device class (GPU name, compute capability,
TensorRT version), so a reinstall or a rollback does not rebuild. A cached engine is used only
while its sha256 still matches its sidecar's (checked on every use; a mismatch is thrown away
and rebuilt). Without TensorRT (a CPU device class) the agent serves the ONNX model itself::

    engine = build_on_device(Path("slot/model.onnx"), sha256, Path("DIR/engine-cache"))   # None: no TensorRT
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from detpipe.errors import InvalidInput
from detpipe.export.sidecar import (
    DeviceInfo,
    EngineIncompatible,
    device_class,
    sidecar_path,
    verify_engine_file,
)
from detpipe.io import read_json

log = logging.getLogger(__name__)
_SHA256 = re.compile(r"[0-9a-f]{64}")


def engine_cache_key(onnx_sha256: str, device: DeviceInfo, precision: str = "fp16") -> str:
    """``<ONNX sha256>-<precision>-<device class>``, e.g. ``3f2a…(64 hex)-fp16-orin-sm87-trt10.3.0``.

    Raises:
        InvalidInput: ``onnx_sha256`` is not 64 lowercase hex digits, or an unknown precision.
    """
    if not _SHA256.fullmatch(onnx_sha256):
        raise InvalidInput(f"engine cache key: {onnx_sha256[:80]!r} is not a sha256")
    if precision not in ("fp16", "int8", "fp32"):
        raise InvalidInput(f"engine cache key: precision {precision!r} (fp16, int8 or fp32)")
    return f"{onnx_sha256}-{precision}-{device_class(device)}"


def cached_engine(cache: Path, key: str) -> Path | None:
    """The cached engine for ``key`` when it and its sidecar are there and its sha256 is the sidecar's.

    A cached engine whose bytes changed (a bad disk, a tampered cache) is removed, so the
    caller builds a fresh one instead of loading it.
    """
    engine = cache / key / "model.engine"
    if not (engine.is_file() and sidecar_path(engine).is_file()):
        return None
    try:
        verify_engine_file(engine, read_json(sidecar_path(engine)))
    except (EngineIncompatible, InvalidInput) as e:
        log.warning("discarding cached engine %s: %s", key, e)
        shutil.rmtree(cache / key, ignore_errors=True)
        return None
    return engine


def build_on_device(onnx: Path, onnx_sha256: str, cache: Path, precision: str = "fp16") -> Path | None:
    """The engine for ``onnx`` on this device (cached), or None when TensorRT is not here."""
    from detpipe.export.tensorrt_build import EngineBuildConfig, build_engine, engine_unavailable_reason

    reason = engine_unavailable_reason()
    if reason is not None:
        log.info("no engine build here (%s): the ONNX model is served", reason)
        return None
    from detpipe.export.sidecar import current_device_info

    key = engine_cache_key(onnx_sha256, current_device_info(), precision)
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
