"""``detpipe al run | report``: active learning, measured (one cell; the report over cells).

The whole experiment (strategies x seeds, then the report) is the ``active_learning`` pipeline:
``detpipe pipeline run --pipeline active_learning --quick`` (``make al``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from detpipe.cli.options import non_negative_int, positive_float, positive_int
from detpipe.mine.strategy import STRATEGIES
from detpipe.overrides import parse_set


def _power_law(text: str) -> tuple[float, float, float]:
    try:
        a, b, alpha = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A,B,ALPHA (three numbers), got {text!r}") from None
    return a, b, alpha


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("al", help="active learning, measured: one cell's rounds, or the report")
    asub = parser.add_subparsers(dest="al_command", metavar="ACTION", required=True)

    p = asub.add_parser(
        "run",
        help="one cell: seed set, then rounds of pick, reveal, retrain, evaluate",
        description="Run one active-learning cell (one strategy, one seed) on a COCO-layout dataset "
        "root: label a seed set (--seed-fraction %% of the training images with annotations, drawn "
        "proportionally like the subsets' p lists), train and evaluate on the val split; then "
        "--rounds times: pick --budget of the other training images with detpipe mine (--strategy), "
        "reveal their ground truth, merge it in (detpipe data merge), retrain (from scratch, or "
        "--finetune from the previous round) and evaluate. Writes OUT/cell.json, OUT/round-<k>.json "
        "(labeled images, mAP50-95, mAP50, times) and per round labeled.json, train/, evaluation/, "
        "mine/; --runs files the records in a directory or store prefix for 'detpipe al report'. "
        "The same --seed gives every strategy the same seed set and round-0 model. Exit 0; bad input 2.",
        epilog="example: detpipe al run --data runs/data --strategy uncertainty --seed 0 --rounds 3 "
        "--budget 30 --seed-fraction 10 --epochs 30 --imgsz 64 --device cpu --out runs/al/uncertainty_s0",
    )
    p.add_argument("--data", required=True, type=Path, help="dataset root (images/, annotations/)")
    p.add_argument("--out", required=True, type=Path, help="the cell's directory")
    p.add_argument("--strategy", choices=STRATEGIES, default="uncertainty", help="selection (uncertainty)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed set, training, picks (0)")
    p.add_argument("--rounds", type=non_negative_int, default=3, help="selection rounds after the seed (3)")
    p.add_argument("--budget", type=positive_int, default=30, help="images labeled per round (30)")
    p.add_argument("--seed-fraction", type=positive_float, default=10.0, help="seed set, %% of images (10)")
    p.add_argument("--finetune", action="store_true", help="start each round from the previous weights")
    p.add_argument(
        "--finetune-epochs", type=non_negative_int, default=0, help="epochs of a fine-tuned round (--epochs)"
    )
    p.add_argument("--model", default="yolov8-pico.yaml", help="model config or weights (yolov8-pico.yaml)")
    p.add_argument("--epochs", type=positive_int, default=30, help="epochs per round (30)")
    p.add_argument("--imgsz", type=positive_int, default=64, help="train/eval/mine size (64)")
    p.add_argument("--batch", type=positive_int, default=16, help="batch (16)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, or GPU indices (auto)")
    p.add_argument("--workers", type=non_negative_int, default=0, help="dataloader workers (0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="an ultralytics train argument (as detpipe train --set); repeatable")  # fmt: skip
    p.add_argument("--runs", default=None, help="also file the records here (directory or store prefix)")
    p.set_defaults(func=_run)

    p = asub.add_parser(
        "report",
        help="curves per strategy, label saving against random, the sweep's power law",
        description="Read every cell's round records under --runs and report mAP50-95 against "
        "labeled images per strategy (mean ± sample std over seeds; curves.png), the label saving of "
        "each strategy against random (how many fewer labeled images its mean curve needed to reach "
        "random's final mAP, interpolated between rounds) with its uncertainty across seeds (each "
        "seed's own saving and their std; a bootstrap interval over seeds), and, with --sweep-report "
        "(a data-scaling report.json) or --power-law, the sweep's power law over labeled images. "
        "Writes OUT/report.json, report.md, report.html, curves.png and prints one line per "
        "strategy. Exit 0; bad input 2.",
        epilog="example: detpipe al report --runs runs/al --sweep-report runs/report/report.json "
        "--out runs/al-report",
    )
    p.add_argument("--runs", required=True, help="directory or store prefix holding the cells")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--sweep-report", default=None, help="a data-scaling report.json (file, dir or store URI)")
    p.add_argument("--sweep-model", default=None, help="its model (default: the cells' model)")
    p.add_argument("--power-law", type=_power_law, default=None, metavar="A,B,ALPHA",
                   help="a power law mAP = A - B N^-ALPHA (N in %%) instead of --sweep-report")  # fmt: skip
    p.add_argument("--full-images", type=positive_int, default=None, help="images of the sweep's 100 %%")
    p.set_defaults(func=_report)


def _run(args: argparse.Namespace) -> int:
    from detpipe.activelearning.cell import run_cell
    from detpipe.activelearning.config import CellConfig
    from detpipe.activelearning.records import file_cell

    cfg = CellConfig(data=args.data, out=args.out, strategy=args.strategy, seed=args.seed, rounds=args.rounds,
                     budget=args.budget, seed_fraction=args.seed_fraction, finetune=args.finetune,
                     finetune_epochs=args.finetune_epochs, model=args.model, epochs=args.epochs,
                     imgsz=args.imgsz, batch=args.batch, device=args.device, workers=args.workers,
                     train_overrides=parse_set(args.overrides), progress=True)  # fmt: skip
    summary = run_cell(cfg)
    for r in summary["rounds"]:
        print(f"{summary['name']} round {r['round']}: {r['labeled_images']} labeled images, "
              f"mAP50-95 {r['map50_95']:.4f}, mAP50 {r['map50']:.4f}")  # fmt: skip
    if args.runs:
        print(file_cell(args.out, args.runs))
    print(args.out / "cell.json")
    return 0


def _report(args: argparse.Namespace) -> int:
    from detpipe.activelearning.render import headline
    from detpipe.activelearning.report import ReportConfig, write_report

    cfg = ReportConfig(runs=args.runs, out=args.out, sweep_report=args.sweep_report,
                       sweep_model=args.sweep_model, power_law=args.power_law,
                       full_images=args.full_images)  # fmt: skip
    report = write_report(cfg)
    for line in headline(report):
        print(line)
    print(args.out / "report.md")
    if args.verbose > 1:
        print(json.dumps(report, indent=2))
    return 0
