"""Engine sidecars and the device-compatibility check that guards every engine load.

A TensorRT engine only runs on the TensorRT version and GPU model it was built with.
Every engine ``model.fp16.engine`` gets ``model.fp16.engine.json`` beside it (TensorRT
version, GPU name and compute capability, precision, input shape, build flags, sha256).
Before an engine is deserialized, :func:`ensure_compatible` compares the sidecar with the
device and refuses a mismatch with a message that says what to do
(:class:`detpipe.errors.EngineIncompatible`, also importable from here: this device cannot use
the engine, exit 3 / HTTP 503); a missing or foreign sidecar and an engine whose sha256 is not
its sidecar's are :class:`~detpipe.errors.InvalidInput` (exit 2 / HTTP 400). The edge agent
and the server rely on this. :func:`check_compatible` is a pure function, tested without a GPU::

    sidecar = read_sidecar("export/model.fp16.engine")
    problems = check_compatible(sidecar, DeviceInfo("Orin", "8.7", "10.3.0", dla_cores=2))
    ensure_compatible(sidecar, current_device_info())      # raises EngineIncompatible

Rules: the TensorRT version must match exactly (same major with a newer runtime when the
engine was built version-compatible); the compute capability must match (or be at least
8.0 on both sides for an 'ampere+' hardware-compatible engine); the GPU name must match
unless ``strict_gpu_name=False``; an engine built for DLA core N needs N+1 DLA cores.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from detpipe import __version__
from detpipe.errors import EngineIncompatible, InvalidInput, Unavailable
from detpipe.io import read_json, sha256_file, write_json

log = logging.getLogger(__name__)

SCHEMA = "detpipe.engine-sidecar/1"


@dataclass(frozen=True)
class DeviceInfo:
    """What an engine's compatibility depends on, for one GPU.

    Attributes:
        gpu_name: CUDA device name ('NVIDIA H100 80GB HBM3', 'Orin').
        compute_capability: 'major.minor' ('9.0', '8.7').
        tensorrt_version: the TensorRT runtime version ('10.3.0').
        dla_cores: DLA cores on the device (Jetson AGX/NX Orin: 2; others 0).
        cuda_version: CUDA runtime version, informative only.
    """

    gpu_name: str
    compute_capability: str
    tensorrt_version: str
    dla_cores: int = 0
    cuda_version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sidecar_path(engine: str | Path) -> Path:
    """``model.fp16.engine`` -> ``model.fp16.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def device_class(device: DeviceInfo) -> str:
    """A path-safe device class for the release layout: ``orin-sm87-trt10.3.0``."""
    name = re.sub(r"[^a-z0-9]+", "-", device.gpu_name.lower().replace("nvidia", "")).strip("-") or "gpu"
    return f"{name}-sm{device.compute_capability.replace('.', '')}-trt{device.tensorrt_version}"


