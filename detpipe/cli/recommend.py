"""``detpipe recommend``: model, input size, schedule, augmentation and precision for a deployment.

Usage::

    detpipe recommend --platform orin-nx --fps 30 --sensor rgb --classes 5 --images 8000 --out runs/rec
    detpipe recommend --platform agx-orin --fps 60 --sensor thermal --coco train.json --out runs/rec
"""

from __future__ import annotations

import argparse
from pathlib import Path

from detpipe.cli.options import non_negative_float, positive_int, unit_float


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``recommend`` subcommand."""
    from detpipe.recommend.platforms import PLATFORMS

    p = sub.add_parser(
        "recommend",
        help="the deployment guide's rules: model scale, imgsz, epochs, lr0, augmentation, precision",
        description="Recommend a training and deployment plan for a YOLO detector from the deployment "
        "guide's rules: the model family and scale by platform, target FPS and dataset size (the largest "
        "scale estimated fast enough, stepped down when the data is below its minimum); the input size "
        "from the share of small objects; epochs = 250 + 80*sqrt(C) (RGB) or 600 + 150*sqrt(C) "
        "(thermal), patience, lr0 = 0.01/sqrt(C/3) capped at 0.01; the augmentation preset per sensor "
        "(thermal: no hue/saturation jitter, no mixup); FP16, or INT8 when --map-budget covers the "
        "export gate's INT8 limit; the images needed (base + C x per-class, and with --report the "
        "sweep's power-law fit for a target mAP). Prints a table and writes OUT/recommendation.json "
        "(model, imgsz, epochs, patience, lr0, augmentation, precision, images_needed, warnings, "
        "reasons) and OUT/hyp.yaml for 'detpipe train --config' or the pipelines' train_overrides. "
        "The origin of every constant is in detpipe/recommend/rules.py and platforms.py.",
    )
    p.add_argument("--platform", required=True, choices=sorted(PLATFORMS), help="deployment target")
    p.add_argument(
        "--fps", required=True, type=float, metavar="F", help="frames per second to sustain (batch 1)"
    )
    p.add_argument("--sensor", required=True, choices=("rgb", "thermal"), help="camera type")
    p.add_argument("--classes", type=positive_int, default=None, metavar="C", help="number of classes")
    p.add_argument("--images", type=positive_int, default=None, metavar="N", help="training images available")
    p.add_argument(
        "--coco",
        type=Path,
        default=None,
        metavar="FILE",
        help="COCO annotations to measure classes, images, imbalance and small-object share from "
        "(--classes/--images/--small-share override the measured values)",
    )
    p.add_argument(
        "--small-share",
        type=unit_float,
        default=None,
        metavar="S",
        help="share of objects under 32 px at 640 px input, in [0, 1] (default: measured, else COCO-like)",
    )
    p.add_argument(
        "--map-budget",
        type=non_negative_float,
        default=1.0,
        metavar="POINTS",
        help="mAP50-95 points the deployed engine may lose (default: %(default)s: FP16; 2 allows INT8)",
    )
    p.add_argument(
        "--report", type=Path, default=None, metavar="JSON", help="a sweep's report.json: images from its fit"
    )
    p.add_argument(
        "--target-map",
        type=float,
        default=None,
        metavar="MAP",
        help="mAP50-95 the fit's estimate is for (default: the report's target)",
    )
    p.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="output directory (replaced atomically)"
    )
    p.set_defaults(func=_recommend)


def _recommend(args: argparse.Namespace) -> int:
    from detpipe.recommend.stage import RecommendConfig, render_table, write_recommendation

    config = RecommendConfig(
        platform=args.platform,
        fps=args.fps,
        sensor=args.sensor,
        out=args.out,
        classes=args.classes,
        images=args.images,
        coco=args.coco,
        small_share=args.small_share,
        map_budget=args.map_budget,
        report=args.report,
        target_map=args.target_map,
    )
    rec = write_recommendation(config)
    print(render_table(rec), end="")
    print(config.out / "recommendation.json")
    return 0
