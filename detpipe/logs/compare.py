"""Several runs side by side: a comparison table and the winners.

Winners are picked among runs with a best mAP50-95 (``nan`` runs count only when they
still recorded one): by accuracy (best mAP50-95), by accuracy per million parameters, and
by accuracy per training hour; a criterion whose input no run has is None. Ties go to the
run listed first.

Usage::

    comparison = compare_runs(analysis["runs"])
    comparison["winners"]["accuracy"]  # "yolo12s_100p"
"""

from __future__ import annotations

from typing import Any


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 6)


def compare_runs(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``{table: [...], winners: {accuracy, accuracy_per_mparam, accuracy_per_hour}}``."""
    table = []
    for name, run in runs.items():
        best = run["best"]["map5095"]
        mparams = None if run["params"] is None else run["params"] / 1e6
        hours = run["time"]["hours"]
        table.append(
            {
                "run": name,
                "status": run["status"],
                "best_map5095": best,
                "best_epoch": run["best"]["epoch"],
                "last_epoch": run["epochs"]["last"],
                "stable_epoch": run["stable_epoch"],
                "params_m": None if mparams is None else round(mparams, 4),
                "hours": hours,
                "map_per_mparam": _ratio(best, mparams),
                "map_per_hour": _ratio(best, hours),
            }
        )
    winners = {}
    for key, column in (
        ("accuracy", "best_map5095"),
        ("accuracy_per_mparam", "map_per_mparam"),
        ("accuracy_per_hour", "map_per_hour"),
    ):
        scored = [row for row in table if row[column] is not None]
        winners[key] = max(scored, key=lambda row, c=column: row[c])["run"] if scored else None
    return {"table": table, "winners": winners}
