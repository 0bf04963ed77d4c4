"""Assemble report.md from its sections (:mod:`detpipe.report.sections`), and the headline.

Usage::

    text = render_markdown(report, ["map_vs_size.png", "retention_vs_size.png", "cliff.png"])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from detpipe.report import sections as s
from detpipe.report.sections import target_text


def render_markdown(report: dict[str, Any], plots: Sequence[str] = ()) -> str:
    """The markdown report for ``report`` (as built by ``build_report``).

    Args:
        report: report.json's content.
        plots: File names of the plots written beside report.md, embedded in order.

    Returns:
        The markdown text.
    """
    out = [
        *s.intro_lines(report),
        *s.best_map_lines(report),
        *s.retention_lines(report),
        *s.regimes_lines(report),
        *s.cliff_lines(report),
        *s.stability_lines(report),
        *s.fit_lines(report),
        *s.strategies_lines(report),
        *s.policies_lines(report),
        *s.schedules_lines(report),
        *s.variance_lines(report),
        *s.overlap_lines(report),
        *s.reproduction_lines(report),
        *s.logs_lines(report),
        *s.plots_lines(plots),
        *s.notes_lines(report),
    ]
    return "\n".join(out).rstrip() + "\n"


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
