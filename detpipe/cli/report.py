"""``detpipe report``: the data-scaling report over a sweep of training runs.

Usage::

    detpipe report --runs runs/sweep --out runs/report --target 0.4
    detpipe report --table results.csv --out runs/report --full-images 118287 --fit-min-fraction 5
    detpipe report --runs runs/sweep --out runs/report --reference yolo12-coco --fail-on-mismatch
    detpipe report --runs runs/sweep --out runs/report --epochs-policy fixed --subsets runs/subsets
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from detpipe.cli.options import positive_int
from detpipe.report.defaults import MAX_REL_DIFF_PCT

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand."""
    p = sub.add_parser(
        "report",
        help="data-scaling report: mAP vs training-set size, retention, cliff, power-law fit",
        description="Summarize a sweep of models trained on shrinking training-set fractions. "
        "Input: a directory searched recursively for train_summary.json files (keys: model, "
        "fraction in percent or a train2017_<pct>_<strategy> subset name, best_map5095; "
        "optional best_map50, best_epoch, last_epoch, seed, strategy), or a CSV table with the "
        "header model,fraction,best_map5095 and optionally best_map50,best_epoch,last_epoch,seed,"
        "strategy,subset_seed,epochs_policy,epochs (fraction in percent, mAP in [0, 1], '#' lines are "
        "comments); a sweep cell's cell.json beside its summary gives its strategy, subset_seed, "
        "epochs_policy and planned epochs. Several seeds and subset draws per (model, fraction) are "
        "averaged. Runs of several strategies / epochs policies are compared (strategies.png, "
        "policies.png, winner per model and fraction); the main analysis uses the primary one "
        "(--strategy, else p; --epochs-policy, else fixed). The spread across subset draws and "
        "across training seeds is reported separately (variance.png), with the draws' overlap "
        "table from the subsets' overlap.json (<runs>/subsets/ or --subsets). "
        "Output (replaced atomically): report.json, report.md and "
        "PNGs with the best-mAP50-95 table (models x fractions), retention (% of the 100 % "
        "score), the cliff (adjacent fractions with the largest mAP drop, and their ratio), runs "
        "that peaked in their last epochs (and those still improving when their planned epochs ran "
        "out), regime labels per fraction (saturated / steep / collapsed), and a fit mAP(N) = "
        "a - b*N^-alpha per model (N = "
        "fraction in percent) with the N needed to reach --target (marked '~N % (extrapolated "
        "beyond the full set: not reachable with this data)' past 100 %). With --reference, a "
        "reproduction gate: each model's 100 % run against a published score (report.json "
        "reproduction.<model>, reproduction_ok; --fail-on-mismatch exits 4). Bad input: exit 2, "
        "nothing written.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--runs", type=Path, metavar="DIR", help="directory of training runs (train_summary.json, recursive)"
    )
    src.add_argument(
        "--table", type=Path, metavar="CSV", help="model,fraction,best_map5095[,best_epoch,last_epoch,...]"
    )
    p.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="output directory (replaced atomically)"
    )
    p.add_argument(
        "--target",
        type=float,
        default=0.4,
        metavar="MAP",
        help="mAP50-95 to predict the data needed for (default: 0.4)",
    )
    p.add_argument(
        "--late-fraction",
        type=float,
        default=0.1,
        metavar="F",
        help="flag runs whose best epoch is in this last share of their epochs (default: 0.1)",
    )
    p.add_argument(
        "--full-images",
        type=positive_int,
        default=None,
        metavar="N",
        help="images in the 100%% set (COCO train2017: 118287) to also give the data needed in images",
    )
    p.add_argument(
        "--fit-min-fraction",
        type=float,
        default=None,
        metavar="PCT",
        help="fit the power law only to fractions >= this percent (e.g. 5: above the cliff; default: all)",
    )
    p.add_argument(
        "--strategy",
        default=None,
        metavar="NAME",
        help="the main analysis' subset strategy (p, random, topn; default: p when present, else the "
        "first alphabetically); the others are compared beside it",
    )
    p.add_argument(
        "--epochs-policy",
        default=None,
        metavar="P",
        help="the main analysis' epochs policy (fixed, iterations; default: fixed when present, else "
        "the only one); the other is compared beside it",
    )
    p.add_argument(
        "--subsets",
        type=Path,
        default=None,
        metavar="DIR",
        help="a detpipe subsets output dir whose overlap.json gives the overlap table between subset "
        "draws (default: <runs>/subsets/overlap.json when present)",
    )
    p.add_argument(
        "--reference",
        type=Path,
        default=None,
        metavar="CSV",
        help="published full-data scores, header model,map5095 (mAP in [0, 1]): adds a reproduction "
        "gate comparing each model's 100 %% run with them; the package ships the YOLO12 COCO val2017 "
        "figures as detpipe/report/references/yolo12_coco.csv (use --reference yolo12-coco)",
    )
    p.add_argument(
        "--max-rel-diff",
        type=float,
        default=MAX_REL_DIFF_PCT,
        metavar="PCT",
        help="largest |ours - reference| / reference that reproduces, in percent (default: %(default)s, "
        "the study's criterion)",
    )
    p.add_argument(
        "--fail-on-mismatch",
        action="store_true",
        help="exit 4 when a model does not reproduce (the report is still written)",
    )
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from detpipe.errors import GateFailed
    from detpipe.report.render import headline
    from detpipe.report.reproduction import YOLO12_COCO
    from detpipe.report.stage import ReportConfig, write_report

    shipped = {"yolo12-coco": YOLO12_COCO}  # names --reference accepts for the tables detpipe ships
    config = ReportConfig(
        out=args.out,
        runs=args.runs,
        table=args.table,
        target=args.target,
        late_fraction=args.late_fraction,
        full_images=args.full_images,
        strategy=args.strategy,
        fit_min_fraction=args.fit_min_fraction,
        reference=shipped.get(str(args.reference), args.reference),
        max_rel_diff=args.max_rel_diff,
        epochs_policy=args.epochs_policy,
        subsets=args.subsets,
    )
    report = write_report(config)
    for line in headline(report):
        print(line)
    failed = []
    for name, e in (report["reproduction"] or {}).items():
        if e["ours"] is None:
            print(f"{name}: reproduction: no 100 % run (reference {e['reference']:.3f})")
            failed.append(name)
            continue
        verdict = "ok" if e["ok"] else "MISMATCH"
        print(
            f"{name}: reproduction {verdict}: {e['ours']:.3f} vs {e['reference']:.3f} "
            f"({e['rel_diff_pct']:+.1f} %)"
        )
        if not e["ok"]:
            failed.append(name)
    print(config.out / "report.md")
    if failed and args.fail_on_mismatch:
        raise GateFailed(
            f"{', '.join(failed)} not reproduced within {config.max_rel_diff:g} % of the reference "
            f"(report written to {config.out})"
        )
    return 0
