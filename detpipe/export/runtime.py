"""YOLO pre/post-processing and predictors over exported models (ONNX; PyTorch as the reference).

Every backend shares the same steps, so accuracy and latency differences come from the
model format alone:

1. :func:`letterbox` — resize keeping the aspect ratio, pad with grey (114) to ``imgsz``,
   centred, exactly as ultralytics' ``LetterBox(auto=False)``;
2. :func:`preprocess` — BGR -> RGB, HWC -> NCHW, /255, float32;
3. the model — raw output ``(B, 4 + nc, anchors)``: centre-x, centre-y, w, h, class scores;
4. :func:`postprocess` — confidence filter, class-aware NMS (:func:`nms`, numpy, same
   semantics as ``torchvision.ops.nms``), boxes mapped back to the original image.

Usage::

    predictor = OnnxPredictor("export/model.onnx")
    detections = predictor([cv2.imread("a.jpg"), cv2.imread("b.jpg")])
    detections[0].boxes, detections[0].scores, detections[0].classes

A TensorRT engine predictor with the same interface is in
:mod:`detpipe.export.tensorrt_runtime`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detpipe.errors import InvalidInput

log = logging.getLogger(__name__)

PAD_VALUE = 114
MAX_WH = 7680  # class offset for class-aware NMS, as ultralytics


@dataclass(frozen=True)
class Detections:
    """Detections of one image, in that image's pixel coordinates."""

    boxes: np.ndarray  # (N, 4) float32, x1 y1 x2 y2
    scores: np.ndarray  # (N,) float32
    classes: np.ndarray  # (N,) int64, contiguous class index 0..nc-1

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class Letterbox:
    """How one image was letterboxed: scale per axis and top-left padding."""

    orig_shape: tuple[int, int]  # (h, w)
    gain: tuple[float, float]  # (gain_x, gain_y): new size / original size
    pad: tuple[int, int]  # (left, top) in pixels


@dataclass(frozen=True)
class PostprocessConfig:
    """NMS settings; the defaults are ultralytics' validation settings (for mAP)."""

    conf: float = 0.001
    iou: float = 0.7
    max_det: int = 300
    multi_label: bool = False
    agnostic: bool = False
    max_nms: int = 30000

    def __post_init__(self) -> None:
        for label, value in (("conf", self.conf), ("iou", self.iou)):
            if not 0.0 <= value <= 1.0:
                raise InvalidInput(f"{label} must be in [0, 1], got {value}")
        for label, value in (("max_det", self.max_det), ("max_nms", self.max_nms)):
            if value < 1:
                raise InvalidInput(f"{label} must be >= 1, got {value}")


