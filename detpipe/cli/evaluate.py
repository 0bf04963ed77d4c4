"""``detpipe evaluate``: COCO bbox metrics (identical to pycocotools) plus per-class analysis."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from detpipe.cli.options import existing_file, positive_int
from detpipe.device import DEVICE_FORMS

log = logging.getLogger(__name__)

DESCRIPTION = """\
Evaluate detections with COCO's bbox metrics, numerically identical to pycocotools'
COCOeval (the 12 stats: AP@[.5:.95], AP50, AP75, AP small/medium/large, AR@1/10/100, AR
small/medium/large) and several times faster, plus per-class AP50-95/AP50/AP75/APs/m/l,
precision/recall at each class's best F1 (IoU 0.5), a confusion matrix and plots.

Two modes:
  --gt VAL.json --dt DETECTIONS.json
      evaluate a COCO results file ([{image_id, category_id, bbox [x,y,w,h], score}, ...]).
  --weights MODEL.pt --data DATASET.yaml [--gt VAL.json]
      first run ultralytics YOLO(weights).predict on the YAML's val images (batched, at
      the size the weights were trained at unless --imgsz, conf 0.001, max 100 boxes per
      image, GPU 0 when present unless --device), write detections.json, then evaluate.
      Class i (the YAML's names[i]) is the i-th category of the val COCO json sorted by
      id. The val json is --gt, or else the YAML's 'val_annotations' key (absolute, or
      relative to the YAML's 'path').

Output (--out):
  DIR        replaced atomically: metrics.json, summary.txt (the table printed here),
             pr_curves.png, per_class_ap.png, confusion_matrix.png, and detections.json
             when predicting.
  FILE.json  only the metrics (and <stem>.detections.json beside it when predicting),
             no plots.

metrics.json: map50_95, map50, map75, map_small, map_medium, map_large, ar1, ar10, ar100,
ar_small, ar_medium, ar_large (-1 where COCOeval gives -1), coco_stats (the same 12 in
COCOeval.stats order), per_class (null where a class has no ground truth),
confusion_matrix, counts, params, inputs.

Confusion matrix: rows = true class, columns = predicted class, last row/column =
background. Detections with score >= --cm-score and non-crowd ground truth of any class
are paired one-to-one per image, greedily by IoU (>= --cm-iou). Unpaired ground truth
counts as [class, background] (missed), unpaired detections as [background, class]
(false positive) unless they lie on a crowd region.

Exit status: 0 on success, 2 on bad input (malformed JSON, missing keys, detections on
unknown images or categories, class-count mismatch), with nothing written.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="COCO bbox metrics (identical to pycocotools), per-class analysis and plots",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--gt", type=existing_file, metavar="VAL.json", help="val COCO instances json (ground truth)"
    )
    p.add_argument("--dt", type=existing_file, metavar="DT.json", help="COCO results json to evaluate")
    p.add_argument("--weights", type=existing_file, metavar="W.pt", help="YOLO weights to predict with")
    p.add_argument(
        "--data", type=existing_file, metavar="YAML", help="ultralytics dataset YAML (its val split)"
    )
    p.add_argument(
        "--out", required=True, type=Path, metavar="DIR|FILE.json", help="output dir or metrics file"
    )
    g = p.add_argument_group("prediction (with --weights)")
    g.add_argument(
        "--imgsz",
        type=positive_int,
        default=None,
        help="inference size in px (default: the size the weights were trained at, as export uses; else 640)",
    )
    g.add_argument("--batch", type=positive_int, default=16, help="images per forward pass (default: 16)")
    g.add_argument(
        "--device", default="auto", help=f"{DEVICE_FORMS} (default: auto = GPU 0 if present, else CPU)"
    )
    g.add_argument("--conf", type=_unit_float, default=0.001, help="confidence floor (default: 0.001)")
    g.add_argument("--nms-iou", type=_unit_float, default=0.7, help="NMS IoU threshold (default: 0.7)")
    g.add_argument("--max-det", type=positive_int, default=100, help="boxes kept per image (default: 100)")
    g = p.add_argument_group("analysis")
    g.add_argument(
        "--cm-iou", type=_unit_float, default=0.5, help="confusion-matrix IoU threshold (default: 0.5)"
    )
    g.add_argument(
        "--cm-score", type=_unit_float, default=0.25, help="confusion-matrix score threshold (default: 0.25)"
    )
    g.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    g.add_argument("--json", action="store_true", help="print metrics.json to stdout instead of the table")
    p.set_defaults(func=_evaluate)


def _unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {value}")
    return value


def _evaluate(args: argparse.Namespace) -> int:
    from detpipe.evaluate.stage import EvaluateConfig, run_evaluation
    from detpipe.evaluate.summary import format_table

    cfg = EvaluateConfig(
        out=args.out,
        gt=args.gt,
        dt=args.dt,
        weights=args.weights,
        data=args.data,
        imgsz=args.imgsz,
        device=args.device,
        batch=args.batch,
        conf=args.conf,
        nms_iou=args.nms_iou,
        max_det=args.max_det,
        cm_iou=args.cm_iou,
        cm_score=args.cm_score,
        plots=not args.no_plots,
        progress=not args.quiet,
    )
    metrics = run_evaluation(cfg)
    print(json.dumps(metrics, indent=2) if args.json else format_table(metrics))
    log.info("wrote %s", args.out)
    return 0
