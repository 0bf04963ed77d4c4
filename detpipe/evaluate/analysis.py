"""Per-class metrics, best-F1 operating points and a confusion matrix, beyond COCO's 12 numbers.

    result = evaluate_bbox(gt, dt)
    rows = per_class_metrics(result, gt, dt)           # one dict per category, sorted by id
    cm = confusion_matrix(gt, dt, result.category_ids, iou_threshold=0.5, score_threshold=0.25)

Definitions (also written into ``metrics.json``):

- Per-class AP (``ap50_95``, ``ap50``, ``ap75``, ``ap_small|medium|large``) and ``ar100``
  average COCOeval's precision/recall arrays for one category exactly as ``summarize()``
  averages them for all (maxDets 100, entries > -1). A category without (non-crowd, in
  range) ground truth gets ``null``.
- Best F1 (``best_f1``): on the category's detections at IoU 0.5, all areas, maxDets 100
  (COCO's AP50 matching: crowd and ignored matches count neither way), ranked by score.
  Each distinct score is a candidate threshold (keep detections with score >= s);
  precision = TP / (TP + FP), recall = TP / ground truth, F1 = 2PR / (P + R). The
  threshold with the highest F1 wins (ties: the higher threshold). No detections: zeros.
- Confusion matrix: rows are the ground-truth class, columns the predicted class, both in
  category-id order, plus a last "background" row and column. Per image, detections with
  score >= ``score_threshold`` (any class) and non-crowd ground truth (any class) are
  paired one-to-one, greedily by IoU (highest first; ties: higher score, then file
  order), when IoU >= ``iou_threshold``. A pair adds 1 at [true class, predicted class];
  an unpaired ground truth adds 1 at [class, background] (missed); an unpaired
  detection adds 1 at [background, class] (false positive) unless it lies on a crowd
  region (intersection / detection area >= ``iou_threshold``), where it is not counted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from detpipe.data.coco import CocoDataset
from detpipe.evaluate.cocoeval import EvalResult, box_iou
from detpipe.evaluate.detections import Detections

log = logging.getLogger(__name__)

DEFAULT_CM_IOU = 0.5
DEFAULT_CM_SCORE = 0.25
"""Confusion-matrix score threshold: ultralytics' default for its confusion matrix."""


def _mean_valid(values: np.ndarray) -> float | None:
    valid = values[values > -1]
    return float(np.mean(valid)) if len(valid) else None


def _index(values: tuple, wanted: Any, what: str) -> int:
    for i, v in enumerate(values):
        if v == wanted:
            return i
    raise ValueError(f"evaluation parameters have no {what} {wanted!r}")


def best_f1(result: EvalResult, k: int, iou: float = 0.5) -> dict[str, float | None]:
    """Precision, recall, F1 and score threshold at the best F1 of category index ``k``.

    See the module docstring for the definition. ``k`` indexes ``result.category_ids``.
    """
    p, m = result.params, result.matches
    a = _index(p.area_labels, "all", "area range")
    t = int(np.flatnonzero(np.isclose(p.iou_thrs, iou))[0])
    npig = int(result.num_gt[k, a])
    if npig == 0:
        return {"precision": None, "recall": None, "f1": None, "score": None}
    b0, b1 = int(m.category_bounds[k]), int(m.category_bounds[k + 1])
    counted = ~m.ignored[a, t, b0:b1]
    scores = m.scores[b0:b1][counted]
    hits = m.hit[a, t, b0:b1][counted]
    if not len(scores):
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "score": None}
    tp = np.cumsum(hits)
    n = np.arange(1, len(hits) + 1)
    last_of_score = np.r_[scores[1:] != scores[:-1], True]  # a threshold keeps all equal scores
    tp, n, thr = tp[last_of_score], n[last_of_score], scores[last_of_score]
    precision = tp / n
    recall = tp / npig
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    i = int(np.argmax(f1))
    return {
        "precision": float(precision[i]),
        "recall": float(recall[i]),
        "f1": float(f1[i]),
        "score": float(thr[i]),
    }


def per_class_metrics(result: EvalResult, gt: CocoDataset, dt: Detections) -> list[dict[str, Any]]:
    """One row per category (sorted by id): counts, AP/AR as COCOeval averages them, best F1.

    Args:
        result: the evaluation.
        gt: the ground truth it was computed on (for names and instance counts).
        dt: the detections it was computed on (for detection counts).
    """
    p = result.params
    prec, rec = result.precision, result.recall
    m = len(p.max_dets) - 1
    names = dict(zip(gt.category_ids.tolist(), gt.category_names, strict=True))
    cat_of_ann = gt.category_ids[gt.ann_category]
    instances = dict(zip(*np.unique(cat_of_ann[~gt.ann_iscrowd], return_counts=True), strict=True))
    crowd = dict(zip(*np.unique(cat_of_ann[gt.ann_iscrowd], return_counts=True), strict=True))
    dets = dict(zip(*np.unique(dt.category_ids, return_counts=True), strict=True))
    iou = np.array(p.iou_thrs)
    t50, t75 = np.flatnonzero(iou == 0.5), np.flatnonzero(iou == 0.75)
    area = {label: i for i, label in enumerate(p.area_labels)}
    rows = []
    for k, cid in enumerate(result.category_ids.tolist()):
        row: dict[str, Any] = {
            "category_id": cid,
            "name": names[cid],
            "instances": int(instances.get(cid, 0)),
            "crowd": int(crowd.get(cid, 0)),
            "detections": int(dets.get(cid, 0)),
            "ap50_95": _mean_valid(prec[:, :, k, area["all"], m]),
            "ap50": _mean_valid(prec[t50, :, k, area["all"], m]),
            "ap75": _mean_valid(prec[t75, :, k, area["all"], m]),
        }
        for label in ("small", "medium", "large"):
            row[f"ap_{label}"] = _mean_valid(prec[:, :, k, area[label], m]) if label in area else None
        row["ar100"] = _mean_valid(rec[:, k, area["all"], m])
        row["best_f1"] = best_f1(result, k)
        rows.append(row)
    return rows


