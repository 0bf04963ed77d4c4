"""``detpipe logs analyze``: training-log analysis of ultralytics' results.csv.

Usage::

    detpipe logs analyze runs/yolo12n_5p --out runs/logs
    detpipe logs analyze runs/a runs/b --out runs/logs --ranges 1-10,11-50,51-100 --milestones 10,50,100
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from detpipe.cli.options import positive_int

log = logging.getLogger(__name__)


def _fmt_ranges(ranges: tuple[tuple[int, int], ...]) -> str:
    return ",".join(f"{a}-{b}" for a, b in ranges)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``logs`` subcommand group."""
    from detpipe.logs.defaults import (
        DEFAULT_MILESTONES,
        DEFAULT_RANGES,
        SPIKE_FACTOR,
        STABLE_COV_PCT,
        STABLE_WINDOW,
    )

    parser = sub.add_parser("logs", help="training-log analysis (ultralytics results.csv)")
    logs_sub = parser.add_subparsers(dest="logs_command", metavar="ACTION", required=True)
    p = logs_sub.add_parser(
        "analyze",
        help="losses, metric ranges, stability, spikes, LR phases and status of training runs",
        description="Analyze the results.csv of one or more training run directories (detpipe train "
        "--out or an ultralytics save_dir; args.yaml / train_summary.json beside it give the planned "
        "epochs and patience, weights/best.pt the parameter count). Per run: each loss's first, last "
        "and change in %% and its drop per epoch range; precision, recall, mAP50 and mAP50-95 at "
        "milestone epochs and mean / std / CoV per range; the epoch from which mAP50 is stable; loss "
        "spikes and oscillations; learning-rate phases (warm-up, high, mid, low); seconds per epoch "
        "and images/s; a status (completed, stopped_early, crashed, nan, unknown) with its reason. "
        "Several runs: a comparison table and the winners by accuracy, accuracy per parameter and "
        "per training hour. Writes OUT/analysis.json (runs.<name>.{losses, ranges, milestones, "
        "stable_epoch, status, ...}), analysis.md and PNG plots, replaced atomically. Bad input: "
        "exit 2, nothing written.",
    )
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="training run directories")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    p.add_argument(
        "--ranges",
        default=_fmt_ranges(DEFAULT_RANGES),
        metavar="A-B,...",
        help="epoch ranges, 1-based and inclusive, clipped to each run; a range a run lacks is dropped "
        "with a warning and listed in runs.<name>.dropped (default: %(default)s)",
    )
    p.add_argument(
        "--milestones",
        default=",".join(map(str, DEFAULT_MILESTONES)),
        metavar="E,...",
        help="epochs whose metrics are tabulated, those a run reached; the others are dropped with a "
        "warning and listed in runs.<name>.dropped (default: %(default)s)",
    )
    p.add_argument(
        "--stable-window",
        type=positive_int,
        default=STABLE_WINDOW,
        metavar="N",
        help="epochs per window of the stability rule (default: %(default)s)",
    )
    p.add_argument(
        "--stable-cov",
        type=float,
        default=STABLE_COV_PCT,
        metavar="PCT",
        help="cap, in %%, of the 10-epoch mAP50 CoV a run counts as stable under: the run's own "
        "threshold is 2x its last quarter's median window CoV (at least 0.1 %%), never above this "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--spike-factor",
        type=float,
        default=SPIKE_FACTOR,
        metavar="X",
        help="a loss above X times its median over the previous 5 epochs is a spike (default: %(default)s)",
    )
    p.add_argument(
        "--no-params",
        action="store_true",
        help="do not read the weights for the parameter count (skips importing torch)",
    )
    p.set_defaults(func=_analyze)


def _analyze(args: argparse.Namespace) -> int:
    from detpipe.logs.analysis import AnalysisSettings
    from detpipe.logs.stage import LogsConfig, parse_milestones, parse_ranges, write_analysis

    settings = AnalysisSettings(
        ranges=parse_ranges(args.ranges),
        milestones=parse_milestones(args.milestones),
        stable_window=args.stable_window,
        stable_cov_pct=args.stable_cov,
        spike_factor=args.spike_factor,
    )
    config = LogsConfig(runs=tuple(args.runs), out=args.out, settings=settings, params=not args.no_params)
    analysis = write_analysis(config)
    for name, run in analysis["runs"].items():
        best = run["best"]
        score = "—" if best["map5095"] is None else f"{best['map5095']:.4f} at epoch {best['epoch']}"
        print(
            f"{name}: {run['status']} ({run['reason']}); best mAP50-95 {score}; "
            f"stable from {run['stable_epoch'] or '—'}"
        )
    if analysis["comparison"]:
        w = analysis["comparison"]["winners"]
        print(
            f"winner: accuracy {w['accuracy']}, per parameter {w['accuracy_per_mparam']}, "
            f"per hour {w['accuracy_per_hour']}"
        )
    print(config.out / "analysis.md")
    return 0
