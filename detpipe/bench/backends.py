"""Benchmark backends: which runtime runs which model file, and how it is labelled.

A backend turns a model file into a :class:`~detpipe.export.runtime.Predictor` (so the
benchmark times the same pre/post-processing the accuracy gate evaluated):

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

``auto`` picks per file: ONNX on CUDA when a GPU and the CUDA provider exist (else CPU),
engines on TensorRT, PyTorch on the GPU when there is one::

    models = discover_models([Path("runs/export"), Path("runs/train/weights/best.pt")])
    for m in models:
        for backend in backends_for(m, ["auto"]):
            predictor = load_predictor(m, backend, imgsz=(640, 640), threads=2)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    """A model to benchmark: its path, kind ('onnx', 'engine', 'pytorch') and format label."""

    path: Path
    kind: str
    label: str  # 'pytorch', 'onnx', 'onnx-int8', 'engine-fp16', 'engine-int8'


def _onnx_label(path: Path) -> str:
    import onnx

    if ".int8." in path.name:
        return "onnx-int8"
    graph = onnx.load(str(path), load_external_data=False).graph
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


def discover_models(paths: Sequence[str | Path]) -> list[ModelFile]:
    """Model files from files and directories (an export directory: its .onnx and .engine files).

    Raises:
        InvalidInput: a path does not exist or a directory holds no model.
    """
    out: list[ModelFile] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted([*p.glob("*.onnx"), *p.glob("*.engine"), *p.glob("*.pt")])
            if not found:
                raise InvalidInput(f"{p}: no .onnx, .engine or .pt files")
            out += [model_file(f) for f in found]
        else:
            out.append(model_file(p))
    return out


def _gpu_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def _ort_cuda_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers() and _gpu_available()


def backends_for(model: ModelFile, requested: Sequence[str]) -> list[str]:
    """The backends (of ``requested``, 'auto' resolved) that can run ``model``."""
    out: list[str] = []
    for name in requested:
        if name == "auto":
            if model.kind == "onnx":
                name = "onnxruntime-cuda" if _ort_cuda_available() else "onnxruntime"
            elif model.kind == "engine":
                name = "tensorrt"
            else:
                name = "pytorch-cuda" if _gpu_available() else "pytorch"
        elif name not in BACKENDS:
            raise InvalidInput(f"--backend {name!r}: expected auto or one of {', '.join(BACKENDS)}")
        if name in _KIND_BACKENDS[model.kind] and name not in out:
            out.append(name)
    return out


def load_predictor(
    model: ModelFile, backend: str, imgsz: tuple[int, int] | None = None, threads: int | None = None
) -> Any:
    """A predictor for ``model`` on ``backend``.

    Args:
        model: the file.
        backend: one of :data:`BACKENDS` valid for the file's kind.
        imgsz: input size for PyTorch models (exported files have theirs built in; a
            different size is refused for them).
        threads: CPU intra-op threads (onnxruntime CPU, PyTorch CPU).

    Raises:
        Unavailable: the backend's runtime or device is missing here.
        InvalidInput: the backend cannot run this kind of file, or a size mismatch.
    """
    if backend not in _KIND_BACKENDS[model.kind]:
        raise InvalidInput(f"{model.path}: backend {backend} cannot run a {model.kind} model")
    if backend in _ORT_DEVICE:
        from detpipe.export.runtime import OnnxPredictor

        predictor = OnnxPredictor(model.path, device=_ORT_DEVICE[backend], threads=threads)
    elif backend == "tensorrt":
        from detpipe.export.tensorrt_runtime import TensorRTPredictor

        predictor = TensorRTPredictor(model.path)
    else:
        from detpipe.errors import Unavailable
        from detpipe.export.runtime import TorchPredictor

        device = "cuda" if backend == "pytorch-cuda" else "cpu"
        if device == "cuda" and not _gpu_available():
            raise Unavailable("pytorch-cuda: no CUDA GPU here")
        return TorchPredictor(model.path, imgsz=imgsz or 640, device=device, threads=threads)
    if imgsz is not None and tuple(imgsz) != tuple(predictor.imgsz):
        raise InvalidInput(
            f"{model.path}: built for {predictor.imgsz[0]}x{predictor.imgsz[1]}, asked for "
            f"{imgsz[0]}x{imgsz[1]}; re-export with --imgsz"
        )
    return predictor
