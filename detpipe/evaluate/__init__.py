"""The evaluate stage: COCO bbox metrics identical to pycocotools, per-class analysis, plots.

    from detpipe.evaluate import EvaluateConfig, run_evaluation
    metrics = run_evaluation(EvaluateConfig(out=Path("eval"), gt=Path("val.json"), dt=Path("dt.json")))
    metrics["map50_95"], metrics["per_class"][0]["ap50"]

Modules:

- :mod:`~detpipe.evaluate.cocoeval` — the core: ``evaluate_bbox`` (vectorized COCOeval).
- :mod:`~detpipe.evaluate.detections` — COCO results files as arrays, validated.
- :mod:`~detpipe.evaluate.analysis` — per-class AP, best-F1 points, confusion matrix.
- :mod:`~detpipe.evaluate.summary` — ``metrics.json`` and the printed table.
- :mod:`~detpipe.evaluate.plots` — PR curves, per-class AP bars, confusion matrix (PNG).
- :mod:`~detpipe.evaluate.predict` — the predictor interface and the ultralytics predictor.
- :mod:`~detpipe.evaluate.stage` — ``run_evaluation``: files in, files out, atomically.

Importing this package does not import matplotlib, torch or ultralytics.
"""

from __future__ import annotations

from detpipe.evaluate.cocoeval import EvalParams, EvalResult, evaluate_bbox
from detpipe.evaluate.detections import Detections, load_detections

__all__ = [
    "Detections",
    "EvalParams",
    "EvalResult",
    "EvaluateConfig",
    "evaluate_bbox",
    "load_detections",
    "run_evaluation",
]


def __getattr__(name: str):  # the stage pulls in matplotlib: import it on first use only
    if name in ("EvaluateConfig", "run_evaluation"):
        from detpipe.evaluate import stage

        return getattr(stage, name)
    raise AttributeError(name)
