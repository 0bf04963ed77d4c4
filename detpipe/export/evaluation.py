"""Evaluate PyTorch and exported models on the val set with detpipe's one evaluator.

A thin adapter over :mod:`detpipe.evaluate`: the ONNX and TensorRT predictors of
:mod:`detpipe.runtime` have the call shape of ``detpipe.evaluate.predict.Predictor``
(BGR images in; ``boxes``/``scores``/``classes`` per image out; ``names``), so every format
goes through the same ``predict_detections`` (class -> category mapping, rounding as
ultralytics' JSON) and the same pycocotools-exact ``evaluate_bbox`` as the PyTorch model::

    val = ValImages.from_dir("annotations/instances_val2017.json", "images/val2017")
    baseline = evaluate_predictor(pytorch_predictor(Path("best.pt"), 640), val)
    metrics = evaluate_predictor(OnnxPredictor("model.onnx", postprocess_cfg=EVAL_POSTPROCESS), val)
    metrics["mAP50-95"], metrics["mAP50"]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detpipe.data.coco import CocoDataset, load_coco
from detpipe.runtime.nms import PostprocessConfig

log = logging.getLogger(__name__)

# detpipe.evaluate's defaults for the PyTorch model (PredictConfig): conf 0.001, NMS IoU 0.7,
# 100 boxes per image. Exported formats use the same, so only the format differs.
EVAL_POSTPROCESS = PostprocessConfig(conf=0.001, iou=0.7, max_det=100)


@dataclass(frozen=True)
class ValImages:
    """The val ground truth and the image file of each of its images, in ``gt`` order."""

    gt: CocoDataset
    images: list[Path]

    @classmethod
    def from_dir(cls, annotations: str | Path, images_dir: str | Path) -> ValImages:
        """Ground truth plus an image directory holding its ``file_name``s."""
        gt = load_coco(annotations, images_dir)
        return cls(gt, [Path(images_dir) / name for name in gt.file_names])

    @classmethod
    def from_dataset_yaml(cls, data: str | Path, annotations: str | Path | None = None) -> ValImages:
        """An ultralytics dataset YAML's val split (annotations: given, or its ``val_annotations``)."""
        from detpipe.evaluate.predict import resolve_val_set

        val = resolve_val_set(data, annotations)
        gt = load_coco(val.annotations)
        return cls(gt, val.images_for(gt))


def pytorch_predictor(
    weights: Path, imgsz: tuple[int, int], device: str = "cpu", end2end: bool = False
) -> Any:
    """The PyTorch reference: the model as ``detpipe evaluate`` runs it (ultralytics predict).

    Falls back to :class:`~detpipe.runtime.predictors.TorchPredictor` (the same network behind the
    export runtime's letterbox and NMS) for a non-square ``imgsz`` (ultralytics' predict takes
    one size), a model YAML, and NMS-free (end-to-end) models, whose exports use the
    one-to-many head plus NMS: the reference then uses that head too, so the delta measures the
    format, not the head.
    """
    if imgsz[0] == imgsz[1] and weights.suffix == ".pt" and not end2end:
        from detpipe.evaluate.predict import PredictConfig, UltralyticsPredictor

        return UltralyticsPredictor(
            PredictConfig(
                weights=weights,
                imgsz=imgsz[0],
                device=device,
                conf=EVAL_POSTPROCESS.conf,
                iou=EVAL_POSTPROCESS.iou,
                max_det=EVAL_POSTPROCESS.max_det,
            )
        )
    from detpipe.runtime.predictors import TorchPredictor

    return TorchPredictor(weights, imgsz, device=device, postprocess_cfg=EVAL_POSTPROCESS)


def evaluate_predictor(predictor: Any, val: ValImages, batch: int = 8) -> dict[str, Any]:
    """Predict on every val image and evaluate.

    Returns:
        ``{"mAP50-95", "mAP50", "mAP75", "AR100", "detections"}`` (fractions in [0, 1]).
    """
    from detpipe.evaluate.stage import evaluate_predictor as evaluate

    metrics, dt = evaluate(predictor, val.gt, val.images, batch=batch, progress=True)
    return {
        "mAP50-95": metrics["map50_95"],
        "mAP50": metrics["map50"],
        "mAP75": metrics["map75"],
        "AR100": metrics["ar100"],
        "detections": len(dt),
    }
