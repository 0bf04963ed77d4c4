"""Every markdown section of report.md, one function each, in the order report.md has them.

Each ``*_lines`` function takes report.json's content and returns its lines, or ``[]`` when the
section has nothing to show (so a report of a plain sweep has none of the extra axes' sections);
:func:`detpipe.report.render.render_markdown` only concatenates them.

Usage::

    lines = best_map_lines(report) + retention_lines(report) + regimes_lines(report)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from detpipe.markdown import table
from detpipe.report.collect import fraction_key

LATE = "⚠"
NOT_FULL = "†"
BEYOND_FULL_SET = "extrapolated beyond the full set: not reachable with this data"
OUTSIDE_FIT = "extrapolated outside the fitted fractions"
PLOT_TITLES = {
    "map_vs_size.png": "mAP50-95 vs training-set size (fits dashed)",
    "retention_vs_size.png": "Retention vs training-set size",
    "cliff.png": "mAP50-95 lost at each adjacent step (cliffs outlined)",
    "strategies.png": "mAP50-95 vs training-set size per subset strategy",
    "policies.png": "mAP50-95 vs training-set size per epochs policy",
    "variance.png": "std of mAP50-95 across subset draws vs across training seeds",
}


def frac(x: float | str) -> str:
    """A fraction for people: ``2.5 %``."""
    return f"{fraction_key(float(x))} %"


def format_percent(x: float) -> str:
    """A data amount in percent for people: 3 significant digits, no exponent ("1.25", "37,800")."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def target_text(target: dict[str, Any]) -> str:
    """A reachable target's data amount, saying when it is an extrapolation.

    ``37,798 %`` reads as a plan; it is the fitted curve followed far past the data, so a
    fraction beyond the full set is printed ``~37,798 % (extrapolated beyond the full set:
    not reachable with this data)`` and one outside the fitted fractions ``~4 % (extrapolated
    outside the fitted fractions)``. The image count comes first in the parentheses when the
    full set's size is known.
    """
    approx = "~" if target["extrapolated"] or target["beyond_full_set"] else ""
    notes = [] if target["images"] is None else [f"{target['images']:,} images"]
    if target["beyond_full_set"]:
        notes.append(BEYOND_FULL_SET)
    elif target["extrapolated"]:
        notes.append(OUTSIDE_FIT)
    text = f"{approx}{format_percent(target['fraction'])} %"
    return f"{text} ({'; '.join(notes)})" if notes else text


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


def _heads(report: dict[str, Any]) -> list[str]:
    return ["model"] + [frac(k) for k in report["fractions"]]


def intro_lines(report: dict[str, Any]) -> list[str]:
    """The title and where the runs came from."""
    source = report["source"]
    strategy = f", subset strategy `{source['strategy']}`" if source["strategy"] else ""
    if source.get("epochs_policy"):
        strategy += f", epochs policy `{source['epochs_policy']}`"
    return [
        "# Data-scaling report",
        "",
        f"Source: `{source['path']}` ({source['kind']}, {source['runs']} runs{strategy}). "
        "Scores are the best validation mAP50-95 of each run; with several seeds, the mean "
        "± sample standard deviation, and the mean is used everywhere below.",
    ]


def best_map_lines(report: dict[str, Any]) -> list[str]:
    """Best mAP50-95 per model x fraction."""
    models: dict[str, Any] = report["models"]
    keys: list[str] = report["fractions"]
    rows = [[m] + [format_stat(d["best_map5095"].get(k)) for k in keys] for m, d in models.items()]
    return ["", "## Best mAP50-95", "", *table(_heads(report), rows)]


def retention_lines(report: dict[str, Any]) -> list[str]:
    """Retention against the model's 100 % score (or its largest fraction, marked)."""
    models: dict[str, Any] = report["models"]
    keys: list[str] = report["fractions"]
    out = ["", "## Retention (% of the model's 100 % score)", ""]
    rows = []
    for m, d in models.items():
        ref = d["retention_reference"]
        label = m if ref is None or ref["full"] else f"{m} {NOT_FULL}"
        rows.append([label] + [f"{d['retention'][k]:.1f}" if k in d["retention"] else "—" for k in keys])
    out += table(_heads(report), rows)
    if any(d["retention_reference"] and not d["retention_reference"]["full"] for d in models.values()):
        out += ["", f"{NOT_FULL} no 100 % run: relative to the model's largest fraction instead."]
    return out


def cliff_lines(report: dict[str, Any]) -> list[str]:
    """The adjacent step with the largest drop, per model."""
    out = [
        "",
        "## Cliff",
        "",
        "The adjacent pair of fractions with the largest absolute mAP50-95 drop (the study's "
        "5 % → 2.5 % step); ratio = lower score / upper score.",
        "",
    ]
    rows = []
    for m, d in report["models"].items():
        c = d["cliff"]
        if c is None:
            rows.append([m, "—", "—", "—", "—", "—"])
            continue
        ratio = "—" if c["ratio"] is None else f"{c['ratio']:.3f}"
        rows.append(
            [
                m,
                f"{frac(c['from'])} → {frac(c['to'])}",
                f"{c['upper_map']:.3f}",
                f"{c['lower_map']:.3f}",
                f"{c['drop']:.3f}",
                ratio,
            ]
        )
    return out + table(["model", "step", "upper mAP", "lower mAP", "drop", "ratio"], rows)


def _stability_cell(entries: list[dict[str, Any]] | None) -> str:
    if not entries:
        return "—"
    return ", ".join(
        f"{e['best_epoch']}/{e['last_epoch']}{' ' + LATE if e['late_peak'] else ''}" for e in entries
    )


