"""The evaluate stage: inputs -> COCO metrics, per-class analysis, plots; written atomically.

Two ways in, one evaluator::

    # detections already exist (any model, any runtime)
    run_evaluation(EvaluateConfig(out=Path("eval"), gt=Path("val.json"), dt=Path("dt.json")))

    # predict with ultralytics on the val split of a dataset YAML first
    run_evaluation(EvaluateConfig(out=Path("eval"), weights=Path("best.pt"), data=Path("dataset.yaml")))

    # another runtime (the export stage): any Predictor, same evaluator
    metrics, dt = evaluate_predictor(OnnxPredictor("model.onnx"), gt, images)

``out`` is a directory (replaced atomically) holding ``metrics.json``, ``summary.txt``
(the table printed by the CLI), ``summary.md`` (overall and per-class AP, the confusion
matrix: what the pipeline shows), ``pr_curves.png``, ``per_class_ap.png``,
``confusion_matrix.png`` and, when the stage predicted, ``detections.json``. An ``out``
ending in ``.json`` is the metrics file itself: then only it is written (plus
``<stem>.detections.json`` beside it when the stage predicted), no plots.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detpipe.data.coco import CocoDataset, load_coco
from detpipe.device import parse_device, resolve_device
from detpipe.errors import InvalidInput
from detpipe.evaluate.analysis import DEFAULT_CM_IOU, DEFAULT_CM_SCORE
from detpipe.evaluate.cocoeval import EvalResult, evaluate_bbox
from detpipe.evaluate.detections import Detections, load_detections
from detpipe.evaluate.predict import (
    BOX_DECIMALS,
    DEFAULT_IMGSZ,
    SCORE_DECIMALS,
    PredictConfig,
    Predictor,
    UltralyticsPredictor,
    predict_detections,
    resolve_val_set,
)
from detpipe.evaluate.summary import build_metrics, format_markdown, format_table
from detpipe.io import atomic_dir, write_bytes, write_json, write_text

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    """What to evaluate and where the results go.

    Attributes:
        out: output directory, or a ``*.json`` metrics file (see the module docstring).
        gt: val COCO json; optional with ``data`` when the YAML has ``val_annotations``.
        dt: COCO results json (mode 1, with ``gt``).
        weights: model to predict with (mode 2, with ``data``).
        data: ultralytics dataset YAML whose ``val`` split is predicted.
        imgsz: inference size (mode 2); None: the size the weights were trained at (what
            export uses, :func:`train_imgsz`), else 640.
        device, batch, conf, nms_iou, max_det: prediction settings (mode 2).
        cm_iou, cm_score: confusion-matrix IoU and score thresholds.
        plots: write the PNG plots (directory output only).
        progress: show progress bars.
    """

    out: Path
    gt: Path | None = None
    dt: Path | None = None
    weights: Path | None = None
    data: Path | None = None
    imgsz: int | None = None
    device: str = "auto"
    batch: int = 16
    conf: float = 0.001
    nms_iou: float = 0.7
    max_det: int = 100
    cm_iou: float = DEFAULT_CM_IOU
    cm_score: float = DEFAULT_CM_SCORE
    plots: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        parse_device(self.device)  # a malformed --device fails before anything is loaded
        if self.dt is not None and (self.weights is not None or self.data is not None):
            raise InvalidInput("give either --dt (with --gt) or --weights with --data, not both")
        if self.dt is None and (self.weights is None or self.data is None):
            raise InvalidInput("nothing to evaluate: give --gt and --dt, or --weights and --data")
        if self.dt is not None and self.gt is None:
            raise InvalidInput("--dt needs --gt, the ground truth it is evaluated against")
        if not (0 < self.cm_iou <= 1 and 0 <= self.cm_score <= 1):
            raise InvalidInput("confusion-matrix thresholds must lie in (0, 1] (IoU) and [0, 1] (score)")
        out = Path(self.out)
        if not self.metrics_file and out.exists() and not out.is_dir():
            raise InvalidInput(
                f"{out}: exists and is not a directory (use a name ending in .json for a file)"
            )
        if self.metrics_file and out.is_dir():
            raise InvalidInput(f"{out}: is a directory, expected a .json file name")

    @property
    def metrics_file(self) -> bool:
        """True when ``out`` names the metrics file rather than an output directory."""
        return Path(self.out).suffix.lower() == ".json"


def train_imgsz(weights: Path) -> int:
    """The size ``weights`` were trained at, read as the export stage reads it, else 640.

    Only ``.pt`` checkpoints record it (``train_args.imgsz``); other formats get 640.

    Raises:
        InvalidInput: a ``.pt`` file that is not an ultralytics checkpoint.
    """
    if Path(weights).suffix.lower() != ".pt":
        return DEFAULT_IMGSZ
    from detpipe.export.model import load_detection_model

    return load_detection_model(weights).train_imgsz or DEFAULT_IMGSZ


def evaluate_detections(
    gt: CocoDataset,
    dt: Detections,
    cm_iou: float = DEFAULT_CM_IOU,
    cm_score: float = DEFAULT_CM_SCORE,
    inputs: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], EvalResult]:
    """COCO evaluation plus the per-class analysis: the ``metrics.json`` document and the raw result."""
    result = evaluate_bbox(gt, dt)
    return build_metrics(result, gt, dt, cm_iou, cm_score, inputs), result


def evaluate_predictor(
    predictor: Predictor,
    gt: CocoDataset,
    images: Sequence[Path],
    batch: int = 16,
    class_names: Sequence[str] | None = None,
    inputs: dict[str, Any] | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], Detections]:
    """Predict on ``images`` (one per ``gt`` image, in order) and evaluate: (metrics, detections)."""
    dt = predict_detections(predictor, images, gt, batch=batch, class_names=class_names, progress=progress)
    metrics, _ = evaluate_detections(gt, dt, inputs=inputs)
    return metrics, dt


def run_evaluation(cfg: EvaluateConfig) -> dict[str, Any]:
    """Run the stage: load or predict detections, evaluate, write every output atomically.

    Returns:
        The metrics document (what ``metrics.json`` holds).

    Raises:
        InvalidInput: unusable inputs (bad JSON, unknown ids, missing files); nothing is written.
        ValidationFailed: the ground truth has problems; nothing is written.
    """
    predicted = cfg.dt is None
    if predicted:
        assert cfg.weights is not None and cfg.data is not None  # guaranteed by EvaluateConfig
        val = resolve_val_set(cfg.data, cfg.gt)
        gt = load_coco(val.annotations)
        images = val.images_for(gt)
        resolve_device(cfg.device)  # a device that is not here: exit 3 before the weights are read
        imgsz = cfg.imgsz if cfg.imgsz is not None else train_imgsz(cfg.weights)
        if cfg.imgsz is None:
            log.info("imgsz %d: the size %s was trained at (--imgsz overrides)", imgsz, cfg.weights)
        predictor = UltralyticsPredictor(
            PredictConfig(cfg.weights, imgsz, cfg.device, cfg.conf, cfg.nms_iou, cfg.max_det)
        )
        inputs = {"gt": str(val.annotations), "weights": str(cfg.weights), "data": str(cfg.data)}
        inputs["predict"] = {
            "imgsz": imgsz,
            "conf": cfg.conf,
            "iou": cfg.nms_iou,
            "max_det": cfg.max_det,
            "device": predictor.device,
        }
        dt = predict_detections(
            predictor, images, gt, cfg.batch, class_names=val.names, progress=cfg.progress
        )
    else:
        assert cfg.gt is not None and cfg.dt is not None
        gt = load_coco(cfg.gt)
        dt = load_detections(cfg.dt, gt)
        inputs = {"gt": str(cfg.gt), "dt": str(cfg.dt)}
    log.info("evaluating %d detections on %d images, %d categories", len(dt), gt.num_images, gt.num_classes)
    metrics, result = evaluate_detections(gt, dt, cfg.cm_iou, cfg.cm_score, inputs)
    write_outputs(cfg, metrics, result, dt if predicted else None)
    return metrics


def write_outputs(
    cfg: EvaluateConfig, metrics: dict[str, Any], result: EvalResult, detections: Detections | None
) -> Path:
    """Write the metrics (and plots, detections) to ``cfg.out``; returns the path written."""
    out = Path(cfg.out)
    records = None if detections is None else detections.to_records(BOX_DECIMALS, SCORE_DECIMALS)
    if cfg.metrics_file:
        if records is not None:
            write_json(out.with_name(f"{out.stem}.detections.json"), records, indent=None)
        write_json(out, metrics)
        return out
    with atomic_dir(out) as tmp:
        write_json(tmp / "metrics.json", metrics)
        write_text(tmp / "summary.txt", format_table(metrics) + "\n")
        write_text(tmp / "summary.md", format_markdown(metrics))
        if records is not None:
            write_json(tmp / "detections.json", records, indent=None)
        if cfg.plots:  # matplotlib is imported only here: it is slow to import
            from detpipe.evaluate.plots import confusion_matrix_png, per_class_ap_png, pr_curves_png

            names = [r["name"] for r in metrics["per_class"]]
            cm = metrics["confusion_matrix"]
            write_bytes(tmp / "pr_curves.png", pr_curves_png(result, names))
            write_bytes(tmp / "per_class_ap.png", per_class_ap_png(metrics["per_class"]))
            cm_png = confusion_matrix_png(
                np.array(cm["matrix"]), cm["labels"], cm["iou_threshold"], cm["score_threshold"]
            )
            write_bytes(tmp / "confusion_matrix.png", cm_png)
    return out
