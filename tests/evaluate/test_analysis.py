"""Confusion matrix, best-F1 points and plots on tiny hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest
from evaluate_cases import as_arrays, random_case

from detpipe.evaluate.analysis import best_f1, confusion_matrix, per_class_metrics
from detpipe.evaluate.cocoeval import evaluate_bbox
from detpipe.evaluate.plots import confusion_matrix_png, per_class_ap_png, pr_curves_png
from detpipe.evaluate.summary import build_metrics, format_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _gt(anns, images=(1, 2)):
    return {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 200} for i in images],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {
                "id": n + 1,
                "image_id": img,
                "category_id": c,
                "bbox": box,
                "area": box[2] * box[3],
                "iscrowd": crowd,
            }
            for n, (img, c, box, crowd) in enumerate(anns)
        ],
    }


def _dt(rows):
    return [{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s in rows]


def test_confusion_matrix_hand_checked():
    gt = _gt(
        [
            (1, 1, [0, 0, 10, 10], 0),  # A cat
            (1, 2, [20, 20, 10, 10], 0),  # B dog
            (1, 1, [50, 50, 40, 40], 1),  # C crowd (cat)
            (2, 2, [0, 0, 20, 20], 0),  # D dog
            (2, 1, [40, 40, 10, 10], 0),  # E cat
        ]
    )
    dts = _dt(
        [
            (1, 1, [0, 0, 10, 10], 0.9),  # d1 cat on A: correct
            (1, 1, [20, 20, 10, 10], 0.8),  # d2 cat on B (a dog): wrong class
            (1, 2, [1, 1, 10, 10], 0.7),  # d3 dog, IoU 0.68 with A but A is taken: false positive
            (1, 2, [60, 60, 10, 10], 0.6),  # d4 dog inside the crowd region: not counted
            (1, 1, [100, 100, 10, 10], 0.1),  # d5 below the score threshold: not counted
            (2, 2, [30, 30, 5, 5], 0.5),  # d6 dog on nothing: false positive; D is missed
            (2, 1, [41, 40, 10, 10], 0.3),  # d7 cat on E, IoU 0.82 ...
            (2, 2, [40, 40, 10, 10], 0.95),  # d8 dog on E, IoU 1.0: higher IoU wins -> E seen as dog
        ]
    )
    ds, dt = as_arrays(gt, dts)
    cm = confusion_matrix(ds, dt, np.array([1, 2]), iou_threshold=0.5, score_threshold=0.25)
    #                 pred: cat dog bg
    assert cm.tolist() == [
        [1, 1, 0],  # true cat: A -> cat, E -> dog
        [1, 0, 1],  # true dog: B -> cat, D missed
        [1, 2, 0],  # background: d7 (cat), d3 and d6 (dog)
    ]
    # a lower score threshold lets d5 in as one more false-positive cat
    cm = confusion_matrix(ds, dt, np.array([1, 2]), score_threshold=0.05)
    assert cm[2].tolist() == [2, 2, 0]
    # a stricter IoU leaves d7/d8 vs E at 1.0 only, and d3 never qualified
    cm = confusion_matrix(ds, dt, np.array([1, 2]), iou_threshold=0.9, score_threshold=0.25)
    assert cm.tolist() == [[1, 1, 0], [1, 0, 1], [1, 2, 0]]


def _f1_case(scores_fp_at_05: float):
    gts = [(1, 1, [x, 0, 10, 10], 0) for x in (0, 20, 40, 60)]
    gts.append((1, 2, [150, 150, 10, 10], 0))
    tp = lambda x, s: (1, 1, [x, 0, 10, 10], s)  # noqa: E731
    fp = lambda y, s: (1, 1, [100, y, 10, 10], s)  # noqa: E731
    # ranked: TP .9, FP .8, TP .7, TP .6, FP (.5 or tied .6), FP .4, TP .3
    rows = [
        tp(0, 0.9),
        fp(0, 0.8),
        tp(20, 0.7),
        tp(40, 0.6),
        fp(20, scores_fp_at_05),
        fp(40, 0.4),
        tp(60, 0.3),
    ]
    gt = _gt(gts, images=(1,))
    ds, dt = as_arrays(gt, _dt(rows))
    return evaluate_bbox(ds, dt), ds, dt


def test_best_f1_hand_checked():
    result, _, _ = _f1_case(0.5)
    # cumulative (P, R) at each threshold: .9 (1, .25) .8 (.5, .25) .7 (.667, .5) .6 (.75, .75) ...
    # .3 (4/7, 1) -> F1 .4 .333 .571 .75 .667 .6 .727: best at score 0.6
    assert best_f1(result, 0) == {"precision": 0.75, "recall": 0.75, "f1": 0.75, "score": 0.6}
    # 'dog' has ground truth but no detection
    assert best_f1(result, 1) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "score": None}


def test_best_f1_thresholds_keep_tied_scores_together():
    result, _, _ = _f1_case(0.6)  # the FP now ties with the TP at 0.6: threshold 0.6 keeps both
    got = best_f1(result, 0)
    assert got["score"] == 0.3 and got["recall"] == 1.0
    assert got["precision"] == pytest.approx(4 / 7) and got["f1"] == pytest.approx(8 / 11)


def test_per_class_rows_and_table():
    result, ds, dt = _f1_case(0.5)
    rows = per_class_metrics(result, ds, dt)
    assert [(r["name"], r["instances"], r["detections"]) for r in rows] == [("cat", 4, 7), ("dog", 1, 0)]
    assert rows[1]["ap50_95"] == 0.0 and rows[1]["ap_large"] is None  # no large ground truth
    metrics = build_metrics(result, ds, dt)
    table = format_table(metrics)
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in table
    cat_line = next(line for line in table.splitlines() if line.startswith("cat "))
    assert cat_line.split()[-4:] == ["0.750", "0.750", "0.750", "0.600"]


def test_plots_are_pngs():
    gt, dts = random_case(0)
    ds, dt = as_arrays(gt, dts)
    result = evaluate_bbox(ds, dt)
    metrics = build_metrics(result, ds, dt)
    names = [r["name"] for r in metrics["per_class"]]
    cm = metrics["confusion_matrix"]
    for png in (
        pr_curves_png(result, names),
        per_class_ap_png(metrics["per_class"]),
        confusion_matrix_png(np.array(cm["matrix"]), cm["labels"], 0.5, 0.25),
    ):
        assert png.startswith(PNG_MAGIC) and len(png) > 5000
    assert cm["labels"] == [*names, "background"]
    assert np.array(cm["matrix"]).shape == (len(names) + 1, len(names) + 1)
