"""Backends: which runtime runs which model file, and how the file is labelled.

A backend turns a model file into a :class:`~detpipe.runtime.predictors.Predictor`, so the
server, the edge health check, ``mine`` and the benchmark all run the same
pre/post-processing the accuracy gate evaluated:

==================  ===========  =====================================================
backend             files        runtime
==================  ===========  =====================================================
onnxruntime         .onnx        onnxruntime, CPU execution provider
onnxruntime-cuda    .onnx        onnxruntime, CUDA execution provider
onnxruntime-trt     .onnx        onnxruntime, TensorRT execution provider
tensorrt            .engine      native TensorRT (sidecar-checked)
pytorch             .pt, .yaml   the PyTorch model on the CPU (the ONNX peer)
pytorch-cuda        .pt, .yaml   the PyTorch model on the GPU
==================  ===========  =====================================================

``auto`` picks per file for the run's device (:func:`detpipe.device.resolve_device`; ``auto``:
GPU 0 when there is one): on a GPU, ONNX on the CUDA provider when onnxruntime has it (else
the CPU one), engines on TensorRT, PyTorch on CUDA; on ``cpu`` the CPU backends only.
Every result says what really ran (:func:`ran_on`: the providers onnxruntime actually
uses, the TensorRT/torch device), and its device class follows from that, never from the
machine's GPU alone::

    model = model_file("runs/export/model.onnx")
    for backend in backends_for(model, ["auto"]):
        predictor = load_predictor(model, backend, imgsz=(640, 640), threads=2)
        ran_on(predictor, backend)   # {'runtime': 'onnxruntime', 'device': 'cpu', ...}
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detpipe.device import cuda_device_count, is_gpu, resolve_device
from detpipe.errors import InvalidInput

log = logging.getLogger(__name__)

BACKENDS = ("onnxruntime", "onnxruntime-cuda", "onnxruntime-trt", "tensorrt", "pytorch", "pytorch-cuda")
_KIND_BACKENDS = {
    "onnx": ("onnxruntime", "onnxruntime-cuda", "onnxruntime-trt"),
    "engine": ("tensorrt",),
    "pytorch": ("pytorch", "pytorch-cuda"),
}
_ORT_DEVICE = {"onnxruntime": "cpu", "onnxruntime-cuda": "cuda", "onnxruntime-trt": "tensorrt"}


@dataclass(frozen=True)
class ModelFile:
    """A model file: its path, kind ('onnx', 'engine', 'pytorch') and format label."""

    path: Path
    kind: str
    label: str  # 'pytorch', 'onnx', 'onnx-int8', 'engine-fp16', 'engine-int8'


def _onnx_label(path: Path) -> str:
    from detpipe.runtime.predictors import load_onnx

    if ".int8." in path.name:
        return "onnx-int8"
    graph = load_onnx(path).graph
    return "onnx-int8" if any(n.op_type == "QuantizeLinear" for n in graph.node) else "onnx"


def _engine_label(path: Path) -> str:
    from detpipe.export.sidecar import sidecar_path

    side = sidecar_path(path)
    if side.is_file():
        from detpipe.io import read_json

        precision = read_json(side).get("precision")
        if precision:
            return f"engine-{precision}"
    for precision in ("fp16", "int8", "fp32"):
        if f".{precision}." in path.name:
            return f"engine-{precision}"
    return "engine"


def model_file(path: str | Path) -> ModelFile:
    """Classify one model file by its suffix.

    Raises:
        InvalidInput: missing file or an unknown suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):  # a model config: resolved by ultralytics, need not exist here
        return ModelFile(path, "pytorch", "pytorch")
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    if suffix == ".onnx":
        return ModelFile(path, "onnx", _onnx_label(path))
    if suffix in (".engine", ".plan", ".trt"):
        return ModelFile(path, "engine", _engine_label(path))
    if suffix == ".pt":
        return ModelFile(path, "pytorch", "pytorch")
    raise InvalidInput(f"{path}: unknown model type (expected .onnx, .engine, .pt or a model .yaml)")


