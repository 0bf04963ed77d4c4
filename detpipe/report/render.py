"""Render report.json's content as a human-readable markdown report.

Usage::

    text = render_markdown(report, ["map_vs_size.png", "retention_vs_size.png", "cliff.png"])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from detpipe.report.collect import fraction_key
from detpipe.report.sections import (
    format_stat,
    overlap_lines,
    policies_lines,
    regimes_lines,
    schedules_lines,
    still_improving_lines,
    strategies_lines,
    variance_lines,
)

LATE = "⚠"
NOT_FULL = "†"
_PLOT_TITLES = {
    "map_vs_size.png": "mAP50-95 vs training-set size (fits dashed)",
    "retention_vs_size.png": "Retention vs training-set size",
    "cliff.png": "mAP50-95 lost at each adjacent step (cliffs outlined)",
    "strategies.png": "mAP50-95 vs training-set size per subset strategy",
    "policies.png": "mAP50-95 vs training-set size per epochs policy",
    "variance.png": "std of mAP50-95 across subset draws vs across training seeds",
}


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "r") -> list[str]:
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] + [f"--{':' if align == 'r' else '-'}"] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def format_percent(x: float) -> str:
    """A data amount in percent for people: 3 significant digits, no exponent ("1.25", "37,800")."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _frac(x: float | str) -> str:
    return f"{fraction_key(float(x))} %"


def _stability_cell(entries: list[dict[str, Any]] | None) -> str:
    if not entries:
        return "—"
    return ", ".join(
        f"{e['best_epoch']}/{e['last_epoch']}{' ' + LATE if e['late_peak'] else ''}" for e in entries
    )


BEYOND_FULL_SET = "extrapolated beyond the full set: not reachable with this data"
OUTSIDE_FIT = "extrapolated outside the fitted fractions"


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


def _target_cell(fit: dict[str, Any]) -> str:
    target = fit["target"]
    if target["status"] != "reachable":
        return f"not reachable (a = {fit['a']:.3f} ≤ {target['map']:g})"
    return target_text(target)


def _reproduction_lines(report: dict[str, Any]) -> list[str]:
    entries: dict[str, Any] = report["reproduction"]
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
    return out + _table(["model", "ours", "reference", "diff", "rel. diff", "ok"], rows)


