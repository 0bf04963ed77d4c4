"""Raw YOLO output -> detections: confidence filter, class-aware NMS, boxes in the image's pixels.

The model's raw output is ``(B, 4 + nc, anchors)``: centre-x, centre-y, w, h, class scores.
:func:`postprocess` mirrors ``ultralytics.utils.nms.non_max_suppression`` with :func:`nms`
(numpy, the semantics of ``torchvision.ops.nms``), then maps boxes back through each image's
:class:`~detpipe.runtime.image.Letterbox`::

    detections = postprocess(raw, letterboxes, PostprocessConfig(conf=0.25))
    detections[0].boxes, detections[0].scores, detections[0].classes
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detpipe.errors import InvalidInput
from detpipe.runtime.image import Letterbox

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
