"""Assemble ``metrics.json`` from an evaluation, and render it as a readable table and as markdown.

    metrics = build_metrics(result, gt, dt)
    print(format_table(metrics))
    Path("summary.md").write_text(format_markdown(metrics))   # overall and per-class AP, markdown

``metrics.json`` layout::

    map50_95 map50 map75 map_small map_medium map_large    the 12 COCO stats, by name
    ar1 ar10 ar100 ar_small ar_medium ar_large             (-1 where COCOeval gives -1)
    coco_stats        the same 12 numbers in COCOeval.stats order
    per_class         one object per category (see detpipe.evaluate.analysis)
    confusion_matrix  labels, thresholds, row/column meaning and the counts
    counts, params, inputs
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from detpipe.data.coco import CocoDataset
from detpipe.evaluate.analysis import (
    DEFAULT_CM_IOU,
    DEFAULT_CM_SCORE,
    confusion_matrix,
    confusion_matrix_record,
    per_class_metrics,
)
from detpipe.evaluate.cocoeval import EvalResult
from detpipe.evaluate.detections import Detections

log = logging.getLogger(__name__)

STAT_NAMES = (
    "map50_95",
    "map50",
    "map75",
    "map_small",
    "map_medium",
    "map_large",
    "ar1",
    "ar10",
    "ar100",
    "ar_small",
    "ar_medium",
    "ar_large",
)
"""Names of COCOeval.stats[0..11], in order."""

_COCO_LINES = (
    ("Average Precision", "0.50:0.95", "all", 100),
    ("Average Precision", "0.50", "all", 100),
    ("Average Precision", "0.75", "all", 100),
    ("Average Precision", "0.50:0.95", "small", 100),
    ("Average Precision", "0.50:0.95", "medium", 100),
    ("Average Precision", "0.50:0.95", "large", 100),
    ("Average Recall", "0.50:0.95", "all", 1),
    ("Average Recall", "0.50:0.95", "all", 10),
    ("Average Recall", "0.50:0.95", "all", 100),
    ("Average Recall", "0.50:0.95", "small", 100),
    ("Average Recall", "0.50:0.95", "medium", 100),
    ("Average Recall", "0.50:0.95", "large", 100),
)


def build_metrics(
    result: EvalResult,
    gt: CocoDataset,
    dt: Detections,
    cm_iou: float = DEFAULT_CM_IOU,
    cm_score: float = DEFAULT_CM_SCORE,
    inputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``metrics.json`` document (plain JSON types only).

    Args:
        result: the evaluation of ``dt`` against ``gt``.
        gt: the ground truth.
        dt: the detections.
        cm_iou: confusion-matrix IoU threshold.
        cm_score: confusion-matrix score threshold.
        inputs: where gt/dt came from (paths, weights), copied into the document.
    """
    stats = [float(s) for s in result.stats]
    names = dict(zip(gt.category_ids.tolist(), gt.category_names, strict=True))
    cm = confusion_matrix(gt, dt, result.category_ids, cm_iou, cm_score)
    p = result.params
    doc: dict[str, Any] = dict(zip(STAT_NAMES, stats, strict=True))
    doc["coco_stats"] = stats
    doc["per_class"] = per_class_metrics(result, gt, dt)
    doc["confusion_matrix"] = confusion_matrix_record(
        cm, [names[c] for c in result.category_ids.tolist()], cm_iou, cm_score
    )
    doc["counts"] = {
        "images": gt.num_images,
        "categories": gt.num_classes,
        "instances": int((~gt.ann_iscrowd).sum()),
        "crowd": int(gt.ann_iscrowd.sum()),
        "detections": len(dt),
        "evaluated_detections": len(result.matches.scores),
    }
    doc["params"] = {
        "iou_type": "bbox",
        "iou_thresholds": [round(t, 4) for t in p.iou_thrs],
        "recall_thresholds": len(p.rec_thrs),
        "max_dets": list(p.max_dets),
        "area_ranges": {label: list(r) for label, r in zip(p.area_labels, p.area_ranges, strict=True)},
    }
    doc["inputs"] = inputs or {}
    return doc


def _fmt(v: float | None, width: int = 6) -> str:
    return f"{'-':>{width}}" if v is None or v < 0 else f"{v:>{width}.3f}"