def stability_lines(report: dict[str, Any]) -> list[str]:
    """Best epoch / last epoch per model x fraction, late peaks flagged, then the runs still improving."""
    models: dict[str, Any] = report["models"]
    keys: list[str] = report["fractions"]
    out = ["", "## Stability (best epoch / last epoch)", ""]
    if not any(d["stability"] for d in models.values()):
        return [*out, "No epoch information in the inputs."]
    rows = [[m] + [_stability_cell(d["stability"].get(k)) for k in keys] for m, d in models.items()]
    out += table(_heads(report), rows)
    share = f"{100 * report['settings']['late_fraction']:g} %"
    out += [
        "",
        f"{LATE} best epoch in the last {share} of the epochs: the run was still improving "
        f"and had not converged; {len(report['late_peaks'])} run(s) flagged.",
    ]
    return out + still_improving_lines(report)


def _target_cell(fit: dict[str, Any]) -> str:
    target = fit["target"]
    if target["status"] != "reachable":
        return f"not reachable (a = {fit['a']:.3f} ≤ {target['map']:g})"
    return target_text(target)


def fit_lines(report: dict[str, Any]) -> list[str]:
    """The power-law fit per model and the data it needs for the target mAP."""
    settings = report["settings"]
    out = [
        "",
        "## Power-law fit",
        "",
        "mAP(N) = a − b · N^(−α), N = training-set fraction in percent (100 = the full set); "
        f"the last column is the N at which the fit reaches mAP50-95 {settings['target']:g}"
        + (
            f"; fitted to fractions ≥ {frac(settings['fit_min_fraction'])} only."
            if settings["fit_min_fraction"] is not None
            else "."
        ),
        "",
    ]
    rows = []
    for m, d in report["models"].items():
        f = d["fit"]
        if f["status"] != "ok":
            rows.append([m, "—", "—", "—", "—", "—", "—", f"{f['status']} ({f['reason']})"])
            continue
        r2 = "—" if f["r2"] is None else f"{f['r2']:.4f}"
        rows.append(
            [
                m,
                f"{f['a']:.4f}",
                f"{f['b']:.4f}",
                f"{f['alpha']:.4f}",
                f"{f['rmse']:.4f}",
                r2,
                str(f["points"]),
                _target_cell(f),
            ]
        )
    header = ["model", "a", "b", "α", "RMSE", "R²", "points", f"N for mAP {settings['target']:g}"]
    return out + table(header, rows)


def reproduction_lines(report: dict[str, Any]) -> list[str]:
    """Our 100 % runs against the published reference (``--reference``)."""
    entries: dict[str, Any] | None = report.get("reproduction")
    if not entries:
        return []
    bound = report["settings"]["max_rel_diff_pct"]
    verdict = "reproduced" if report["reproduction_ok"] else "NOT reproduced"
    out = [
        "",
        "## Reproduction",
        "",
        f"Our 100 % run against the published mAP50-95 (`{report['settings']['reference']}`); a "
        f"model reproduces within ±{bound:g} % relative difference. Overall: **{verdict}**.",
        "",
    ]
    rows = []
    for name, e in entries.items():
        if e["ours"] is None:
            rows.append([name, "—", f"{e['reference']:.3f}", "—", "—", "✗ (no 100 % run)"])
            continue
        rows.append(
            [
                name,
                f"{e['ours']:.3f}",
                f"{e['reference']:.3f}",
                f"{e['abs_diff']:+.3f}",
                f"{e['rel_diff_pct']:+.1f} %",
                "✓" if e["ok"] else "✗",
            ]
        )
    return out + table(["model", "ours", "reference", "diff", "rel. diff", "ok"], rows)


def _log_order(entry: dict[str, Any]) -> tuple:
    """Training-log rows by model, fraction (ascending), strategy, seed, draw."""
    return (
        entry["model"],
        float(entry["fraction"]),
        entry.get("strategy") or "",
        entry["seed"] if entry["seed"] is not None else -1,
        entry.get("subset_seed") if entry.get("subset_seed") is not None else -1,
    )


def logs_lines(report: dict[str, Any]) -> list[str]:
    """Links to each run's ``detpipe logs analyze`` output."""
    if not report.get("logs"):
        return []
    out = [
        "",
        "## Training logs",
        "",
        f"`detpipe logs analyze` per run (paths under `{report['source']['path']}`).",
        "",
    ]
    rows = [
        [
            e["model"],
            frac(e["fraction"]),
            e.get("strategy") or "—",
            "—" if e["seed"] is None else str(e["seed"]),
            "—" if e.get("subset_seed") is None else str(e["subset_seed"]),
            e["status"] or "—",
            "—" if e["stable_epoch"] is None else str(e["stable_epoch"]),
            f"[{e['analysis']}]({e['analysis']})",
        ]
        for e in sorted(report["logs"], key=_log_order)
    ]
    header = ["model", "fraction", "strategy", "seed", "draw", "status", "stable from", "analysis"]
    return out + table(header, rows, align="l")


def plots_lines(plots: Sequence[str]) -> list[str]:
    """The plots written beside report.md, embedded in order."""
    if not plots:
        return []
    return ["", "## Plots", "", *[f"![{PLOT_TITLES.get(p, p)}]({p})\n" for p in plots]]


def notes_lines(report: dict[str, Any]) -> list[str]:
    """What the report noticed about its inputs."""
    if not report["notes"]:
        return []
    return ["", "## Notes", "", *[f"- {n}" for n in report["notes"]]]
