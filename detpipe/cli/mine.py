"""``detpipe mine``: pick the unlabeled pool images worth labeling."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from detpipe.cli.options import existing_file, non_negative_int, positive_int
from detpipe.mine.strategy import STRATEGIES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mine",
        help="score an unlabeled pool with a model and pick the images worth labeling",
        description="Run the model over every image of --pool (a directory, or a store prefix such "
        "as the server's field samples, s3://detpipe/payloads/<model>) in batches and pick --budget "
        "images. Strategies: uncertainty (least confident detection; images with no confident "
        "detection first), entropy (class-score entropy of the top anchors), diversity (k-center "
        "greedy on pooled backbone features: no near-duplicates; needs .pt weights), random (the "
        "baseline). --exclude skips the images a COCO file labels already. Writes OUT/selection.json "
        "(image, score, strategy, rank), OUT/preannotations.json (COCO detections on the picks, for "
        "CVAT / Label Studio) and OUT/contact_sheet.png. Same pool, model and seed: same picks. "
        "Exit 0; bad input 2.",
        epilog="example: detpipe mine --pool runs/pool --weights runs/train/weights/best.pt --budget 100 "
        "--strategy uncertainty --exclude data/annotations/instances_train2017.json --out runs/mine",
    )
    p.add_argument("--pool", required=True, help="directory of images, or a store URI prefix")
    p.add_argument("--weights", required=True, type=existing_file, help="PyTorch weights (.pt) or ONNX model")
    p.add_argument("--budget", required=True, type=positive_int, help="how many images to pick")
    p.add_argument("--strategy", choices=STRATEGIES, default="uncertainty", help="selection (uncertainty)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of random / diversity (0)")
    p.add_argument("--exclude", type=existing_file, default=None, help="COCO file of images labeled already")
    p.add_argument("--batch", type=positive_int, default=16, help="images per inference batch (16)")
    p.add_argument("--imgsz", type=positive_int, default=None, help="input size for .pt (trained size)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.set_defaults(func=_mine)


def _mine(args: argparse.Namespace) -> int:
    from detpipe.mine.stage import MineConfig, mine

    cfg = MineConfig(pool=args.pool, weights=args.weights, budget=args.budget, out=args.out,
                     strategy=args.strategy, seed=args.seed, exclude=args.exclude, batch=args.batch,
                     imgsz=args.imgsz)  # fmt: skip
    print(json.dumps(mine(cfg), indent=2))
    return 0