def render_markdown(report: dict[str, Any], plots: Sequence[str] = ()) -> str:
    """The markdown report for ``report`` (as built by ``build_report``).

    Args:
        report: report.json's content.
        plots: File names of the plots written beside report.md, embedded in order.

    Returns:
        The markdown text.
    """
    models: dict[str, Any] = report["models"]
    keys: list[str] = report["fractions"]
    settings, source = report["settings"], report["source"]
    heads = ["model"] + [_frac(k) for k in keys]
    strategy = f", subset strategy `{source['strategy']}`" if source["strategy"] else ""
    if source.get("epochs_policy"):
        strategy += f", epochs policy `{source['epochs_policy']}`"
    out = [
        "# Data-scaling report",
        "",
        f"Source: `{source['path']}` ({source['kind']}, {source['runs']} runs{strategy}). "
        "Scores are the best validation mAP50-95 of each run; with several seeds, the mean "
        "± sample standard deviation, and the mean is used everywhere below.",
        "",
        "## Best mAP50-95",
        "",
    ]
    out += _table(
        heads, [[m] + [format_stat(d["best_map5095"].get(k)) for k in keys] for m, d in models.items()]
    )

    out += ["", "## Retention (% of the model's 100 % score)", ""]
    rows = []
    for m, d in models.items():
        ref = d["retention_reference"]
        label = m if ref is None or ref["full"] else f"{m} {NOT_FULL}"
        rows.append([label] + [f"{d['retention'][k]:.1f}" if k in d["retention"] else "—" for k in keys])
    out += _table(heads, rows)
    if any(d["retention_reference"] and not d["retention_reference"]["full"] for d in models.values()):
        out += ["", f"{NOT_FULL} no 100 % run: relative to the model's largest fraction instead."]
    out += regimes_lines(report)

    out += [
        "",
        "## Cliff",
        "",
        "The adjacent pair of fractions with the largest absolute mAP50-95 drop (the study's "
        "5 % → 2.5 % step); ratio = lower score / upper score.",
        "",
    ]
    rows = []
    for m, d in models.items():
        c = d["cliff"]
        if c is None:
            rows.append([m, "—", "—", "—", "—", "—"])
            continue
        ratio = "—" if c["ratio"] is None else f"{c['ratio']:.3f}"
        rows.append(
            [
                m,
                f"{_frac(c['from'])} → {_frac(c['to'])}",
                f"{c['upper_map']:.3f}",
                f"{c['lower_map']:.3f}",
                f"{c['drop']:.3f}",
                ratio,
            ]
        )
    out += _table(["model", "step", "upper mAP", "lower mAP", "drop", "ratio"], rows)

    out += ["", "## Stability (best epoch / last epoch)", ""]
    if any(d["stability"] for d in models.values()):
        out += _table(
            heads, [[m] + [_stability_cell(d["stability"].get(k)) for k in keys] for m, d in models.items()]
        )
        share = f"{100 * settings['late_fraction']:g} %"
        out += [
            "",
            f"{LATE} best epoch in the last {share} of the epochs: the run was still improving "
            f"and had not converged; {len(report['late_peaks'])} run(s) flagged.",
        ]
        out += still_improving_lines(report)
    else:
        out.append("No epoch information in the inputs.")

    out += [
        "",
        "## Power-law fit",
        "",
        "mAP(N) = a − b · N^(−α), N = training-set fraction in percent (100 = the full set); "
        f"the last column is the N at which the fit reaches mAP50-95 {settings['target']:g}"
        + (
            f"; fitted to fractions ≥ {_frac(settings['fit_min_fraction'])} only."
            if settings["fit_min_fraction"] is not None
            else "."
        ),
        "",
    ]
    rows = []
    for m, d in models.items():
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
    out += _table(["model", "a", "b", "α", "RMSE", "R²", "points", f"N for mAP {settings['target']:g}"], rows)

    for section in (strategies_lines, policies_lines, schedules_lines, variance_lines, overlap_lines):
        out += section(report)

    if report.get("reproduction"):
        out += _reproduction_lines(report)

    if report.get("logs"):
        out += [
            "",
            "## Training logs",
            "",
            f"`detpipe logs analyze` per run (paths under `{source['path']}`).",
            "",
        ]
        rows = [
            [
                e["model"],
                _frac(e["fraction"]),
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
        out += _table(header, rows, align="l")

    if plots:
        out += ["", "## Plots", ""]
        out += [f"![{_PLOT_TITLES.get(p, p)}]({p})\n" for p in plots]
    if report["notes"]:
        out += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(out).rstrip() + "\n"


def _log_order(entry: dict[str, Any]) -> tuple:
    """Training-log rows by model, fraction (ascending), strategy, seed, draw."""
    return (
        entry["model"],
        float(entry["fraction"]),
        entry.get("strategy") or "",
        entry["seed"] if entry["seed"] is not None else -1,
        entry.get("subset_seed") if entry.get("subset_seed") is not None else -1,
    )


def headline(report: dict[str, Any]) -> list[str]:
    """One line per model (its cliff and the data for the target mAP), then the best strategies:
    what ``detpipe report`` and a local sweep print."""
    target = report["settings"]["target"]
    lines = []
    for name, model in report["models"].items():
        cliff, fit = model["cliff"], model["fit"]
        if cliff is None:
            step = "no cliff"
        else:
            ratio = "n/a" if cliff["ratio"] is None else f"{cliff['ratio']:.3f}"
            step = f"cliff {cliff['from']} % -> {cliff['to']} % (ratio {ratio})"
        if fit["status"] != "ok":
            need = fit["status"]
        elif fit["target"]["status"] == "reachable":
            need = f"mAP {target:g} at {target_text(fit['target'])}"
        else:
            need = f"mAP {target:g} not reachable"
        lines.append(f"{name}: {step}; {need}")
    for name, winners in report["strategies"]["winner"].items():
        text = ", ".join(f"{k} % {v}" for k, v in winners.items())
        lines.append(f"{name}: best strategy per fraction: {text}")
    return lines