def format_table(metrics: dict[str, Any]) -> str:
    """COCO's 12-line summary, then one line per class (AP, AP50, AP75, APs/m/l, AR100, best-F1 P/R)."""
    lines = []
    for (title, iou, area, md), value in zip(_COCO_LINES, metrics["coco_stats"], strict=True):
        kind = "(AP)" if title.startswith("Average P") else "(AR)"
        lines.append(
            f" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6s} | maxDets={md:>3d} ] = {value:0.3f}"
        )
    rows = metrics["per_class"]
    width = max([len("class"), *(len(r["name"]) for r in rows)])
    head = (
        f"{'class':<{width}} {'inst':>6} {'dets':>7} {'AP':>6} {'AP50':>6} {'AP75':>6} {'APs':>6} {'APm':>6} "
        f"{'APl':>6} {'AR100':>6} {'P@F1':>6} {'R@F1':>6} {'F1':>6} {'score':>6}"
    )
    lines += ["", head, "-" * len(head)]
    for r in rows:
        f1 = r["best_f1"]
        values = [r[k] for k in ("ap50_95", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar100")]
        values += [f1[k] for k in ("precision", "recall", "f1", "score")]
        lines.append(
            f"{r['name']:<{width}} {r['instances']:>6} {r['detections']:>7} " + " ".join(map(_fmt, values))
        )
    lines.append("-" * len(head))
    c = metrics["counts"]
    lines.append(
        f"{'all':<{width}} {c['instances']:>6} {c['detections']:>7} {_fmt(metrics['map50_95'])} "
        f"{_fmt(metrics['map50'])} {_fmt(metrics['map75'])} {_fmt(metrics['map_small'])} "
        f"{_fmt(metrics['map_medium'])} {_fmt(metrics['map_large'])} {_fmt(metrics['ar100'])}"
    )
    cm, n = metrics["confusion_matrix"], confusion_counts(metrics)
    lines.append(
        f"confusion matrix (IoU >= {cm['iou_threshold']:g}, score >= {cm['score_threshold']:g}): "
        f"{n['correct']} correct, {n['wrong_class']} wrong class, "
        f"{n['missed']} missed, {n['false_positives']} false positives"
    )
    return "\n".join(lines)


MARKDOWN_MATRIX_MAX = 12
"""Classes up to which the markdown summary also shows the confusion matrix as a table."""


def _md(v: float | None) -> str:
    return "—" if v is None or v < 0 else f"{v:.3f}"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def confusion_counts(metrics: dict[str, Any]) -> dict[str, int]:
    """The confusion matrix summed up: correct, wrong class, missed, false positives."""
    matrix = np.array(metrics["confusion_matrix"]["matrix"])
    correct = int(np.trace(matrix[:-1, :-1]))
    return {
        "correct": correct,
        "wrong_class": int(matrix[:-1, :-1].sum()) - correct,
        "missed": int(matrix[:-1, -1].sum()),
        "false_positives": int(matrix[-1, :-1].sum()),
    }


def format_markdown(metrics: dict[str, Any]) -> str:
    """The evaluation as markdown: overall COCO metrics, per-class AP, the confusion matrix.

    What the pipeline's evaluate step shows as its ``Markdown`` artifact (and ``summary.md``):
    the 12 COCO numbers, one row per class (instances, detections, AP, AP50, AP75, AR100 and
    the best-F1 operating point), then the confusion matrix's totals, with the matrix itself
    for up to :data:`MARKDOWN_MATRIX_MAX` classes.
    """
    c = metrics["counts"]
    crowd = f" (+{c['crowd']} crowd)" if c["crowd"] else ""
    out = [
        "# Evaluation",
        "",
        f"{c['images']} images, {c['categories']} classes, {c['instances']} instances{crowd}, "
        f"{c['detections']} detections; COCO bbox metrics (pycocotools-exact).",
        "",
        "## Overall",
        "",
        "| metric | value |",
        "|---|--:|",
    ]
    labels = ("AP50-95", "AP50", "AP75", "AP small", "AP medium", "AP large")
    labels += ("AR1", "AR10", "AR100", "AR small", "AR medium", "AR large")
    out += [_md_row([label, _md(v)]) for label, v in zip(labels, metrics["coco_stats"], strict=True)]
    out += [
        "",
        "## Per class",
        "",
        "| class | instances | detections | AP50-95 | AP50 | AP75 | AR100 | P@F1 | R@F1 | F1 | score |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in metrics["per_class"]:
        f1 = r["best_f1"]
        values = [r[k] for k in ("ap50_95", "ap50", "ap75", "ar100")]
        values += [f1[k] for k in ("precision", "recall", "f1", "score")]
        out.append(_md_row([r["name"], str(r["instances"]), str(r["detections"]), *map(_md, values)]))
    cm = metrics["confusion_matrix"]
    n = confusion_counts(metrics)
    out += [
        "",
        "## Confusion matrix",
        "",
        f"Detections with score ≥ {cm['score_threshold']:g} matched one-to-one to ground truth at "
        f"IoU ≥ {cm['iou_threshold']:g}: {n['correct']} correct, {n['wrong_class']} wrong class, "
        f"{n['missed']} missed, {n['false_positives']} false positives.",
    ]
    if len(cm["labels"]) - 1 <= MARKDOWN_MATRIX_MAX:
        out += [
            "",
            "Rows: ground truth; columns: predicted (background row: false positives, column: missed).",
            "",
            _md_row(["true / predicted", *cm["labels"]]),
            "|---|" + "--:|" * len(cm["labels"]),
        ]
        out += [
            _md_row([label, *map(str, row)]) for label, row in zip(cm["labels"], cm["matrix"], strict=True)
        ]
    return "\n".join(out) + "\n"