def _pairs_by_image(img_a: np.ndarray, img_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j) with ``img_a[i] == img_b[j]``."""
    order = np.argsort(img_b, kind="stable")
    sorted_b = img_b[order]
    start = np.searchsorted(sorted_b, img_a, side="left")
    count = np.searchsorted(sorted_b, img_a, side="right") - start
    i = np.repeat(np.arange(len(img_a)), count)
    offset = np.arange(len(i)) - np.repeat(np.cumsum(count) - count, count)
    return i, order[np.repeat(start, count) + offset]


def confusion_matrix(
    gt: CocoDataset,
    dt: Detections,
    category_ids: np.ndarray,
    iou_threshold: float = DEFAULT_CM_IOU,
    score_threshold: float = DEFAULT_CM_SCORE,
) -> np.ndarray:
    """(K+1, K+1) int64 counts: rows true class, columns predicted class, last = background.

    See the module docstring for the matching rule. ``category_ids`` fixes the class order.
    """
    n_cls = len(category_ids)
    cm = np.zeros((n_cls + 1, n_cls + 1), np.int64)
    g_cls = np.searchsorted(category_ids, gt.category_ids[gt.ann_category])
    g_img = gt.image_ids[gt.ann_image]
    real = ~gt.ann_iscrowd
    keep = dt.scores >= score_threshold
    d_box, d_img, d_score = dt.bboxes[keep], dt.image_ids[keep], dt.scores[keep]
    d_cls = np.searchsorted(category_ids, dt.category_ids[keep])

    gi = np.flatnonzero(real)
    di, gj = _pairs_by_image(d_img, g_img[gi])
    gj = gi[gj]
    iou = box_iou(d_box[di], gt.ann_bbox[gj], np.zeros(len(di), bool))
    ok = iou >= iou_threshold
    di, gj, iou = di[ok], gj[ok], iou[ok]
    order = np.lexsort((gj, di, -d_score[di], -iou))
    d_used = np.zeros(len(d_box), bool)
    g_used = np.zeros(len(g_cls), bool)
    pairs = []
    for d, g in zip(di[order].tolist(), gj[order].tolist(), strict=True):
        if not d_used[d] and not g_used[g]:
            d_used[d] = g_used[g] = True
            pairs.append((g, d))
    if pairs:
        pg, pd = np.array(pairs).T
        np.add.at(cm, (g_cls[pg], d_cls[pd]), 1)
    np.add.at(cm, (g_cls[real & ~g_used], n_cls), 1)

    free = np.flatnonzero(~d_used)
    ci = np.flatnonzero(gt.ann_iscrowd)
    on_crowd = np.zeros(len(d_box), bool)
    if len(ci) and len(free):
        fd, cj = _pairs_by_image(d_img[free], g_img[ci])
        cover = box_iou(d_box[free[fd]], gt.ann_bbox[ci[cj]], np.ones(len(fd), bool))
        on_crowd[free[fd[cover >= iou_threshold]]] = True
    np.add.at(cm, (n_cls, d_cls[~d_used & ~on_crowd]), 1)
    return cm


def confusion_matrix_record(
    cm: np.ndarray, names: list[str], iou_threshold: float, score_threshold: float
) -> dict[str, Any]:
    """The confusion matrix as it is written into ``metrics.json`` (self-describing)."""
    return {
        "iou_threshold": iou_threshold,
        "score_threshold": score_threshold,
        "rows": "ground-truth class; last row 'background' = unmatched detections (false positives)",
        "columns": "predicted class; last column 'background' = unmatched ground truth (missed)",
        "labels": [*names, "background"],
        "matrix": cm.tolist(),
    }


def unique_labels(labels: Sequence[str]) -> list[str]:
    """``labels`` with repeats made distinct (``dog``, ``dog (2)``), order kept.

    Viewers that address a confusion matrix's cells by label (Kubeflow's
    ``ClassificationMetrics``) need every label once; COCO does not promise unique category
    names, and a class may be called ``background`` like the matrix's last row.
    """
    seen: set[str] = set()
    out = []
    for label in labels:
        name, n = label, 1
        while name in seen:
            n += 1
            name = f"{label} ({n})"
        seen.add(name)
        out.append(name)
    return out
