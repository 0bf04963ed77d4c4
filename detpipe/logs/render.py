"""analysis.json's content as markdown (analysis.md).

Usage::

    text = render_markdown(analysis, ["a_losses.png", "a_metrics.png"])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from detpipe.logs.analysis import dropped_text
from detpipe.logs.plots import slug
from detpipe.markdown import table


def _f(x: float | None, fmt: str = ".4f") -> str:
    return "—" if x is None else format(x, fmt)


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:+.1f} %"


def _stable_text(run: dict[str, Any]) -> str:
    """``stable from epoch 60 (every window after: 10-epoch mAP50 CoV <= 0.16 %)``, or why not."""
    s = run.get("stability")
    if s is None:
        return "stable from epoch — (no mAP50)"
    if s["threshold_cov_pct"] is None:
        return f"stable from epoch — (no full {s['window']}-epoch mAP50 window)"
    rule = f"{s['window']}-epoch mAP50 CoV <= {s['threshold_cov_pct']:.2f} %"
    if run["stable_epoch"] is None:
        last = s["last_unstable"]
        return f"not stable ({rule}; the last window, {last['from']}–{last['to']}, is over it)"
    return f"stable from epoch {run['stable_epoch']} (every window after: {rule})"


def _run_lines(name: str, run: dict[str, Any], plots: Sequence[str]) -> list[str]:
    ep, best, t = run["epochs"], run["best"], run["time"]
    planned = "?" if ep["planned"] is None else str(ep["planned"])
    out = [
        f"## {name}",
        "",
        f"`{run['path']}` — **{run['status']}**: {run['reason']}. Epochs {ep['first']}–{ep['last']} "
        f"of {planned}; best mAP50-95 {_f(best['map5095'])} at epoch {best['epoch'] or '—'}; "
        f"{_stable_text(run)}.",
        "",
    ]
    if run["dropped"]["ranges"] or run["dropped"]["milestones"]:
        out += [
            f"Dropped {dropped_text(run['dropped'])}: not in this run's log (last epoch {ep['last']}).",
            "",
        ]
    if t["total_s"] is not None:
        ips = "" if t["images_per_s"] is None else f", {t['images_per_s']:g} images/s"
        out += [
            f"Time: {t['total_s']:.1f} s in all, {t['sec_per_epoch_median']:.2f} s per epoch (median){ips}.",
            "",
        ]
    if run["losses"]:
        rows = [
            [c, _f(v["first"]), _f(v["last"]), _pct(v["change_pct"]), str(len(run["spikes"][c]))]
            for c, v in run["losses"].items()
        ]
        out += ["### Losses", "", *table(["loss", "first", "last", "change", "spikes"], rows), ""]
        first = next(iter(run["loss_ranges"].values()))
        header = ["loss"] + [f"drop {r['from']}–{r['to']}" for r in first]
        rows = [
            [c] + ["—" if r["drop_pct"] is None else f"{r['drop_pct']:.1f} %" for r in ranges]
            for c, ranges in run["loss_ranges"].items()
        ]
        out += [*table(header, rows), ""]
    if run["ranges"]:
        first = next(iter(run["ranges"].values()))
        header = ["metric"] + [f"{r['from']}–{r['to']}" for r in first]
        rows = [
            [m]
            + [
                "—"
                if r["mean"] is None
                else f"{r['mean']:.4f} ± {r['std']:.4f} (CoV {_f(r['cov_pct'], '.1f')} %)"
                for r in ranges
            ]
            for m, ranges in run["ranges"].items()
        ]
        out += ["### Metrics per epoch range (mean ± std, CoV)", "", *table(header, rows), ""]
    if run["milestones"]:
        metrics = list(run["ranges"])
        rows = [[e] + [_f(vals.get(m)) for m in metrics] for e, vals in run["milestones"].items()]
        out += ["### Milestones", "", *table(["epoch", *metrics], rows), ""]
    events = [
        f"{c}: spikes at {', '.join(str(s['epoch']) for s in s_)}" for c, s_ in run["spikes"].items() if s_
    ]
    events += [f"{c}: oscillates at {', '.join(map(str, e))}" for c, e in run["oscillations"].items() if e]
    if events:
        out += ["### Spikes and oscillations", "", *[f"- {e}" for e in events], ""]
    if run["lr_phases"]:
        rows = [
            [p["phase"], f"{p['from']}–{p['to']}", f"{p['lr_start']:.2e} → {p['lr_end']:.2e}"]
            for p in run["lr_phases"]
        ]
        out += ["### Learning-rate phases (lr/pg0)", "", *table(["phase", "epochs", "lr"], rows), ""]
    own = [p for p in plots if p.startswith(slug(name) + "_")]
    out += [f"![{p}]({p})\n" for p in own]
    return out


def render_markdown(analysis: dict[str, Any], plots: Sequence[str] = ()) -> str:
    """The markdown text for ``analysis`` (as built by ``analyze``), embedding ``plots``."""
    out = ["# Training-log analysis", ""]
    runs = analysis["runs"]
    comparison = analysis.get("comparison")
    if comparison:
        rows = [
            [
                r["run"],
                r["status"],
                _f(r["best_map5095"]),
                str(r["best_epoch"] or "—"),
                _f(r["params_m"], ".2f"),
                _f(r["hours"], ".3f"),
                _f(r["map_per_mparam"]),
                _f(r["map_per_hour"]),
            ]
            for r in comparison["table"]
        ]
        header = [
            "run",
            "status",
            "best mAP50-95",
            "best epoch",
            "params (M)",
            "hours",
            "mAP/M params",
            "mAP/hour",
        ]
        w = comparison["winners"]
        out += [
            "## Comparison",
            "",
            *table(header, rows),
            "",
            f"Winner by accuracy: **{w['accuracy'] or '—'}**; per parameter: "
            f"**{w['accuracy_per_mparam'] or '—'}**; per training hour: **{w['accuracy_per_hour'] or '—'}**.",
            "",
        ]
        if "compare_map.png" in plots:
            out += ["![mAP50-95 per epoch](compare_map.png)", ""]
    for name, run in runs.items():
        out += _run_lines(name, run, plots)
    return "\n".join(out).rstrip() + "\n"
