"""What machine a benchmark ran on: CPU, GPU, driver, runtime versions, Jetson power mode.

    meta = device_metadata()
    meta["cpu"]["model"], meta["gpu"], meta["versions"]["onnxruntime"], meta["jetson"]

and the device class each result is filed under in a release (``bench/<class>.json``),
from the device the result actually ran on (its ``ran_on``), never from the machine's GPU
alone::

    split_by_device_class(report)   # {"h100-80gb-hbm3": {...GPU rows}, "x86_64-cpu": {...CPU rows}}

Nothing here fails: a missing tool or package is recorded as None.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import logging
import os
import platform
import re
from pathlib import Path
from typing import Any

from detpipe.bench.jetson import jetson_info, run_quiet

log = logging.getLogger(__name__)


def cpu_model() -> str | None:
    """CPU model name (``lscpu`` 'Model name', else /proc/cpuinfo 'model name', else platform)."""
    m = re.search(r"^Model name:\s*(.+)$", run_quiet(["lscpu"]), flags=re.MULTILINE)
    if m:
        return m.group(1).strip()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        m = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(errors="replace"), flags=re.MULTILINE)
        if m:
            return m.group(1).strip()
    return platform.processor() or None


def cpu_flags() -> list[str]:
    """The SIMD flags that matter for INT8 inference (avx2, avx512*, vnni, amx)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return []
    m = re.search(r"^flags\s*:\s*(.+)$", cpuinfo.read_text(errors="replace"), flags=re.MULTILINE)
    flags = set(m.group(1).split()) if m else set()
    return sorted(f for f in flags if f.startswith(("avx2", "avx512", "amx")) or "vnni" in f)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def gpu_info() -> list[dict[str, Any]]:
    """CUDA GPUs (name, compute capability, memory) via torch, plus the driver from nvidia-smi."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    driver = run_quiet(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]).strip()
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        out.append(
            {
                "index": i,
                "name": props.name,
                "compute_capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2**30, 1),
                "driver": driver.splitlines()[0] if driver else None,
                "cuda": torch.version.cuda,
            }
        )
    return out


def device_metadata() -> dict[str, Any]:
    """Host, CPU, GPU, runtime versions and Jetson state, for bench.json."""
    import onnxruntime as ort

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    trt_version = _version("tensorrt") or _version("tensorrt-cu12") or _version("tensorrt-cu13")
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "os": platform.platform(),
        "cpu": {
            "model": cpu_model(),
            "cores_available": cores,
            "machine": platform.machine(),
            "int8_flags": cpu_flags(),
        },
        "gpu": gpu_info(),
        "versions": {
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
            "onnxruntime_providers": ort.get_available_providers(),
            "torch": _version("torch"),
            "tensorrt": trt_version,
            "ultralytics": _version("ultralytics"),
        },
        "jetson": jetson_info(),
    }


_GPU_BACKENDS = ("onnxruntime-cuda", "onnxruntime-trt", "tensorrt", "pytorch-cuda")


def device_class(meta: dict[str, Any], device: str = "cpu") -> str:
    """Path-safe device class of a result that ran on ``device`` ('cpu' or 'cuda:N').

    CPU results: ``<machine>-cpu`` (``x86_64-cpu``, ``aarch64-cpu``, on a Jetson too); GPU
    results: the Jetson model, else the name of GPU N (``h100-80gb-hbm3``).
    """
    if device == "cpu":
        name = f"{meta.get('cpu', {}).get('machine', 'unknown')}-cpu"
    elif meta.get("jetson"):
        name = str(meta["jetson"].get("model", "jetson"))
    else:
        index = int(device.partition(":")[2] or 0)
        gpus = {g.get("index", i): g for i, g in enumerate(meta.get("gpu") or [])}
        name = str(gpus.get(index, {}).get("name", "gpu")).replace("NVIDIA", "")
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._") or "unknown"


def _row_device(row: dict[str, Any], meta: dict[str, Any]) -> str:
    if "ran_on" in row:
        return str(row["ran_on"]["device"])
    # a skipped row: where its backend would have run
    return (
        "cuda:0" if row.get("backend") in _GPU_BACKENDS and (meta.get("gpu") or meta.get("jetson")) else "cpu"
    )


def split_by_device_class(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A bench report as one report per device class its results ran on (rows kept in order)."""
    meta = report["device"]
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in report["results"]:
        groups.setdefault(device_class(meta, _row_device(row, meta)), []).append(row)
    return {cls: {**report, "device_class": cls, "results": rows} for cls, rows in groups.items()}