def _ort_cuda_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def backends_for(model: ModelFile, requested: Sequence[str], device: str | None = None) -> list[str]:
    """The backends (of ``requested``, 'auto' resolved for the resolved ``device``) that can run ``model``.

    ``device`` None is this machine's ``auto`` (:func:`detpipe.device.resolve_device`), as the
    server resolves it.

    ``auto`` on ``cpu`` picks CPU backends (an engine keeps TensorRT, its only runtime); on a
    GPU the GPU backend of each kind (onnxruntime's CUDA provider only when this build has it).
    """
    gpu = is_gpu(resolve_device("auto") if device is None else device)
    out: list[str] = []
    for name in requested:
        if name == "auto":
            if model.kind == "onnx":
                name = "onnxruntime-cuda" if gpu and _ort_cuda_available() else "onnxruntime"
            elif model.kind == "engine":
                name = "tensorrt"  # its only runtime: without a GPU the row says why it was skipped
            else:
                name = "pytorch-cuda" if gpu else "pytorch"
        elif name not in BACKENDS:
            raise InvalidInput(f"--backend {name!r}: expected auto or one of {', '.join(BACKENDS)}")
        if name in _KIND_BACKENDS[model.kind] and name not in out:
            out.append(name)
    return out


def load_predictor(
    model: ModelFile,
    backend: str,
    imgsz: tuple[int, int] | None = None,
    threads: int | None = None,
    gpu: int = 0,
) -> Any:
    """A predictor for ``model`` on ``backend``.

    Args:
        model: the file.
        backend: one of :data:`BACKENDS` valid for the file's kind.
        imgsz: input size for PyTorch models (exported files have theirs built in; a
            different size is refused for them).
        threads: CPU intra-op threads (onnxruntime CPU, PyTorch CPU).
        gpu: CUDA device of the TensorRT and PyTorch backends (onnxruntime's CUDA provider
            uses its default device, recorded by :func:`ran_on`).

    Raises:
        Unavailable: the backend's runtime or device is missing here.
        InvalidInput: the backend cannot run this kind of file, or a size mismatch.
    """
    if backend not in _KIND_BACKENDS[model.kind]:
        raise InvalidInput(f"{model.path}: backend {backend} cannot run a {model.kind} model")
    if backend in _ORT_DEVICE:
        from detpipe.runtime.predictors import OnnxPredictor

        predictor = OnnxPredictor(model.path, device=_ORT_DEVICE[backend], threads=threads)
    elif backend == "tensorrt":
        from detpipe.runtime.tensorrt import TensorRTPredictor

        predictor = TensorRTPredictor(model.path, device_index=gpu)
    else:
        from detpipe.errors import Unavailable
        from detpipe.runtime.predictors import TorchPredictor

        device = f"cuda:{gpu}" if backend == "pytorch-cuda" else "cpu"
        if device != "cpu" and cuda_device_count() <= gpu:
            raise Unavailable(f"pytorch-cuda: no CUDA GPU {gpu} here")
        return TorchPredictor(model.path, imgsz=imgsz or 640, device=device, threads=threads)
    if imgsz is not None and tuple(imgsz) != tuple(predictor.imgsz):
        raise InvalidInput(
            f"{model.path}: built for {predictor.imgsz[0]}x{predictor.imgsz[1]}, asked for "
            f"{imgsz[0]}x{imgsz[1]}; re-export with --imgsz"
        )
    return predictor


_GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def ran_on(predictor: Any, backend: str, gpu: int = 0) -> dict[str, Any]:
    """What a loaded predictor really runs on: runtime, ``device`` ('cpu' or 'cuda:N') and, for
    onnxruntime, the providers the session uses (``get_providers()``: a CUDA provider that
    failed to initialize falls back to CPU, and the result says so)."""
    if backend in _ORT_DEVICE:
        session = predictor.session
        providers = list(session.get_providers())
        device = "cpu"
        if providers and providers[0] in _GPU_PROVIDERS:
            options = session.get_provider_options().get(providers[0], {})
            device = f"cuda:{options.get('device_id', 0)}"
        if backend != "onnxruntime" and device == "cpu":
            log.warning("%s: onnxruntime fell back to %s; labelled as CPU", backend, ", ".join(providers))
        return {"runtime": "onnxruntime", "device": device, "providers": providers}
    if backend == "tensorrt":
        return {
            "runtime": "tensorrt",
            "device": f"cuda:{gpu}",
            "gpu": predictor.sidecar.get("gpu", {}).get("name"),
        }
    return {"runtime": "torch", "device": str(predictor.device)}
