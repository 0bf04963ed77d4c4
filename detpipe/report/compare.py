"""Comparisons along the sweep's extra axes: subset strategies, epochs policies, schedules.

Issue 12 makes the subset strategy (``p``, ``random``, ``topn``) and the epochs policy
(``fixed``, ``iterations``) axes of the sweep; the study trained only ``p`` with fixed epochs
and proposed comparing the others. Each comparison holds the other axis at its primary value:

* ``strategies``: per model, per fraction, per strategy the mean / sample std / count of best
  mAP50-95 over the runs (seeds and subset draws) at the primary epochs policy;
* ``policies``: the same per epochs policy, at the primary strategy;
* ``winner``: per model and fraction where >= 2 values were run, the one with the highest
  mean (a tie goes to the primary value, then to the first alphabetically);
* ``schedules``: per run the planned schedule (``epochs_policy``, ``epochs``,
  ``epochs_scale``, ``capped``), i.e. which policy each run used.

Usage::

    selection = select_primary(runs, strategy=None, policy=None)
    strategies = compare_axis(selection.everything, "strategy", selection.strategy,
                              {"epochs_policy": selection.policy})
    strategies["winner"]["yolo12n"]["5"]     # -> "p"
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from detpipe.report.analysis import order_models
from detpipe.report.collect import Run, fraction_key
from detpipe.subsets.config import pct_number

AXES = ("strategy", "epochs_policy")


def _stats(scores: list[float]) -> dict[str, Any]:
    return {
        "mean": round(statistics.fmean(scores), 6),
        "std": round(statistics.stdev(scores), 6) if len(scores) > 1 else None,
        "n": len(scores),
    }


def compare_axis(
    runs: list[Run], axis: str, primary: str | None, fixed: Mapping[str, str | None]
) -> dict[str, Any]:
    """Best mAP50-95 per model, fraction and value of ``axis``, with the winner of each cell.

    Args:
        runs: All runs (unknown strategy/policy already resolved, see ``select_primary``).
        axis: ``strategy`` or ``epochs_policy``.
        primary: The axis' primary value (wins ties).
        fixed: The other axis held at its primary value, e.g. ``{"epochs_policy": "fixed"}``.

    Returns:
        ``{"primary", "present", "models": {model: {pct: {value: {mean, std, n}}}},
        "winner": {model: {pct: value}}}``; ``present`` lists the values with runs here.
    """
    assert axis in AXES
    scores: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        value = getattr(run, axis)
        if value is None or any(getattr(run, k) != v for k, v in fixed.items()):
            continue
        scores[run.model][fraction_key(run.fraction)].setdefault(value, []).append(run.best_map5095)
    models: dict[str, dict[str, dict[str, Any]]] = {}
    winner: dict[str, dict[str, str]] = {}
    for model in order_models(scores):
        by_pct = scores[model]
        models[model] = {}
        for key in sorted(by_pct, key=float):
            cell = {v: _stats(by_pct[key][v]) for v in sorted(by_pct[key])}
            models[model][key] = cell
            if len(cell) > 1:
                best = min(cell, key=lambda v: (-cell[v]["mean"], v != primary, v))
                winner.setdefault(model, {})[key] = best
    present = sorted({v for m in models.values() for cell in m.values() for v in cell})
    return {"primary": primary, "present": present, "models": models, "winner": winner}


def schedules(runs: list[Run]) -> list[dict[str, Any]]:
    """Which schedule each run used, in report order (model, fraction, strategy, policy, seeds)."""

    rank = {m: i for i, m in enumerate(order_models({r.model for r in runs}))}
    ordered = sorted(
        runs,
        key=lambda r: (
            rank[r.model],
            r.fraction,
            r.strategy or "",
            r.epochs_policy or "",
            r.seed is None,
            r.seed or 0,
            r.subset_seed is None,
            r.subset_seed or 0,
        ),
    )
    return [
        {
            "model": r.model,
            "fraction": pct_number(r.fraction),
            "strategy": r.strategy,
            "seed": r.seed,
            "subset_seed": r.subset_seed,
            "epochs_policy": r.epochs_policy,
            "epochs": r.epochs,
            "epochs_scale": None if r.epochs_scale is None else round(r.epochs_scale, 6),
            "capped": r.capped,
        }
        for r in ordered
    ]
