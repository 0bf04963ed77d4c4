"""The one place that reads a ``--device`` value: parse, validate, resolve ``auto``.

Every stage (train, evaluate, export, bench) and every component takes the same forms,
ultralytics'/torch's own spellings::

    auto        CUDA when a GPU is visible, else CPU (the pipelines' default)
    cpu
    cuda        the first visible GPU (``cuda:N`` or ``N``: GPU N; ``N,M``: several, training only)
    mps         Apple silicon

    parse_device("cuda:1")               # -> ("cuda", (1,))  (no torch import: cheap validation)
    resolve_device("auto")               # -> "0" on a CUDA machine, "cpu" elsewhere
    resolve_device("auto", single=False) # -> "0,1" on a 2-GPU machine (training)

Resolution returns the string ultralytics and :func:`torch_device` accept: ``"cpu"``,
``"mps"``, or GPU indices (``"0"``, ``"0,1"``). A GPU asked for where there is none is
:class:`~detpipe.errors.Unavailable` (exit 3), a malformed value
:class:`~detpipe.errors.InvalidInput` (exit 2).
"""

from __future__ import annotations

import re
from typing import Any

from detpipe.errors import InvalidInput, Unavailable

DEVICE_FORMS = "auto, cpu, cuda, cuda:N, N or N,M (GPU indices), mps"
KINDS = ("auto", "cpu", "cuda", "mps")
_INDICES_RE = re.compile(r"^\d+(,\d+)*\Z")


def parse_device(device: str) -> tuple[str, tuple[int, ...]]:
    """Split a ``--device`` value into (kind, GPU indices): ``("cuda", (0, 1))``, ``("cpu", ())``.

    Raises:
        InvalidInput: not one of :data:`DEVICE_FORMS`, or a GPU listed twice.
    """
    text = str(device).strip().lower().replace(" ", "")
    if text in KINDS:
        return text, ()
    text = text.removeprefix("cuda:")
    if _INDICES_RE.match(text):
        indices = tuple(int(x) for x in text.split(","))
        if len(set(indices)) != len(indices):
            raise InvalidInput(f"--device {device}: a GPU is listed twice")
        return "cuda", indices
    raise InvalidInput(f"--device {device}: expected {DEVICE_FORMS}")


def cuda_device_count() -> int:
    """Visible CUDA GPUs (0 without a driver, or with CUDA_VISIBLE_DEVICES='').

    Without the CUDA driver (``libcuda.so.1``) there is no GPU, and torch is not imported (a
    CPU serving pod never loads it). With the driver: torch's count where torch is installed
    (a CPU build of torch counts 0); else the driver's own (``cuDeviceGetCount``), so the slim
    GPU serving image, which has no torch, still finds its GPU.
    """
    import ctypes

    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    try:
        import torch
    except ImportError:
        return _driver_device_count(driver)
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _driver_device_count(driver: Any) -> int:
    import ctypes

    count = ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def _mps_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(device: str, *, single: bool = True) -> str:
    """The concrete device for ``device`` on this machine.

    Args:
        device: a ``--device`` value (:data:`DEVICE_FORMS`).
        single: the stage runs on one device (evaluate, export, bench): ``auto``/``cuda``
            become GPU ``"0"`` and a list of GPUs is refused. With False (training),
            ``auto``/``cuda`` become every visible GPU.

    Returns:
        ``"cpu"``, ``"mps"`` or GPU indices such as ``"0"`` / ``"0,1"``.

    Raises:
        InvalidInput: malformed, or several GPUs for a single-device stage.
        Unavailable: a GPU (or MPS) requested that this machine does not have.
    """
    kind, indices = parse_device(device)
    if kind == "cpu":
        return "cpu"
    if kind == "mps":
        if not _mps_available():
            raise Unavailable(f"--device {device}: MPS is not available here (use --device cpu)")
        return "mps"
    count = cuda_device_count()
    if kind == "auto":
        if count == 0:
            return "cpu"
        indices = (0,) if single else tuple(range(count))
    elif count == 0:
        raise Unavailable(f"--device {device}: CUDA is not available here (use --device cpu or auto)")
    elif not indices:
        indices = (0,) if single else tuple(range(count))
    missing = [i for i in indices if i >= count]
    if missing:
        raise Unavailable(f"--device {device}: no GPU {missing[0]} here ({count} visible)")
    if single and len(indices) > 1:
        raise InvalidInput(
            f"--device {device}: this stage runs on one device; pick one GPU, e.g. {indices[0]}"
        )
    return ",".join(str(i) for i in indices)


def is_gpu(resolved: str) -> bool:
    """True for a resolved CUDA device (GPU indices), False for ``cpu`` / ``mps``."""
    return bool(_INDICES_RE.match(resolved))


def torch_device(resolved: str) -> str:
    """A resolved single device as torch spells it: ``"0"`` -> ``"cuda:0"``; cpu/mps unchanged."""
    return f"cuda:{resolved}" if is_gpu(resolved) else resolved


def gpu_index(resolved: str) -> int:
    """The CUDA index of a resolved single GPU device (TensorRT, onnxruntime's CUDA provider)."""
    if not is_gpu(resolved) or "," in resolved:
        raise InvalidInput(f"device {resolved!r}: expected one GPU index")
    return int(resolved)
