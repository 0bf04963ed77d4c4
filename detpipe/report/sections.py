"""Markdown sections for the sweep's extra axes (issue 12): strategies, epochs policies,
schedules, variance across draws vs seeds, the draws' overlap, regimes and still-improving runs.

Each function takes report.json's content and returns its lines, or ``[]`` when the section
has nothing to show (so a report of a plain sweep looks as before).

Usage::

    lines = strategies_lines(report) + policies_lines(report) + variance_lines(report)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from detpipe.report.collect import fraction_key


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "r") -> list[str]:
    """A markdown table; ``align="r"`` right-aligns every column but the first."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] + [f"--{':' if align == 'r' else '-'}"] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def frac(x: float | str) -> str:
    """A fraction for people: ``2.5 %``."""
    return f"{fraction_key(float(x))} %"


def _opt(value: Any, fmt: str = "{}") -> str:
    return "—" if value is None else fmt.format(value)


def format_stat(cell: dict[str, Any] | None) -> str:
    """A ``{mean, std, n}`` cell: ``0.412 ± 0.013 (n=3)``, the mean alone for one run, — for none."""
    if cell is None:
        return "—"
    if cell["std"] is None:
        return f"{cell['mean']:.3f}"
    return f"{cell['mean']:.3f} ± {cell['std']:.3f} (n={cell['n']})"


def _axis_lines(comparison: dict[str, Any] | None, title: str, what: str, held: str) -> list[str]:
    present: list[str] = (comparison or {}).get("present", [])
    if comparison is None or len(present) < 2:
        return []
    out = [
        "",
        f"## {title}",
        "",
        f"Best mAP50-95 per {what} ({held}); mean ± sample std over seeds and subset draws; "
        f"the best {what} of each row in **bold** (primary `{comparison['primary']}` on ties).",
        "",
    ]
    rows = []
    for model, by_pct in comparison["models"].items():
        for key, cell in by_pct.items():
            win = comparison["winner"].get(model, {}).get(key)
            row = [model, frac(key)]
            for value in present:
                text = format_stat(cell.get(value))
                row.append(f"**{text}**" if value == win else text)
            rows.append(row)
    return out + table(["model", "fraction", *[f"`{v}`" for v in present]], rows)


def strategies_lines(report: dict[str, Any]) -> list[str]:
    """The strategy comparison (model x fraction rows, a column per strategy)."""
    policy = report["source"].get("epochs_policy")
    held = f"epochs policy `{policy}`" if policy else "same epochs policy"
    return _axis_lines(report.get("strategies"), "Strategies", "subset strategy", held)


def policies_lines(report: dict[str, Any]) -> list[str]:
    """The epochs-policy comparison (model x fraction rows, a column per policy)."""
    strategy = report["source"].get("strategy")
    held = f"subset strategy `{strategy}`" if strategy else "same subset strategy"
    return _axis_lines(report.get("policies"), "Epochs policies", "epochs policy", held)


def schedules_lines(report: dict[str, Any]) -> list[str]:
    """Which policy each run used: one row per (model, fraction, strategy, policy, schedule)."""
    entries: list[dict[str, Any]] = report.get("schedules") or []
    if not any(e["epochs_policy"] is not None for e in entries):
        return []
    rows: dict[tuple, list[dict[str, Any]]] = {}
    for e in entries:
        key = (
            e["model"],
            e["fraction"],
            e["strategy"],
            e["epochs_policy"],
            e["epochs"],
            e["epochs_scale"],
            e["capped"],
        )
        rows.setdefault(key, []).append(e)
    out = [
        "",
        "## Schedules (which epochs policy each run used)",
        "",
        "`fixed`: the same epochs at every fraction (the study's); `iterations`: epochs scaled so "
        "each run sees the 100 % run's optimizer steps, capped (✂) at the sweep's max scale.",
        "",
    ]
    body = []
    for (model, fraction, strategy, policy, epochs, scale, capped), members in rows.items():
        seeds = sorted({m["seed"] for m in members if m["seed"] is not None})
        draws = sorted({m["subset_seed"] for m in members if m["subset_seed"] is not None})
        body.append(
            [
                model,
                frac(fraction),
                _opt(strategy, "`{}`"),
                _opt(policy, "`{}`"),
                _opt(epochs),
                _opt(scale, "{:.3g}×") + (" ✂" if capped else ""),
                str(len(members)),
                ", ".join(map(str, seeds)) or "—",
                ", ".join(map(str, draws)) or "—",
            ]
        )
    header = ["model", "fraction", "strategy", "policy", "epochs", "scale", "runs", "seeds", "draws"]
    return out + table(header, body)


