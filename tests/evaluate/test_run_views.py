"""What a pipeline run shows of an evaluation: the confusion matrix as Kubeflow's
ClassificationMetrics (class names, background) and the markdown summary (overall, per-class AP)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from evaluate_cases import as_arrays
from test_analysis import _dt, _gt

from detpipe.evaluate.analysis import unique_labels
from detpipe.evaluate.cocoeval import evaluate_bbox
from detpipe.evaluate.summary import MARKDOWN_MATRIX_MAX, build_metrics, format_markdown


def _hand_checked_metrics() -> dict:
    """The confusion-matrix case of test_analysis: cat/dog, [[1, 1, 0], [1, 0, 1], [1, 2, 0]]."""
    gt = _gt(
        [
            (1, 1, [0, 0, 10, 10], 0),
            (1, 2, [20, 20, 10, 10], 0),
            (1, 1, [50, 50, 40, 40], 1),
            (2, 2, [0, 0, 20, 20], 0),
            (2, 1, [40, 40, 10, 10], 0),
        ]
    )
    dts = _dt(
        [
            (1, 1, [0, 0, 10, 10], 0.9),
            (1, 1, [20, 20, 10, 10], 0.8),
            (1, 2, [1, 1, 10, 10], 0.7),
            (1, 2, [60, 60, 10, 10], 0.6),
            (1, 1, [100, 100, 10, 10], 0.1),
            (2, 2, [30, 30, 5, 5], 0.5),
            (2, 1, [41, 40, 10, 10], 0.3),
            (2, 2, [40, 40, 10, 10], 0.95),
        ]
    )
    ds, dt = as_arrays(gt, dts)
    return build_metrics(evaluate_bbox(ds, dt), ds, dt)


def test_unique_labels_keep_order_and_number_repeats():
    assert unique_labels(["cat", "dog", "background"]) == ["cat", "dog", "background"]
    assert unique_labels(["background", "dog", "dog", "background"]) == [
        "background",
        "dog",
        "dog (2)",
        "background (2)",
    ]
    assert unique_labels(["a", "a (2)", "a"]) == ["a", "a (2)", "a (3)"]


def _table(md: str, heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first table under ``heading``."""
    lines = md.splitlines()
    start = lines.index(heading)
    rows, seen = [], False
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            seen = True
            rows.append([c.strip() for c in line.strip("|").split(" | ")])
        elif seen or line.startswith("#"):
            break
    return [r for r in rows if not set("".join(r)) <= set("-:|")]


def test_markdown_summary_has_overall_per_class_and_matrix():
    metrics = _hand_checked_metrics()
    md = format_markdown(metrics)
    assert md.startswith("# Evaluation\n\n2 images, 2 classes, 4 instances (+1 crowd), 8 detections;")
    overall = _table(md, "## Overall")
    assert overall[0] == ["metric", "value"] and len(overall) == 13
    assert overall[1] == ["AP50-95", f"{metrics['map50_95']:.3f}"]
    per_class = _table(md, "## Per class")
    assert [r[:3] for r in per_class] == [
        ["class", "instances", "detections"],
        ["cat", "2", "4"],
        ["dog", "2", "4"],
    ]
    cat = metrics["per_class"][0]
    assert per_class[1][3:5] == [f"{cat['ap50_95']:.3f}", f"{cat['ap50']:.3f}"]
    assert "1 correct, 2 wrong class, 1 missed, 3 false positives." in md
    matrix = _table(md, "## Confusion matrix")
    assert matrix == [
        ["true / predicted", "cat", "dog", "background"],
        ["cat", "1", "1", "0"],
        ["dog", "1", "0", "1"],
        ["background", "1", "2", "0"],
    ]


def test_markdown_leaves_out_a_large_matrix_but_keeps_its_totals():
    metrics = _hand_checked_metrics()
    k = MARKDOWN_MATRIX_MAX + 1
    metrics["confusion_matrix"]["labels"] = [f"c{i}" for i in range(k)] + ["background"]
    metrics["confusion_matrix"]["matrix"] = np.eye(k + 1, dtype=int).tolist()
    md = format_markdown(metrics)
    assert f"{k} correct, 0 wrong class, 0 missed, 0 false positives." in md
    assert "true / predicted" not in md


def test_evaluate_step_logs_the_confusion_matrix_and_the_summary(small_data, trained_pico, tmp_path):
    from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Markdown, Metrics, Model

    from detpipe.components.evaluate import evaluate_op

    model_dir = tmp_path / "model"
    (model_dir / "weights").mkdir(parents=True)
    shutil.copyfile(trained_pico, model_dir / "weights" / "best.pt")

    def artifact(kind, name):
        return kind(name=name, uri=str(tmp_path / name), metadata={})

    confusion, summary = artifact(ClassificationMetrics, "cm"), artifact(Markdown, "summary.md")
    metrics = artifact(Metrics, "metrics")
    evaluate_op.python_func(
        model=Model(name="model", uri=str(model_dir), metadata={}),
        dataset=Dataset(name="dataset", uri=str(small_data.root), metadata={}),
        evaluation=artifact(Artifact, "evaluation"),
        metrics=metrics,
        confusion_matrix=confusion,
        summary=summary,
        device="cpu",
    )
    cm = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())["confusion_matrix"]
    meta = confusion.metadata["confusionMatrix"]
    assert [s["displayName"] for s in meta["annotationSpecs"]] == cm["labels"]
    assert cm["labels"][-1] == "background" and len(cm["labels"]) == 3  # 2 classes + background
    assert [r["row"] for r in meta["rows"]] == cm["matrix"]
    assert sum(map(sum, cm["matrix"])) > 0
    assert confusion.metadata["iou_threshold"] == cm["iou_threshold"]
    md = Path(summary.path).read_text()
    assert md == (tmp_path / "evaluation" / "summary.md").read_text()
    assert [r[0] for r in _table(md, "## Per class")[1:]] == cm["labels"][:-1]
    assert "map50_95" in metrics.metadata
