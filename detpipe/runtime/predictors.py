"""Predictors: an exported model (onnxruntime) or the PyTorch reference, images -> detections.

Every backend shares the same steps, so accuracy and latency differences come from the
model format alone: :func:`~detpipe.runtime.image.preprocess` (letterbox, NCHW float32),
the network (:meth:`Predictor.infer`, raw ``(B, 4 + nc, anchors)``), then
:func:`~detpipe.runtime.nms.postprocess` (confidence filter, class-aware NMS, boxes in the
image's pixels)::

    predictor = OnnxPredictor("export/model.onnx")
    detections = predictor([cv2.imread("a.jpg"), cv2.imread("b.jpg")])
    detections[0].boxes, detections[0].scores, detections[0].classes

The TensorRT engine predictor with the same interface is in :mod:`detpipe.runtime.tensorrt`;
which backend runs which file is :mod:`detpipe.runtime.backends`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detpipe.errors import InvalidInput
from detpipe.runtime.image import as_hw, preprocess
from detpipe.runtime.nms import Detections, PostprocessConfig, postprocess


class Predictor:
    """Base class: images -> :class:`Detections`; subclasses implement :meth:`infer`.

    Attributes:
        imgsz: model input (h, w).
        batch: the model's fixed batch size, or None when the batch axis is dynamic.
        names: class index -> name.
        postprocess_cfg: NMS settings.
    """

    imgsz: tuple[int, int]
    batch: int | None
    names: dict[int, str]
    postprocess_cfg: PostprocessConfig

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Run the network on a preprocessed NCHW float32 batch; return the raw output.

        The output is a fresh array the caller owns (never a buffer the next call reuses),
        so callers may keep views of its rows.
        """
        raise NotImplementedError

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect objects on BGR images; batches larger than a static batch are split."""
        step = self.batch or max(len(images), 1)
        out: list[Detections] = []
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            x, lbs = preprocess(chunk, self.imgsz, self.batch)
            out += postprocess(self.infer(x), lbs, self.postprocess_cfg)
        return out


def load_onnx(path: str | Path) -> Any:
    """The ``onnx.ModelProto`` in ``path``, without external weights.

    Raises:
        InvalidInput: the file is not an ONNX model.
    """
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return onnx.load(str(path), load_external_data=False)
    except DecodeError:
        raise InvalidInput(f"{path}: not an ONNX model (it does not parse as one)") from None


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """detpipe's metadata stored in an ONNX file's ``metadata_props`` (see onnx_export).

    Raises:
        InvalidInput: the file is not an ONNX model.
    """
    model = load_onnx(path)
    props = {p.key: p.value for p in model.metadata_props}
    meta: dict[str, Any] = {}
    for key, value in props.items():
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError:
            meta[key] = value
    return meta


def ort_providers(device: str = "cpu") -> list[str]:
    """onnxruntime execution providers for ``device`` ('cpu', 'cuda', 'tensorrt'), CPU last.

    Raises:
        Unavailable: the provider is not in this onnxruntime build.
    """
    import onnxruntime as ort

    from detpipe.errors import Unavailable

    wanted = {
        "cpu": [],
        "cuda": ["CUDAExecutionProvider"],
        "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
    }
    if device not in wanted:
        raise InvalidInput(f"unknown onnxruntime device {device!r}; expected one of {sorted(wanted)}")
    available = ort.get_available_providers()
    missing = [p for p in wanted[device][:1] if p not in available]
    if missing:
        raise Unavailable(f"onnxruntime has no {missing[0]} here (available: {', '.join(available)})")
    return [*(p for p in wanted[device] if p in available), "CPUExecutionProvider"]


def ort_session(path: str | Path, device: str = "cpu", threads: int | None = None) -> Any:
    """An onnxruntime session with all graph optimizations and ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or 0  # 0: onnxruntime's default (one per physical core)
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=ort_providers(device))
    except (RuntimeError, ValueError) as e:  # onnxruntime's Fail/InvalidGraph/... derive from these
        raise InvalidInput(f"{path}: onnxruntime cannot load it: {str(e).splitlines()[0]}") from None


class OnnxPredictor(Predictor):
    """An exported YOLO ONNX model run by onnxruntime.

    Args:
        path: ``model.onnx`` / ``model.int8.onnx`` written by ``detpipe export``.
        device: 'cpu', 'cuda' or 'tensorrt' (execution provider).
        threads: intra-op threads (None: onnxruntime's default).
        postprocess_cfg: NMS settings.
    """

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        threads: int | None = None,
        postprocess_cfg: PostprocessConfig | None = None,
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise InvalidInput(f"{path}: no such file")
        self.path = path
        self.session = ort_session(path, device, threads)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = self.session.get_outputs()[0].name
        _, _, h, w = inp.shape
        if not (isinstance(h, int) and isinstance(w, int)):
            raise InvalidInput(
                f"{path}: input {inp.name} has a dynamic image size; export with a fixed --imgsz"
            )
        self.imgsz = (h, w)
        self.batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        meta = read_onnx_metadata(path)
        names = meta.get("names") or {}
        self.names = {int(k): str(v) for k, v in names.items()}
        self.postprocess_cfg = postprocess_cfg or PostprocessConfig()

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]


class TorchPredictor(Predictor):
    """The PyTorch model behind the same pre/post-processing (the reference for exported formats).

    Args:
        weights: a ``.pt`` checkpoint or model YAML, or an already loaded ``LoadedModel``.
        imgsz: input size (h, w) or square size.
        device: torch device string ('cpu', 'cuda', 'cuda:0').
        threads: torch intra-op threads (None: leave as is).
        postprocess_cfg: NMS settings.
    """

    def __init__(
        self,
        weights: Any,
        imgsz: int | Sequence[int] = 640,
        device: str = "cpu",
        threads: int | None = None,
        postprocess_cfg: PostprocessConfig | None = None,
    ) -> None:
        import torch

        from detpipe.export.model import LoadedModel, load_detection_model, prepare_for_export

        loaded = weights if isinstance(weights, LoadedModel) else load_detection_model(weights)
        self.imgsz = as_hw(imgsz)
        self.batch = None
        self.names = loaded.names
        self.device = torch.device(device)
        if threads:
            torch.set_num_threads(threads)
        self.model = prepare_for_export(loaded.model, self.imgsz, dynamic=True).to(self.device)
        self.postprocess_cfg = postprocess_cfg or PostprocessConfig()

    def infer(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            y = self.model(torch.from_numpy(x).to(self.device))
        y = y[0] if isinstance(y, list | tuple) else y
        return y.float().cpu().numpy()


def default_threads() -> int:
    """Physical-ish core count used when comparing backends at the same thread count."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
