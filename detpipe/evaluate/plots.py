"""PNG plots of an evaluation: PR curves at IoU 0.5, per-class AP bars, the confusion matrix.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot state, no
display, bundled DejaVu fonts only) and returned as PNG bytes, so the caller decides where
they go (:func:`detpipe.io.write_bytes` or an :func:`detpipe.io.atomic_dir`)::

    png = pr_curves_png(result, names)
    write_bytes(out / "pr_curves.png", png)
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from detpipe.evaluate.cocoeval import EvalResult
from detpipe.plotting import png_bytes

log = logging.getLogger(__name__)

_LEGEND_MAX = 20  # above this many classes the PR plot has no per-class legend
_ANNOTATE_MAX = 30  # above this many classes the confusion matrix has no numbers in cells


def _png(fig: Figure) -> bytes:
    return png_bytes(fig, dpi=110, tight=True)


def pr_curves_png(result: EvalResult, names: list[str]) -> bytes:
    """Interpolated precision vs recall at IoU 0.5 (all areas, maxDets 100), one line per class.

    Args:
        result: the evaluation.
        names: class names in ``result.category_ids`` order.
    """
    p = result.params
    t = int(np.flatnonzero(np.isclose(p.iou_thrs, 0.5))[0])
    rec = np.array(p.rec_thrs)
    curves = result.precision[t, :, :, 0, -1]  # (R, K)
    present = [k for k in range(curves.shape[1]) if curves[0, k] > -1]
    fig = Figure(figsize=(8, 6))
    ax = fig.add_subplot()
    for k in present:
        ap = curves[:, k].mean()
        label = f"{names[k]} {ap:.3f}" if len(present) <= _LEGEND_MAX else None
        ax.plot(
            rec, curves[:, k], linewidth=1, alpha=0.8 if len(present) <= _LEGEND_MAX else 0.35, label=label
        )
    if present:
        mean = curves[:, present].mean(axis=1)
        ax.plot(rec, mean, color="black", linewidth=3, label=f"all classes {mean.mean():.3f} mAP@0.5")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="Recall", ylabel="Precision")
    ax.set_title("Precision-recall at IoU 0.5 (101-point interpolated, COCO)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=7 if len(present) > 8 else 9, ncol=1 + len(present) // 12)
    return _png(fig)


def per_class_ap_png(rows: list[dict[str, Any]]) -> bytes:
    """Horizontal bars of AP50-95 and AP50 per class (rows from ``per_class_metrics``), best first."""
    rows = sorted((r for r in rows if r["ap50_95"] is not None), key=lambda r: r["ap50_95"])
    fig = Figure(figsize=(8, max(2.5, 0.22 * len(rows) + 1.2)))
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    ax.barh(y + 0.2, [r["ap50"] for r in rows], height=0.4, color="#9ecae1", label="AP@0.5")
    ax.barh(y - 0.2, [r["ap50_95"] for r in rows], height=0.4, color="#3182bd", label="AP@[.5:.95]")
    ax.set_yticks(y, [r["name"] for r in rows], fontsize=8 if len(rows) > 30 else 9)
    ax.set(xlim=(0, 1), xlabel="Average precision")
    ax.set_title("Per-class AP (COCO)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right")
    return _png(fig)


def confusion_matrix_png(cm: np.ndarray, labels: list[str], iou: float, score: float) -> bytes:
    """The confusion matrix, each row normalized to sum 1 (colour) with counts in the cells.

    Args:
        cm: (K+1, K+1) counts, rows true class, columns predicted, last = background.
        labels: K class names + "background".
        iou: the IoU threshold it was built with (for the title).
        score: the score threshold it was built with (for the title).
    """
    n = len(labels)
    totals = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, totals, out=np.zeros(cm.shape), where=totals > 0)
    side = min(4 + 0.32 * n, 24)
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class (row)")
    fontsize = 9 if n <= 15 else 6
    ax.set_xticks(range(n), labels, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n), labels, fontsize=fontsize)
    ax.set(xlabel="Predicted", ylabel="True")
    ax.set_title(f"Confusion matrix (IoU >= {iou:g}, score >= {score:g})")
    if n <= _ANNOTATE_MAX:
        for i, j in zip(*np.nonzero(cm), strict=True):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if norm[i, j] > 0.6 else "black",
            )
    return _png(fig)