def make_sidecar(
    engine: str | Path,
    device: DeviceInfo,
    precision: str,
    input_shape: list[int],
    build_flags: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The sidecar of a freshly built engine file (hashes the file)."""
    engine = Path(engine)
    return {
        "schema": SCHEMA,
        "engine": engine.name,
        "sha256": sha256_file(engine),
        "size_bytes": engine.stat().st_size,
        "precision": precision,
        "tensorrt_version": device.tensorrt_version,
        "gpu": {
            "name": device.gpu_name,
            "compute_capability": device.compute_capability,
            "dla_cores": device.dla_cores,
            "cuda_version": device.cuda_version,
        },
        "device_class": device_class(device),
        "input_shape": list(input_shape),
        "build_flags": build_flags,
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "detpipe_version": __version__,
        **(extra or {}),
    }


def write_sidecar(engine: str | Path, sidecar: dict[str, Any]) -> Path:
    """Write ``sidecar`` next to ``engine`` (atomically)."""
    return write_json(sidecar_path(engine), sidecar)


def read_sidecar(engine: str | Path) -> dict[str, Any]:
    """The sidecar of ``engine``; a missing or foreign one is refused (no sidecar, no load).

    Raises:
        InvalidInput: no sidecar beside ``engine``, or not a detpipe engine sidecar.
    """
    path = sidecar_path(engine)
    if not path.is_file():
        raise InvalidInput(
            f"{engine}: no sidecar {path.name}; an engine without one cannot be checked against this "
            "device and is not loaded"
        )
    sidecar = read_json(path)
    if not isinstance(sidecar, dict) or sidecar.get("schema") != SCHEMA:
        raise InvalidInput(f"{path}: not a detpipe engine sidecar (schema {SCHEMA})")
    return sidecar


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def check_compatible(sidecar: dict[str, Any], device: DeviceInfo, strict_gpu_name: bool = True) -> list[str]:
    """Why the engine described by ``sidecar`` cannot run on ``device``; empty when it can.

    Pure: no GPU, TensorRT or file access.

    Args:
        sidecar: the engine's sidecar (:func:`make_sidecar`).
        device: the device that wants to load it.
        strict_gpu_name: also require the same GPU model name (TensorRT's own rule: engines are
            specific to the device type they were built on). With False, the same compute
            capability is enough.

    Returns:
        One line per problem.
    """
    problems = []
    flags = sidecar.get("build_flags") or {}
    gpu = sidecar.get("gpu") or {}
    built_trt = str(sidecar.get("tensorrt_version", "?"))
    if flags.get("version_compatible"):
        b, d = _version_tuple(built_trt), _version_tuple(device.tensorrt_version)
        if not b or not d or b[0] != d[0] or d < b:
            problems.append(
                f"TensorRT {device.tensorrt_version} here, engine built version-compatible with TensorRT "
                f"{built_trt} (needs the same major version, {built_trt} or newer)"
            )
    elif built_trt != device.tensorrt_version:
        problems.append(f"TensorRT {device.tensorrt_version} here, engine built with TensorRT {built_trt}")
    built_cc = str(gpu.get("compute_capability", "?"))
    if flags.get("hardware_compatibility") == "ampere+":
        if _version_tuple(device.compute_capability) < (8, 0):
            problems.append(
                f"compute capability {device.compute_capability} here, 'ampere+' engine needs >= 8.0"
            )
    elif built_cc != device.compute_capability:
        problems.append(f"compute capability {device.compute_capability} here, engine built for {built_cc}")
    built_name = str(gpu.get("name", "?"))
    if strict_gpu_name and flags.get("hardware_compatibility") != "ampere+" and built_name != device.gpu_name:
        problems.append(f"GPU {device.gpu_name!r} here, engine built on {built_name!r}")
    dla = flags.get("dla_core")
    if dla is not None and int(dla) >= device.dla_cores:
        problems.append(f"engine runs on DLA core {dla}, this device has {device.dla_cores} DLA core(s)")
    return problems


def ensure_compatible(sidecar: dict[str, Any], device: DeviceInfo, strict_gpu_name: bool = True) -> None:
    """Raise :class:`~detpipe.errors.EngineIncompatible` (``Unavailable``: exit 3, HTTP 503)
    unless the engine can run on ``device``."""
    problems = check_compatible(sidecar, device, strict_gpu_name)
    if problems:
        raise EngineIncompatible(
            f"{sidecar.get('engine', 'engine')}: refusing to load, built for another device: "
            + "; ".join(problems)
            + ". Rebuild it on this device: detpipe export --formats engine-"
            + str(sidecar.get("precision", "fp16")),
            problems,
        )


def verify_engine_file(engine: str | Path, sidecar: dict[str, Any]) -> None:
    """Raise :class:`~detpipe.errors.InvalidInput` when the engine's sha256 differs from its
    sidecar's (a corrupt or replaced file: the artifact's fault, not the device's)."""
    digest = sha256_file(engine)
    if digest != sidecar.get("sha256"):
        raise InvalidInput(
            f"{engine}: sha256 {digest[:12]}… does not match its sidecar "
            f"({str(sidecar.get('sha256'))[:12]}…); "
            "the file is corrupt or was replaced"
        )


def current_device_info(device_index: int = 0) -> DeviceInfo:
    """The :class:`DeviceInfo` of CUDA device ``device_index`` with this TensorRT.

    Raises:
        Unavailable: no TensorRT Python package or no CUDA GPU here.
    """
    trt = import_tensorrt()
    from detpipe.export.cuda_mem import get_cuda

    cuda = get_cuda(device_index)
    if device_index >= cuda.device_count():
        raise InvalidInput(f"CUDA device {device_index}: only {cuda.device_count()} device(s) here")
    name, (major, minor) = cuda.device_properties(device_index)
    try:
        dla = int(trt.Builder(trt.Logger(trt.Logger.ERROR)).num_DLA_cores)
    except Exception:  # a broken driver: DLA is optional, the rest is still meaningful
        dla = 0
    return DeviceInfo(
        gpu_name=name,
        compute_capability=f"{major}.{minor}",
        tensorrt_version=str(trt.__version__),
        dla_cores=dla,
        cuda_version=cuda.runtime_version(),
    )


def import_tensorrt() -> Any:
    """``import tensorrt`` on demand.

    Raises:
        Unavailable: the package is not installed (it is not a detpipe dependency: it comes
            with JetPack on a Jetson and with NVIDIA's images or wheels on a GPU server).
    """
    try:
        import tensorrt
    except ImportError as e:
        raise Unavailable(
            f"TensorRT is not installed here ({e}); engines need the tensorrt Python package"
        ) from None
    return tensorrt