def _pooled(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "—"
    groups = f"{entry['groups']} group" + ("s" if entry["groups"] != 1 else "")
    return f"{entry['mean']:.3f} ± {entry['std']:.3f} ({groups})"


def variance_lines(report: dict[str, Any]) -> list[str]:
    """Spread across subset draws vs across training seeds per model and fraction."""
    variance: dict[str, dict[str, Any]] = report.get("variance") or {}
    if not any(
        e["across_seeds"] or e["across_draws"] for by_pct in variance.values() for e in by_pct.values()
    ):
        return []
    out = [
        "",
        "## Variance: subset draws vs training seeds",
        "",
        "Across seeds: the std over training seeds on one subset draw, pooled over draws (mean of "
        "the means, root of the mean variance); across draws: the std over independent subset "
        "draws at one seed, pooled over seeds. The larger one dominates.",
        "",
    ]
    rows = []
    for model, by_pct in variance.items():
        for key, e in by_pct.items():
            rows.append(
                [
                    model,
                    frac(key),
                    str(e["runs"]),
                    str(len(e["seeds"])),
                    str(len(e["draws"])),
                    _pooled(e["across_seeds"]),
                    _pooled(e["across_draws"]),
                    e["dominant"] or "—",
                ]
            )
    header = ["model", "fraction", "runs", "seeds", "draws", "across seeds", "across draws", "dominant"]
    return out + table(header, rows)


def overlap_lines(report: dict[str, Any]) -> list[str]:
    """The overlap between independent subset draws (from the subsets step's overlap.json)."""
    overlap: dict[str, dict[str, Any]] | None = report.get("overlap")
    if not overlap:
        return []
    seeds = (report["source"].get("overlap") or {}).get("seeds") or []
    drawn = f" (subset seeds {', '.join(map(str, seeds))})" if seeds else ""
    out = [
        "",
        "## Overlap between subset draws",
        "",
        f"Pairwise image overlap of independent draws{drawn}: mean (max) % of one draw's images "
        "also in the other, the % two independent uniform draws would share, and the largest "
        "per-class overlap (Dice over the images holding the class). Rows: the fractions "
        "trained (report.json keeps every fraction of the subsets).",
        "",
    ]
    trained = set(report["fractions"])
    rows = []
    for strategy, by_pct in overlap.items():
        shown = {k: e for k, e in by_pct.items() if k in trained} or by_pct
        for key, e in shown.items():
            largest = _opt(e["max_class_overlap_pct"], "{:.1f} %")
            if e["max_class"] is not None and e["max_class_overlap_pct"] is not None:
                largest += f" ({e['max_class']})"
            rows.append(
                [
                    f"`{strategy}`",
                    frac(key),
                    _opt(e["mean_overlap_pct"], "{:.1f} %") + _opt(e["max_overlap_pct"], " ({:.1f} %)"),
                    _opt(e["expected_random_pct"], "{:.1f} %"),
                    largest,
                ]
            )
    header = ["strategy", "fraction", "overlap mean (max)", "expected random", "largest class overlap"]
    return out + table(header, rows)


def regimes_lines(report: dict[str, Any]) -> list[str]:
    """Regime of each fraction per model (saturated / steep / collapsed)."""
    models: dict[str, Any] = report["models"]
    if not any(d.get("regimes") for d in models.values()):
        return []
    keys: list[str] = report["fractions"]
    out = [
        "",
        "## Regimes",
        "",
        "On the mean curve: saturated = retention ≥ 90 %; collapsed = at or below the cliff's lower "
        "fraction with retention < 50 %; steep = the rest (detpipe's thresholds, on top of the "
        "study's cliff).",
        "",
    ]
    rows = [[m] + [d.get("regimes", {}).get(k, "—") for k in keys] for m, d in models.items()]
    return out + table(["model"] + [frac(k) for k in keys], rows)


def still_improving_lines(report: dict[str, Any]) -> list[str]:
    """Runs whose best epoch came in their last epochs and that ran all planned epochs."""
    runs: list[dict[str, Any]] = report.get("still_improving") or []
    if not runs:
        return []
    share = f"{100 * report['settings']['late_fraction']:g} %"
    out = [
        "",
        "### Still improving",
        "",
        f"Best epoch in the last {share} of the epochs and all planned epochs run: stopped by the "
        "schedule while still improving; more epochs would likely help.",
        "",
    ]
    rows = [
        [
            r["model"],
            frac(r["fraction"]),
            _opt(r["seed"]),
            _opt(r["subset_seed"]),
            f"{r['best_epoch']}/{r['last_epoch']}",
            _opt(r["epochs"]),
        ]
        for r in runs
    ]
    return out + table(["model", "fraction", "seed", "draw", "best/last epoch", "planned"], rows)
