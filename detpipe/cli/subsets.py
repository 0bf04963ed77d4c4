"""``detpipe subsets``: image lists of a COCO training set at the study's fractions."""

from __future__ import annotations

import argparse
import json
import logging

from detpipe.cli.options import csv_list, existing_dir, existing_file, non_negative_int

log = logging.getLogger(__name__)

_DESCRIPTION = """\
Steps 1-3 of the data-scaling study. Step 1 drops images without annotations (with
--drop-crowd-only also those whose annotations are all iscrowd). Step 2 draws, for each
fraction (percent of the remaining images; images = round half up of pct/100 x images,
at least 1) and strategy, a subset: 'p' proportional (class-balanced: per-class instance
shares and small/medium/large mixes as close as possible to the full set's, every class
present once a subset has at least as many images as there are classes; stratified
seeding by rarest classes, then swap refinement), 'random' (uniform) or 'topn' (first N
of the filtered list). Deterministic by --seed. Subsets are nested by default: each
smaller subset of a strategy lies inside the next larger one (topn always is).

A draw is one such set of lists drawn with one seed. --draw-seeds 1,2 adds independent
draws: the same strategies (all but topn, which does not depend on the seed) drawn again
with seed 1 and with seed 2, each a nested chain over the fractions of its own, written
to OUT/draws/seed-1/ and OUT/draws/seed-2/ (lists, summary.json, class_distribution.csv;
the root of OUT holds the --seed draw). overlap.json / overlap.csv / overlap.png compare
the draws: for each strategy, fraction and pair of seeds, the share of images the two
lists have in common (100 x common / images), the random expectation 100 x n/N, and the
largest per-class overlap (Dice over the images holding the class). Training on several
draws separates the variance due to which images were picked from the training seed's.

Writes into OUT (atomically: a failure leaves no output directory):
  <split>_<pct>_<strategy>.txt  one image path per line, e.g. train2017_0.3125_p.txt
  class_distribution.csv        per (strategy, fraction, class): images, instances, share,
                                full-set share, relative deviation, size bins
  summary.json                  filter counts, per-subset statistics, p vs random
                                ("draws": the seeds and their dirs, with --draw-seeds)
  images_objects.png, p_per_class.png, deviation.png
  draws/seed-<s>/, overlap.json, overlap.csv, overlap.png    with --draw-seeds
and prints a table. The annotation file gets the same checks as 'detpipe data validate'.
"""


def _fraction_list(text: str) -> list[float]:
    """One or more comma-separated percentages in (0, 100]."""
    out = []
    for item in csv_list(text):
        try:
            value = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a percentage, got {item!r}") from None
        if not 0 < value <= 100:
            raise argparse.ArgumentTypeError(f"fractions are percentages in (0, 100], got {item}")
        out.append(value)
    return out


def _strategy_list(text: str) -> list[str]:
    from detpipe.subsets.config import STRATEGIES

    items = csv_list(text)
    for s in items:
        if s not in STRATEGIES:
            raise argparse.ArgumentTypeError(f"unknown strategy {s!r}; choose from {','.join(STRATEGIES)}")
    return items


def _seed_list(text: str) -> list[int]:
    """Comma-separated non-negative integers."""
    return [non_negative_int(item) for item in csv_list(text)]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "subsets",
        help="draw nested p/random/topn image lists at the study's fractions",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--annotations", required=True, type=existing_file, help="COCO instances_<split>.json")
    p.add_argument("--out", required=True, help="output directory (replaced atomically)")
    p.add_argument(
        "--fractions",
        nargs="+",
        type=_fraction_list,
        default=None,
        metavar="PCT",
        help="percentages of the non-empty images, space- or comma-separated "
        "(default: 0.3125 0.625 1.25 2.5 5 10 20 30 40 50 60 70 80 90 100)",
    )
    p.add_argument(
        "--strategies",
        type=_strategy_list,
        default=None,
        metavar="LIST",
        help="comma-separated subset of p,random,topn (default: all three)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed for p and random (default: 0)")
    p.add_argument(
        "--draw-seeds",
        type=_seed_list,
        default=None,
        metavar="S,...",
        help="more independent draws of p and random, one per seed, into OUT/draws/seed-<s>/, "
        "with the image overlap between draws (overlap.json/.csv/.png); a seed given twice or "
        "equal to --seed is drawn once",
    )
    p.add_argument(
        "--no-nested",
        dest="nested",
        action="store_false",
        help="draw each fraction independently instead of inside the next larger one",
    )
    p.add_argument(
        "--image-prefix",
        default=None,
        metavar="P",
        help="prepended to each file_name in the lists (default: ./images/<split>/, the split "
        "taken from instances_<split>.json, else train2017)",
    )
    p.add_argument(
        "--drop-crowd-only",
        action="store_true",
        help="also drop images whose annotations are all iscrowd (crowd regions then count "
        "as no instance anywhere)",
    )
    p.add_argument("--images-dir", type=existing_dir, default=None, help="check that image files exist")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    p.add_argument("--json", action="store_true", help="print summary.json instead of the table")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from detpipe.subsets import DEFAULT_FRACTIONS, STRATEGIES, SubsetsConfig, generate
    from detpipe.subsets.draws import format_overlap
    from detpipe.subsets.outputs import format_table

    fractions = tuple(f for group in args.fractions for f in group) if args.fractions else DEFAULT_FRACTIONS
    summary = generate(
        SubsetsConfig(
            annotations=args.annotations,
            out=args.out,
            fractions=fractions,
            strategies=tuple(args.strategies) if args.strategies else STRATEGIES,
            seed=args.seed,
            draw_seeds=tuple(args.draw_seeds or ()),
            nested=args.nested,
            image_prefix=args.image_prefix,
            drop_crowd_only=args.drop_crowd_only,
            images_dir=args.images_dir,
            plots=args.plots,
            progress=not args.quiet,
            plot_worker=True,  # the console script's __main__ is safe to import in the worker
        )
    )
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(format_table(summary))
    plots = f", {len(summary.get('plots', []))} plots" if args.plots else ""
    lists = len(summary["subsets"])
    print(f"wrote {lists} lists, class_distribution.csv, summary.json{plots} to {args.out}")
    draws = summary.get("draws")
    if draws:
        others = {s: d for s, d in draws["dirs"].items() if d != "."}
        if others:
            where = ", ".join(f"{args.out}/{d}/" for d in others.values())
            print(f"draws of seeds {', '.join(others)} ({', '.join(_seeded(summary))} lists) in {where}")
            print(format_overlap(summary["overlap"]) + f"; per pair in {args.out}/overlap.csv")
        else:
            print(
                "no other draw: the draw seeds repeat --seed, or only topn (the same for any seed) was drawn"
            )
    return 0


def _seeded(summary: dict) -> list[str]:
    return [s for s in dict.fromkeys(r["strategy"] for r in summary["subsets"]) if s != "topn"]