def _as_hw(imgsz: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(imgsz, int):
        return imgsz, imgsz
    h, w = imgsz
    return int(h), int(w)


def letterbox(image: np.ndarray, imgsz: int | Sequence[int]) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` (HWC, BGR uint8) into ``imgsz`` keeping aspect ratio, pad the rest.

    Returns:
        The padded image and the :class:`Letterbox` needed to map boxes back.
    """
    import cv2

    new_h, new_w = _as_hw(imgsz)
    h, w = image.shape[:2]
    r = min(new_h / h, new_w / w)
    unpad_w, unpad_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (new_w - unpad_w) / 2, (new_h - unpad_h) / 2
    if (w, h) != (unpad_w, unpad_h):
        image = cv2.resize(image, (unpad_w, unpad_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return image, Letterbox(orig_shape=(h, w), gain=(unpad_w / w, unpad_h / h), pad=(left, top))


def preprocess(
    images: Sequence[np.ndarray], imgsz: int | Sequence[int], batch: int | None = None
) -> tuple[np.ndarray, list[Letterbox]]:
    """Letterbox BGR images into one NCHW float32 RGB batch in [0, 1].

    Args:
        images: HWC BGR uint8 images (``cv2.imread`` order), any sizes.
        imgsz: model input (h, w) or a square size.
        batch: pad the batch with grey images up to this size (for static-batch models).

    Returns:
        ``(x, letterboxes)``; ``x`` is C-contiguous ``(max(len, batch), 3, h, w)``.
    """
    h, w = _as_hw(imgsz)
    padded, boxes = [], []
    for image in images:
        if image.ndim != 3 or image.shape[2] != 3:
            raise InvalidInput(f"expected an HxWx3 BGR image, got shape {image.shape}")
        img, lb = letterbox(image, (h, w))
        padded.append(img)
        boxes.append(lb)
    return to_input(padded, (h, w), batch), boxes


def to_input(
    letterboxed: Sequence[np.ndarray], imgsz: int | Sequence[int], batch: int | None = None
) -> np.ndarray:
    """Already letterboxed BGR uint8 images (``imgsz``) -> the NCHW float32 RGB model input.

    Rows past ``len(letterboxed)`` up to ``batch`` are grey padding (static-batch models).
    """
    h, w = _as_hw(imgsz)
    x = np.full((max(len(letterboxed), batch or 0), h, w, 3), PAD_VALUE, dtype=np.uint8)
    for i, image in enumerate(letterboxed):
        x[i] = image
    x = x[..., ::-1].transpose(0, 3, 1, 2)  # BGR -> RGB, NHWC -> NCHW
    return np.ascontiguousarray(x, dtype=np.float32) / np.float32(255.0)


def decode_image(data: bytes, max_pixels: int = 40_000_000) -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, WebP, BMP) -> HWC BGR uint8.

    The size is read from the header first (:func:`~detpipe.export.image_header.image_size`),
    so an image over ``max_pixels`` is refused before the decoder allocates anything.

    Raises:
        InvalidInput: empty bytes, another format, more than ``max_pixels`` pixels, or bytes
            that do not decode.
    """
    import cv2

    from detpipe.export.image_header import FORMATS, image_size

    if not data:
        raise InvalidInput("empty image")
    declared = image_size(data)
    if declared.width * declared.height > max_pixels:
        raise InvalidInput(
            f"image is {declared.width}x{declared.height} pixels, more than the {max_pixels} allowed"
        )
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidInput(f"not a decodable image ({len(data)} bytes; expected {', '.join(FORMATS)})")
    if image.shape[0] * image.shape[1] > max_pixels:  # a header that lied
        raise InvalidInput(f"image decodes to more than the {max_pixels} pixels allowed")
    return image


def xywh2xyxy(xywh: np.ndarray) -> np.ndarray:
    """Centre-x, centre-y, width, height -> x1, y1, x2, y2."""
    out = np.empty_like(xywh)
    half = xywh[..., 2:4] / 2
    out[..., 0:2] = xywh[..., 0:2] - half
    out[..., 2:4] = xywh[..., 0:2] + half
    return out


def box_iou_one(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy ``box`` with each of ``boxes`` (M, 4)."""
    xx1 = np.maximum(box[0], boxes[:, 0])
    yy1 = np.maximum(box[1], boxes[:, 1])
    xx2 = np.minimum(box[2], boxes[:, 2])
    yy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, np.finfo(np.float32).tiny)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression (``torchvision.ops.nms`` semantics).

    Boxes are visited by decreasing score; a box is dropped when its IoU with a kept box
    is strictly greater than ``iou_threshold``.

    Returns:
        Indices of the kept boxes, by decreasing score.
    """
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        rest = order[1:]
        order = rest[box_iou_one(boxes[i], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def postprocess(
    output: np.ndarray, letterboxes: Sequence[Letterbox], cfg: PostprocessConfig
) -> list[Detections]:
    """Raw YOLO output ``(B, 4 + nc, anchors)`` -> per-image detections in original pixels.

    Mirrors ``ultralytics.utils.nms.non_max_suppression`` (confidence filter, best class or
    multi-label, class-aware NMS by coordinate offset, ``max_det``) followed by
    ``scale_boxes`` and clipping. Only the first ``len(letterboxes)`` batch rows are used.
    """
    output = np.asarray(output, dtype=np.float32)
    if output.ndim != 3 or output.shape[1] < 5:
        raise InvalidInput(f"unexpected model output shape {output.shape}, expected (B, 4 + nc, anchors)")
    nc = output.shape[1] - 4
    results = []
    for pred, lb in zip(output, letterboxes, strict=False):
        pred = pred.T  # (anchors, 4 + nc)
        cls_scores = pred[:, 4:]
        pred = pred[cls_scores.max(1) > cfg.conf]
        if not len(pred):
            results.append(_empty())
            continue
        box = xywh2xyxy(pred[:, :4])
        cls_scores = pred[:, 4:]
        if cfg.multi_label and nc > 1:
            i, j = np.nonzero(cls_scores > cfg.conf)
            box, conf, cls = box[i], cls_scores[i, j], j
        else:
            cls = cls_scores.argmax(1)
            conf = cls_scores[np.arange(len(cls)), cls]
        if len(conf) > cfg.max_nms:
            top = np.argsort(-conf, kind="stable")[: cfg.max_nms]
            box, conf, cls = box[top], conf[top], cls[top]
        offset = 0.0 if cfg.agnostic else cls[:, None].astype(np.float32) * MAX_WH
        keep = nms(box + offset, conf, cfg.iou)[: cfg.max_det]
        results.append(_scale(box[keep], conf[keep], cls[keep], lb))
    return results


def _empty() -> Detections:
    return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def _scale(box: np.ndarray, conf: np.ndarray, cls: np.ndarray, lb: Letterbox) -> Detections:
    box = box.copy()
    box[:, [0, 2]] = (box[:, [0, 2]] - lb.pad[0]) / lb.gain[0]
    box[:, [1, 3]] = (box[:, [1, 3]] - lb.pad[1]) / lb.gain[1]
    h, w = lb.orig_shape
    box[:, [0, 2]] = box[:, [0, 2]].clip(0, w)
    box[:, [1, 3]] = box[:, [1, 3]].clip(0, h)
    return Detections(box.astype(np.float32), conf.astype(np.float32), cls.astype(np.int64))


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
        """Run the network on a preprocessed NCHW float32 batch; return the raw output."""
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
        self.imgsz = _as_hw(imgsz)
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
