"""``detpipe export``: weights -> ONNX, ONNX INT8, TensorRT FP16/INT8, evaluated and gated."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from detpipe.cli.options import (
    csv_list,
    existing_dir,
    existing_file,
    non_negative_int,
    positive_int,
    unit_float,
)
from detpipe.device import DEVICE_FORMS
from detpipe.export.gate import DEFAULT_MIN_MAP

if TYPE_CHECKING:
    from detpipe.export.gate import GateConfig

log = logging.getLogger(__name__)


def imgsz_arg(text: str) -> tuple[int, int]:
    """'640' or '480,640' (height,width)."""
    parts = text.replace("x", ",").split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SIZE or H,W, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected SIZE or H,W with positive values, got {text!r}")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export weights to ONNX / ONNX INT8 / TensorRT engines, evaluate and gate them",
        description="Export a trained YOLO detector to ONNX (FP32, simplified), ONNX INT8 (onnxruntime "
        "static QDQ, calibrated on --calib images) and TensorRT FP16/INT8 engines (built here, for this "
        "GPU, each with a .json sidecar). model.onnx is checked against PyTorch on real images. With "
        "--val-annotations/--val-images every artifact is evaluated with the same COCO evaluator as the "
        "PyTorch model, and the accuracy gate fails the command (exit 4) when a format loses more mAP "
        "than allowed, scores below --min-map, or was requested but has no result (unless "
        "--allow-missing); the report is written first. On a GPU (--device auto finds one, or --device "
        "cuda) a requested engine that cannot be built fails the command (exit 3); only a CPU-only run "
        "skips engine formats, with a warning and the reason in export_report.json. Output: DIR/{model.onnx, "
        "model.int8.onnx, model.fp16.engine(.json), model.int8.engine(.json), export_report.json, "
        "export_report.md, accuracy.png}.",
    )
    p.add_argument("--weights", required=True, type=existing_file, help="trained .pt (or a model .yaml)")
    p.add_argument(
        "--formats",
        type=csv_list,
        default=["onnx", "onnx-int8"],
        help="comma-separated: onnx,onnx-int8,engine-fp16,engine-int8 (default: onnx,onnx-int8)",
    )
    p.add_argument("--out", required=True, type=Path, help="output directory (replaced atomically)")
    p.add_argument(
        "--imgsz", type=imgsz_arg, default=None, help="input size SIZE or H,W (default: training size)"
    )
    p.add_argument("--batch", type=positive_int, default=1, help="static batch, or max batch with --dynamic")
    p.add_argument(
        "--dynamic", action="store_true", help="dynamic batch axis in ONNX (engine profile 1..batch)"
    )
    p.add_argument("--opset", type=positive_int, default=17, help="ONNX opset (default: 17)")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim simplification")
    p.add_argument(
        "--data",
        type=existing_file,
        default=None,
        help="ultralytics dataset YAML (from 'detpipe data yolo'): its val split is evaluated (with "
        "--val-annotations, or the YAML's val_annotations key) and its train list is the default --calib",
    )
    g = p.add_argument_group("INT8 calibration")
    g.add_argument(
        "--calib",
        type=Path,
        default=None,
        help="calibration images: a train2017_<pct>_p.txt subset list (e.g. the proportional subset), a "
        "dataset YAML (its train list) or an image directory; onnx-int8/engine-int8 need it or --data",
    )
    g.add_argument("--calib-images", type=positive_int, default=300, help="images drawn from --calib (300)")
    g.add_argument(
        "--calib-method",
        choices=("minmax", "entropy", "percentile"),
        default="minmax",
        help="onnxruntime calibration method (default: minmax); TensorRT INT8 uses its entropy calibrator",
    )
    g.add_argument("--calib-seed", type=int, default=0, help="seed of the calibration sample")
    g = p.add_argument_group("accuracy gate")
    g.add_argument("--val-annotations", type=existing_file, default=None, help="COCO val instances_*.json")
    g.add_argument("--val-images", type=existing_dir, default=None, help="directory of the val images")
    g.add_argument("--threads", type=positive_int, default=None, help="CPU threads for evaluation")
    g.add_argument(
        "--gate",
        default=None,
        help="max mAP drop in points per precision or format, e.g. 'fp16=1.0,int8=2.0,onnx-int8=1.0' "
        "(defaults: fp32=0.5, fp16=1.0, int8=2.0)",
    )
    g.add_argument("--max-drop", type=float, default=None, help="one max drop (points) for every format")
    g.add_argument("--gate-metric", choices=("mAP50-95", "mAP50"), default="mAP50-95", help="gated metric")
    g.add_argument(
        "--min-map",
        type=unit_float,
        default=DEFAULT_MIN_MAP,
        help=f"absolute floor: every format must score at least this gated mAP, a fraction (default: "
        f"{DEFAULT_MIN_MAP}, 1 point: only a model that learned nothing fails it)",
    )
    g.add_argument(
        "--allow-missing",
        action="store_true",
        help="a requested format without an accuracy result (e.g. an engine skipped on CPU) passes the gate",
    )
    g.add_argument("--no-gate", action="store_true", help="evaluate and report, but never fail")
    g = p.add_argument_group("TensorRT")
    g.add_argument("--workspace", type=float, default=4.0, help="builder workspace limit in GiB (4)")
    g.add_argument("--dla-core", type=non_negative_int, default=None, help="build for this DLA core (Orin)")
    g.add_argument("--timing-cache", type=Path, default=None, help="persistent timing cache file")
    g.add_argument("--calib-cache", type=Path, default=None, help="INT8 calibration cache to reuse/write")
    p.add_argument(
        "--device",
        default="auto",
        help=f"{DEVICE_FORMS}: the PyTorch reference, engine builds and engine evaluation "
        "(default: auto = GPU 0 when present, else CPU-only, which skips engine formats)",
    )
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.set_defaults(func=_run)


def _gate(args: argparse.Namespace) -> GateConfig:
    from detpipe.errors import InvalidInput
    from detpipe.export.gate import DEFAULT_MAX_DROP, GateConfig, parse_gate

    limits: dict[str, float] = {}
    if args.max_drop is not None:
        if args.max_drop < 0:
            raise InvalidInput(f"--max-drop {args.max_drop}: must be >= 0")
        limits = dict.fromkeys(DEFAULT_MAX_DROP, args.max_drop)
    if args.gate:
        limits.update(parse_gate(args.gate))
    return GateConfig(
        max_drop=limits,
        metric=args.gate_metric,
        enabled=not args.no_gate,
        min_map=args.min_map,
        allow_missing=args.allow_missing,
    )


def _run(args: argparse.Namespace) -> int:
    from detpipe.export.stage import ExportConfig, run_export

    cfg = ExportConfig(
        weights=args.weights,
        out=args.out,
        formats=tuple(args.formats),
        imgsz=args.imgsz,
        batch=args.batch,
        dynamic_batch=args.dynamic,
        opset=args.opset,
        simplify=not args.no_simplify,
        data=args.data,
        calib=args.calib,
        calib_images=args.calib_images,
        calib_method=args.calib_method,
        calib_seed=args.calib_seed,
        val_annotations=args.val_annotations,
        val_images=args.val_images,
        gate=_gate(args),
        workspace_gib=args.workspace,
        dla_core=args.dla_core,
        timing_cache=args.timing_cache,
        calib_cache=args.calib_cache,
        device=args.device,
        threads=args.threads,
    )
    report = run_export(cfg)  # GateFailed -> exit 4, after the report is written
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        from detpipe.export.report import report_markdown

        print(report_markdown(report), end="")
        print(f"wrote {args.out}/export_report.json")
    return 0
