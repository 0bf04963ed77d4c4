"""Which of a version's targets a device runs, and build-on-device for the ONNX fallback.

A version may carry several engines (one per TensorRT version, compute capability, DLA core
and precision) and the ONNX model. :func:`pick_target` takes the engine whose sidecar passes
:func:`detpipe.export.sidecar.check_compatible` for this device (the one compatibility rule:
the same TensorRT version, unless built version-compatible, and the same compute capability
and GPU); failing that the ONNX model, which the device builds into an engine when it has
TensorRT and serves with onnxruntime on the CPU when it has not; failing both, nothing
(the agent's outcome ``incompatible``: not a fault of the artifact, so not refused for good)::

    pick = pick_target(targets_of_version, DeviceInfo("Orin", "8.7", "10.3.0", dla_cores=2))
    pick.release, pick.reason     # None, "no engine for TensorRT 10.3.0 sm87 among 10.4.0/sm87; no ONNX ..."

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from detpipe.edge.targets import ENGINE_PRECISIONS, Release
from detpipe.errors import EngineIncompatible, InvalidInput
from detpipe.export.sidecar import (
    DeviceInfo,
    check_compatible,
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
    if precision not in ENGINE_PRECISIONS:
        raise InvalidInput(f"engine cache key: precision {precision!r} ({', '.join(ENGINE_PRECISIONS)})")
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


def build_on_device(
    onnx: Path, onnx_sha256: str, cache: Path, precision: str = "fp16", device: DeviceInfo | None = None
) -> Path | None:
    """The engine for ``onnx`` on this device (cached), or None when TensorRT is not here.

    ``device`` keys the cache (default: :func:`~detpipe.export.sidecar.current_device_info`).
    """
    from detpipe.export.tensorrt_build import EngineBuildConfig, build_engine, engine_unavailable_reason

    reason = engine_unavailable_reason()
    if reason is not None:
        log.info("no engine build here (%s): the ONNX model is served", reason)
        return None
    if device is None:
        from detpipe.export.sidecar import current_device_info

        device = current_device_info()
    key = engine_cache_key(onnx_sha256, device, precision)
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


@dataclass(frozen=True)
class Pick:
    """The target of one version a device installs (None: none fits it) and why, in one line."""

    release: Release | None
    reason: str


def pick_target(targets: Sequence[Release], device: DeviceInfo | None, no_device: str = "") -> Pick:
    """The target of one version for ``device``: its engine, else the ONNX model, else none.

    Among several engines that fit, the one built for exactly this TensorRT version comes
    first, then GPU before DLA, then precision in :data:`ENGINE_PRECISIONS` order.

    Args:
        targets: the targets of one version of the device's class.
        device: this device's TensorRT and GPU; None when it has no TensorRT or GPU.
        no_device: why ``device`` is None (for the reason).
    """
    engines = sorted((t for t in targets if t.format == "engine"), key=lambda t: t.path)
    onnx = next((t for t in targets if t.format == "onnx"), None)
    if not engines:
        return Pick(onnx, "the ONNX model" if onnx is not None else "no target")
    listed = ", ".join(_describe(e, device) for e in engines)
    if device is None:
        why = f"{no_device or 'no TensorRT or GPU here'}: none of the engines {listed} can run"
        if onnx is not None:
            return Pick(onnx, f"{why}: the ONNX model is served on the CPU")
        return Pick(None, f"{why}; no ONNX to serve on the CPU")
    fits = [e for e in engines if not check_compatible(e.sidecar or {}, device)]
    if fits:
        best = min(fits, key=lambda e: _preference(e, device))
        return Pick(best, f"engine {best.path} for TensorRT {_here(device)}")
    why = f"no engine for TensorRT {_here(device)} among {listed}"
    if onnx is not None:
        return Pick(onnx, f"{why}: building from the ONNX")
    return Pick(None, f"{why}; no ONNX to build from")


def _here(device: DeviceInfo) -> str:
    return f"{device.tensorrt_version} sm{device.compute_capability.replace('.', '')}"


def _describe(engine: Release, device: DeviceInfo | None) -> str:
    """``10.4.0/sm87``; with what else stops it when TensorRT and GPU are the device's."""
    side = engine.sidecar or {}
    gpu = side.get("gpu") if isinstance(side.get("gpu"), dict) else {}
    trt, cc = str(side.get("tensorrt_version", "?")), str(gpu.get("compute_capability", "?"))
    label = f"{trt}/sm{cc.replace('.', '')}"
    if device is not None and (trt, cc) == (device.tensorrt_version, device.compute_capability):
        problems = check_compatible(side, device)
        if problems:
            label += f" ({'; '.join(problems)})"
    return label


def _preference(engine: Release, device: DeviceInfo) -> tuple[bool, bool, int, str]:
    side = engine.sidecar or {}
    flags = side.get("build_flags") if isinstance(side.get("build_flags"), dict) else {}
    precision = side.get("precision")
    rank = ENGINE_PRECISIONS.index(precision) if precision in ENGINE_PRECISIONS else len(ENGINE_PRECISIONS)
    exact = side.get("tensorrt_version") == device.tensorrt_version
    return (not exact, flags.get("dla_core") is not None, rank, engine.path)
