"""What a device is: L4T/JetPack, TensorRT, CUDA, GPU, DLA cores, free disk (for its reports).

Read without torch: L4T from ``/etc/nv_tegra_release``, JetPack from the ``nvidia-jetpack``
package in dpkg's status (else the L4T release's JetPack), TensorRT from the ``tensorrt``
package (its ``Builder`` for the DLA core count when a GPU is present), the GPU and the
driver's CUDA version from the CUDA driver library (``libcuda.so.1`` through ctypes), the
CUDA toolkit from ``/usr/local/cuda/version.json``. What a machine lacks is ``None``::

    inv = collect(Path("/var/lib/detpipe-edge"))
    # {"l4t": "36.4.0", "jetpack": "6.1", "tensorrt": "10.3.0", "cuda": "12.6.68",
    #  "cuda_driver": "12.6", "gpu": "Orin", "gpu_count": 1, "compute_capability": "8.7",
    #  "dla_cores": 2, "arch": "aarch64", "disk_free_bytes": 51234567890, "disk_total_bytes": ...}

Everything but the disk is read once per process (:func:`static_inventory`).
"""

from __future__ import annotations

import ctypes
import functools
import json
import logging
import platform
import re
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TEGRA_RELEASE = Path("/etc/nv_tegra_release")
DPKG_STATUS = Path("/var/lib/dpkg/status")
CUDA_VERSION_JSON = Path("/usr/local/cuda/version.json")
# L4T release -> JetPack (NVIDIA's JetPack archive), for images without the nvidia-jetpack package
JETPACK_OF_L4T = {
    "32.7.4": "4.6.4", "32.7.5": "4.6.5", "32.7.6": "4.6.6",
    "35.3.1": "5.1.1", "35.4.1": "5.1.2", "35.5.0": "5.1.3", "35.6.0": "5.1.4", "35.6.1": "5.1.5",
    "36.2.0": "6.0 DP", "36.3.0": "6.0", "36.4.0": "6.1", "36.4.3": "6.2", "36.4.4": "6.2.1",
}  # fmt: skip
_CU_COMPUTE_MAJOR, _CU_COMPUTE_MINOR = 75, 76  # CUdevice_attribute


def parse_l4t(text: str) -> str | None:
    """``# R36 (release), REVISION: 4.0, ...`` -> ``36.4.0``."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)\.(\d+)", text)
    return f"{m.group(1)}.{m.group(2)}.{m.group(3)}" if m else None


def dpkg_version(status: str, package: str) -> str | None:
    """The installed version of ``package`` in dpkg's status file text (``6.1+b123`` -> ``6.1``)."""
    for stanza in status.split("\n\n"):
        if (
            re.search(rf"^Package: {re.escape(package)}$", stanza, re.M)
            and "Status: install ok installed" in stanza
        ):
            m = re.search(r"^Version: (\S+)", stanza, re.M)
            return m.group(1).split("+")[0].split("-")[0] if m else None
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def jetson_versions() -> tuple[str | None, str | None]:
    """``(L4T, JetPack)`` of this machine; ``(None, None)`` off a Jetson."""
    text = _read(TEGRA_RELEASE)
    l4t = parse_l4t(text) if text else None
    if l4t is None:
        return None, None
    status = _read(DPKG_STATUS)
    jetpack = dpkg_version(status, "nvidia-jetpack") if status else None
    return l4t, jetpack or JETPACK_OF_L4T.get(l4t)


def tensorrt_version() -> str | None:
    """The TensorRT Python package's version, or None."""
    from importlib import metadata

    for dist in ("tensorrt", "tensorrt-cu12", "tensorrt_cu12", "tensorrt-cu13"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    try:  # JetPack's apt package (python3-libnvinfer) may carry no dist-info
        import tensorrt
    except ImportError:
        return None
    return str(tensorrt.__version__)


def cuda_gpu() -> dict[str, Any]:
    """GPU 0's name and compute capability, the GPU count and the driver's CUDA version (driver API)."""
    out: dict[str, Any] = {"gpu": None, "gpu_count": 0, "compute_capability": None, "cuda_driver": None}
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return out
    value, count, dev = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    if lib.cuDriverGetVersion(ctypes.byref(value)) == 0:
        out["cuda_driver"] = f"{value.value // 1000}.{value.value % 1000 // 10}"
    if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return out
    out["gpu_count"] = count.value
    if lib.cuDeviceGet(ctypes.byref(dev), 0) != 0:
        return out
    name = ctypes.create_string_buffer(256)
    if lib.cuDeviceGetName(name, 256, dev) == 0:
        out["gpu"] = name.value.decode(errors="replace")
    major, minor = ctypes.c_int(), ctypes.c_int()
    if (
        lib.cuDeviceGetAttribute(ctypes.byref(major), _CU_COMPUTE_MAJOR, dev) == 0
        and lib.cuDeviceGetAttribute(ctypes.byref(minor), _CU_COMPUTE_MINOR, dev) == 0
    ):
        out["compute_capability"] = f"{major.value}.{minor.value}"
    return out


def cuda_toolkit() -> str | None:
    """The CUDA toolkit version from ``/usr/local/cuda/version.json`` (CUDA 11.1+)."""
    text = _read(CUDA_VERSION_JSON)
    try:
        return str(json.loads(text)["cuda"]["version"]) if text else None
    except (ValueError, KeyError, TypeError):
        return None


def dla_cores(has_gpu: bool) -> int | None:
    """DLA cores as TensorRT sees them (None without TensorRT or a GPU)."""
    if not has_gpu:
        return None
    try:
        import tensorrt as trt
    except ImportError:
        return None
    try:
        return int(trt.Builder(trt.Logger(trt.Logger.ERROR)).num_DLA_cores)
    except Exception as e:  # a broken driver: DLA is optional, the rest still counts
        log.debug("DLA cores unknown: %s", e)
        return None


@functools.cache
def static_inventory() -> dict[str, Any]:
    """Everything but the disk (read once: a TensorRT or JetPack upgrade restarts the agent)."""
    l4t, jetpack = jetson_versions()
    gpu = cuda_gpu()
    return {
        "l4t": l4t,
        "jetpack": jetpack,
        "tensorrt": tensorrt_version(),
        "cuda": cuda_toolkit(),
        **gpu,
        "dla_cores": dla_cores(gpu["gpu_count"] > 0),
        "arch": platform.machine() or None,
    }


def collect(state_dir: Path) -> dict[str, Any]:
    """The device's inventory, with the free and total bytes of the disk holding ``state_dir``."""
    try:
        usage = shutil.disk_usage(state_dir)
        disk: dict[str, int | None] = {"disk_free_bytes": usage.free, "disk_total_bytes": usage.total}
    except OSError:
        disk = {"disk_free_bytes": None, "disk_total_bytes": None}
    return {**static_inventory(), **disk}
