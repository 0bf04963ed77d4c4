"""Independent subset draws (one per subset seed) and the image overlap between them.

    seeds = draw_seeds(0, (1, 2, 1))               # -> [0, 1, 2]: the root seed first, duplicates dropped
    table = overlap_table({0: subs0, 1: subs1, 2: subs2}, counts)
    write_overlap(tmp, table)                      # overlap.json, overlap.csv
    draw_dir("runs/subsets", 2)                    # -> runs/subsets/draws/seed-2

Issue 12 §1 ("independent subset draws"): besides the training seed, a subset seed draws
another set of lists with the same strategy code (each draw a nested chain over the
fractions, as the study's lists are; draws independent of each other). ``detpipe subsets``
writes the root seed's lists at the root of its output and every other seed's under
``draws/seed-<s>/`` (lists of every strategy but ``topn``, which does not depend on the
seed, with their own ``summary.json`` and ``class_distribution.csv``).

The overlap of two draws A, B at one fraction (contract 1 of issue 12): ``overlap_pct =
100 |A∩B| / |A|`` (draws at one fraction have equal sizes); ``expected_random_pct = 100 n / N``,
the mean overlap of two independent uniform draws of n of the N images (|A∩B| is then
hypergeometric with mean n²/N); per class c, the Dice overlap ``100 · 2|A_c∩B_c| / (|A_c| +
|B_c|)`` of the images holding c, over the classes present in both draws, of which the
largest is reported with its class. ``p`` draws can overlap more than random ones: the
images of the rarest classes are forced into every draw.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from detpipe.errors import InvalidInput
from detpipe.io import read_json, write_json, write_text
from detpipe.subsets.config import format_pct, pct_number
from detpipe.subsets.counts import ImageCounts
from detpipe.subsets.outputs import Subset

log = logging.getLogger(__name__)

DRAWS_DIR = "draws"
"""The folder of the non-root draws inside a subsets output."""

OVERLAP_COLUMNS: tuple[str, ...] = (
    "strategy", "pct", "seed_a", "seed_b", "images", "common_images", "overlap_pct",
    "expected_random_pct", "max_class_overlap_pct", "max_class",
)  # fmt: skip

OVERLAP_DEFINITION = (
    "overlap_pct = 100 x |A and B| / |A| for two draws A, B of one strategy at one fraction (equal "
    "sizes); expected_random_pct = 100 x n / N, the mean overlap of two independent uniform draws of n "
    "of the N images; max_class_overlap_pct: the largest per-class Dice overlap 100 x 2|A_c and B_c| / "
    "(|A_c| + |B_c|) of the images holding class c, over the classes present in both draws (max_class "
    "names it, the first in class order on ties); summary: mean and max over the pairs of seeds"
)

_DIGITS = 2  # percentages in the table: 2 decimals


def seed_dirname(seed: int) -> str:
    """Where draw ``seed`` goes inside a subsets output: ``draws/seed-<seed>``."""
    return f"{DRAWS_DIR}/seed-{seed}"


def draw_seeds(seed: int, others: Iterable[int]) -> list[int]:
    """The seeds of a run, the root ``seed`` first, then ``others`` in order, each once.

    A repeated seed (or the root seed among ``others``) would draw the very same lists
    again: it is dropped, with an info line.
    """
    seeds = [int(seed)]
    for s in others:
        if int(s) in seeds:
            log.info("draw seed %d given twice (or equal to --seed): drawn once", s)
            continue
        seeds.append(int(s))
    return seeds


def draw_dir(subsets_dir: str | Path, seed: int) -> Path:
    """The directory holding the lists drawn with subset seed ``seed`` in a subsets output.

    The root seed (``seed`` of the root ``summary.json``) maps to ``subsets_dir`` itself, any
    other drawn seed to ``subsets_dir/draws/seed-<seed>``.

    Raises:
        InvalidInput: ``subsets_dir`` has no ``summary.json``, or no draw of ``seed`` (the
            message names the seeds available).
    """
    subsets_dir = Path(subsets_dir)
    summary = read_json(subsets_dir / "summary.json")
    if not isinstance(summary, dict) or not isinstance(summary.get("seed"), int):
        raise InvalidInput(f"{subsets_dir}/summary.json: no 'seed' (is it a 'detpipe subsets' output?)")
    draws = summary.get("draws") or {}
    dirs = {str(summary["seed"]): ".", **(draws.get("dirs") or {})}
    rel = dirs.get(str(int(seed)))
    if rel is None:
        available = ", ".join(sorted(dirs, key=int))
        raise InvalidInput(
            f"{subsets_dir}: no subset draw with seed {seed} (seeds available: {available}; "
            "draw more with 'detpipe subsets --draw-seeds')"
        )
    path = subsets_dir if rel == "." else subsets_dir / rel
    if not path.is_dir():
        raise InvalidInput(f"{path}: missing (summary.json lists draw seed {seed} there)")
    return path


def _round(v: float) -> float:
    return round(float(v), _DIGITS)


def overlap_table(draws: Mapping[int, Sequence[Subset]], counts: ImageCounts) -> dict[str, Any]:
    """Pairwise image overlap between draws, per strategy and fraction (the module docstring's terms).

    Args:
        draws: ``{seed: subsets}``, the same (strategy, fraction) subsets for every seed, the
            root seed first; strategies present in one draw only (``topn``) are left out.
        counts: the filtered set the rows index.

    Returns:
        ``{"seeds", "definition", "pairs": [...], "summary": {strategy: {pct: {...}}}}``.
    """
    seeds = list(draws)
    n_images, nc = counts.num_images, counts.num_classes
    incidence = counts.matrix[:, :nc]  # images x classes, instances (> 0 where the image holds the class)
    names = counts.class_names
    by_seed = {s: {(x.strategy, x.pct): x for x in subs} for s, subs in draws.items()}
    keys = [k for k in by_seed[seeds[0]] if all(k in by_seed[s] for s in seeds[1:])] if seeds else []
    pairs: list[dict[str, Any]] = []
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    member = np.zeros(n_images, bool)
    for strategy, pct in keys:
        rows_of = {s: by_seed[s][strategy, pct] for s in seeds}
        n = len(rows_of[seeds[0]].rows)
        expected = 100.0 * n / n_images
        found = []
        for a, b in combinations(seeds, 2):
            ra, rb = rows_of[a].rows, rows_of[b].rows
            member[:] = False
            member[ra] = True
            common = rb[member[rb]]
            both = np.bincount(incidence[common].indices, minlength=nc) if len(common) else np.zeros(nc)
            ca, cb = rows_of[a].stats.class_images, rows_of[b].stats.class_images
            shared = (ca > 0) & (cb > 0)
            dice = np.where(shared, 200.0 * both / np.maximum(ca + cb, 1), -1.0)
            best = int(np.argmax(dice)) if shared.any() else -1
            overlap = 100.0 * len(common) / max(len(ra), 1)
            found.append((overlap, dice[best] if best >= 0 else None, names[best] if best >= 0 else None))
            pairs.append(
                {
                    "strategy": strategy,
                    "pct": pct_number(pct),
                    "seed_a": a,
                    "seed_b": b,
                    "images": len(ra),
                    "common_images": len(common),
                    "overlap_pct": _round(overlap),
                    "expected_random_pct": _round(expected),
                    "max_class_overlap_pct": None if best < 0 else _round(dice[best]),
                    "max_class": None if best < 0 else names[best],
                }
            )
        overlaps = [f[0] for f in found]
        classed = [f for f in found if f[1] is not None]
        top = max(classed, key=lambda f: f[1]) if classed else None
        summary.setdefault(strategy, {})[format_pct(pct)] = {
            "mean_overlap_pct": _round(np.mean(overlaps)),
            "max_overlap_pct": _round(max(overlaps)),
            "max_class_overlap_pct": None if top is None else _round(top[1]),
            "max_class": None if top is None else top[2],
            "expected_random_pct": _round(expected),
        }
    return {"seeds": seeds, "definition": OVERLAP_DEFINITION, "pairs": pairs, "summary": summary}


def write_overlap(out: Path, table: Mapping[str, Any]) -> list[Path]:
    """Write ``overlap.json`` and ``overlap.csv`` (one row per pair) into ``out``; return their paths."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(OVERLAP_COLUMNS)
    for row in table["pairs"]:
        writer.writerow(["" if row[k] is None else row[k] for k in OVERLAP_COLUMNS])
    return [write_json(out / "overlap.json", dict(table)), write_text(out / "overlap.csv", buf.getvalue())]


def smallest_fraction_overlap(table: Mapping[str, Any]) -> tuple[str, dict[str, dict[str, Any]]] | None:
    """``(pct, {strategy: summary row})`` at the smallest fraction of the table, None when empty."""
    pcts = {pct for per in table["summary"].values() for pct in per}
    if not pcts:
        return None
    pct = min(pcts, key=float)
    return pct, {s: per[pct] for s, per in table["summary"].items() if pct in per}


def format_overlap(table: Mapping[str, Any]) -> str:
    """One line: the mean image overlap of each strategy's draws at the smallest fraction."""
    found = smallest_fraction_overlap(table)
    if found is None:
        return "no overlap between draws computed"
    pct, rows = found
    parts = [
        f"{s} {r['mean_overlap_pct']:.2f} % (largest per-class {r['max_class_overlap_pct']:.2f} %, "
        f"{r['max_class']})"
        if r["max_class_overlap_pct"]  # None: no class in both draws; 0: every class a tie
        else f"{s} {r['mean_overlap_pct']:.2f} %"
        for s, r in rows.items()
    ]
    expected = next(iter(rows.values()))["expected_random_pct"]
    seeds = ", ".join(str(s) for s in table["seeds"])
    return (
        f"image overlap between draws (seeds {seeds}) at {pct} %: "
        f"{'; '.join(parts)}; two random draws share {expected:.2f} % on average"
    )
