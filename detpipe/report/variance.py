"""Which source of variance dominates: independent subset draws or training seeds.

Issue 12: besides the training seed, a subset seed draws an independent subset at a
fraction; the report shows mean ± std of mAP across draws and across training seeds
separately. For one model at one fraction (the main analysis' runs, > 1 of them):

* **across seeds**: the runs are grouped by subset draw; each group's mean and sample std
  (n - 1) over its training seeds; pooled over the groups with >= 2 runs as the mean of the
  group means and the square root of the mean of the group variances;
* **across draws**: likewise with the runs grouped by training seed, spread over the draws;
* **dominant**: the source with the larger pooled std (None when one is unknown or they tie).

A run without a seed (or subset seed) is grouped with the others lacking it.

The overlap between the draws comes from the subsets step's ``overlap.json`` (contract 1 of
issue 12): the report carries its ``summary`` (per strategy and fraction: mean and max
pairwise image overlap %, the overlap two independent uniform draws would have, and the
largest per-class overlap with its class), found at ``<runs>/subsets/overlap.json`` or in a
subsets output directory (``--subsets``).

Usage::

    variance = variance_by_model(groups)      # {model: {pct: {"runs", "seeds", "draws", ...}}}
    overlap = load_overlap(Path("runs/subsets/overlap.json"))
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from detpipe.errors import InvalidInput
from detpipe.io import read_json
from detpipe.report.analysis import order_models
from detpipe.report.collect import Run, fraction_key

log = logging.getLogger(__name__)

OVERLAP_NAME = "overlap.json"
SUBSETS_SUMMARY = "summary.json"
RUNS_SUBSETS = "subsets"
"""Where the sweep's plan step files the subsets' summary.json and overlap.json under runs."""
OVERLAP_KEYS = ("mean_overlap_pct", "max_overlap_pct", "max_class_overlap_pct", "expected_random_pct")


def _seed_key(value: int | None) -> tuple[bool, int]:
    return (value is None, value or 0)


def pooled(groups: Mapping[Any, list[float]]) -> dict[str, Any] | None:
    """Mean of the group means and sqrt(mean of the group variances) over groups of >= 2.

    Returns:
        ``{"mean", "std", "groups"}``, or None when no group has 2 runs.
    """
    usable = [scores for scores in groups.values() if len(scores) >= 2]
    if not usable:
        return None
    means = [statistics.fmean(s) for s in usable]
    variances = [statistics.variance(s) for s in usable]
    return {
        "mean": round(statistics.fmean(means), 6),
        "std": round(math.sqrt(statistics.fmean(variances)), 6),
        "groups": len(usable),
    }


def variance_of(runs: list[Run]) -> dict[str, Any]:
    """The spread across seeds and across draws of one (model, fraction) group's runs."""
    by_draw: dict[int | None, list[float]] = defaultdict(list)
    by_seed: dict[int | None, list[float]] = defaultdict(list)
    for run in runs:
        by_draw[run.subset_seed].append(run.best_map5095)
        by_seed[run.seed].append(run.best_map5095)
    seeds_std, draws_std = pooled(by_draw), pooled(by_seed)
    dominant = None
    if seeds_std is not None and draws_std is not None and seeds_std["std"] != draws_std["std"]:
        dominant = "draws" if draws_std["std"] > seeds_std["std"] else "seeds"
    return {
        "runs": len(runs),
        "seeds": sorted({r.seed for r in runs}, key=_seed_key),
        "draws": sorted({r.subset_seed for r in runs}, key=_seed_key),
        "across_seeds": seeds_std,
        "across_draws": draws_std,
        "dominant": dominant,
    }


def variance_by_model(groups: Mapping[tuple[str, str], list[Run]]) -> dict[str, dict[str, Any]]:
    """``{model: {pct: variance_of(runs)}}`` for every (model, fraction) with > 1 run."""
    out: dict[str, dict[str, Any]] = {}
    for model in order_models(m for m, _ in groups):
        keys = sorted((k for m, k in groups if m == model and len(groups[m, k]) > 1), key=float)
        if keys:
            out[model] = {k: variance_of(groups[model, k]) for k in keys}
    return out


def _check_overlap(summary: Any, where: Path) -> dict[str, dict[str, dict[str, Any]]]:
    if not isinstance(summary, dict):
        raise InvalidInput(f"{where}: 'summary' must be an object of strategies")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for strategy, by_pct in summary.items():
        if not isinstance(by_pct, dict):
            raise InvalidInput(f"{where}: summary.{strategy} must be an object of fractions")
        out[strategy] = {}
        for pct, entry in sorted(by_pct.items(), key=lambda kv: _pct_order(kv[0], where)):
            if not isinstance(entry, dict):
                raise InvalidInput(f"{where}: summary.{strategy}.{pct} must be an object")
            for key in OVERLAP_KEYS:
                value = entry.get(key)
                if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                    raise InvalidInput(f"{where}: summary.{strategy}.{pct}.{key} is not a number: {value!r}")
            out[strategy][fraction_key(float(pct))] = {
                **{k: entry.get(k) for k in OVERLAP_KEYS},
                "max_class": entry.get("max_class"),
            }
    return out


def _pct_order(pct: str, where: Path) -> float:
    try:
        return float(pct)
    except (TypeError, ValueError):
        raise InvalidInput(f"{where}: summary fraction {pct!r} is not a percentage") from None


def load_overlap(path: Path) -> dict[str, Any]:
    """Read an ``overlap.json``: its ``seeds`` and validated ``summary`` (strategy -> pct -> stats).

    Raises:
        InvalidInput: Missing or malformed file.
    """
    data = read_json(path)
    if not isinstance(data, dict) or "summary" not in data:
        raise InvalidInput(f"{path}: not a subsets overlap.json (no 'summary')")
    seeds = data.get("seeds")
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise InvalidInput(f"{path}: 'seeds' must be a list of integers")
    return {"seeds": seeds, "summary": _check_overlap(data["summary"], path)}


def find_overlap(runs_dir: Path | None, subsets_dir: Path | None) -> tuple[Path | None, str | None]:
    """Where the overlap table is: ``subsets_dir/overlap.json`` when given, else
    ``<runs_dir>/subsets/overlap.json`` when present.

    Returns:
        ``(path or None, note or None)``: a note when a subsets dir holds a single draw.

    Raises:
        InvalidInput: ``subsets_dir`` is not a subsets output directory.
    """
    if subsets_dir is not None:
        subsets_dir = Path(subsets_dir)
        if not subsets_dir.is_dir():
            raise InvalidInput(f"{subsets_dir}: not a directory (--subsets wants a subsets output dir)")
        path = subsets_dir / OVERLAP_NAME
        if path.is_file():
            return path, None
        if not (subsets_dir / SUBSETS_SUMMARY).is_file():
            raise InvalidInput(f"{subsets_dir}: not a subsets output dir (no {SUBSETS_SUMMARY})")
        return None, f"{subsets_dir}: no {OVERLAP_NAME} (a single subset draw); no overlap table"
    if runs_dir is not None:
        path = Path(runs_dir) / RUNS_SUBSETS / OVERLAP_NAME
        if path.is_file():
            return path, None
    return None, None
