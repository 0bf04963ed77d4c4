"""Build the data-scaling report: collect runs, analyze, fit, write JSON + markdown + PNGs.

Usage::

    from detpipe.report.stage import ReportConfig, write_report

    report = write_report(ReportConfig(out=Path("runs/report"), runs=Path("runs/sweep"), target=0.4))
    report["models"]["yolo12n"]["cliff"]    # {"from": 5, "to": 2.5, "ratio": 0.51, ...}

The output directory (replaced atomically, nothing written on bad input) holds
``report.json``, ``report.md``, ``report.html`` (the markdown as one self-contained page, plots
embedded: :mod:`detpipe.report.html`), ``map_vs_size.png``, ``retention_vs_size.png`` and ``cliff.png``,
plus ``strategies.png`` / ``policies.png`` when >= 2 subset strategies / epochs policies were
run and ``variance.png`` when some fraction has runs over several seeds or subset draws.

Runs of several strategies and policies are welcome: the main analysis (table, retention,
cliff, fit, stability, regimes, variance) uses the primary strategy and policy (see
:func:`~detpipe.report.collect.select_primary`); ``strategies`` and ``policies`` compare the
others (:mod:`~detpipe.report.compare`), ``schedules`` says which policy each run used.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detpipe.errors import InvalidInput
from detpipe.io import atomic_dir, write_json, write_text
from detpipe.report.analysis import Cell, ModelAnalysis, analyze_model, order_models
from detpipe.report.collect import (
    EPOCHS_POLICIES,
    Run,
    find_log_analyses,
    fraction_key,
    group_runs,
    load_runs,
    load_table,
)
from detpipe.report.compare import compare_axis, schedules
from detpipe.report.fit import FitResult, fit_power_law
from detpipe.report.reproduction import MAX_REL_DIFF_PCT, compare, load_reference
from detpipe.report.select import select_primary
from detpipe.report.variance import find_overlap, load_overlap, variance_by_model

log = logging.getLogger(__name__)

SCHEMA = "detpipe.report/v1"
FIT_N = "training-set fraction in percent (100 = the full set)"


@dataclass(frozen=True)
class ReportConfig:
    """What to report on and how.

    Attributes:
        out: Output directory (replaced atomically).
        runs: Directory searched recursively for ``train_summary.json``; exclusive with ``table``.
        table: CSV table ``model,fraction,best_map5095[,...]``; exclusive with ``runs``.
        target: mAP50-95 for which the fit predicts the data needed, in (0, 1).
        late_fraction: A best epoch in this last share of the epochs is flagged as a late peak.
        full_images: Images in the 100 % set (COCO train2017: 118287), to express N as images.
        strategy: Keep only runs on subsets of this strategy (``p``, ``random``, ``topn``).
        fit_min_fraction: Fit the power law only to fractions >= this (percent), e.g. the
            upper end of the cliff, where a single power law describes the data; None: all.
        reference: CSV ``model,map5095`` of published full-data scores: adds the reproduction
            gate (``reproduction``, ``reproduction_ok``); None: no gate.
        max_rel_diff: The gate's bound on ``|ours - reference| / reference``, in percent.
        epochs_policy: The main analysis' epochs policy (``fixed``, ``iterations``); None:
            ``fixed`` when present, else the only one.
        subsets: A ``detpipe subsets`` output dir whose ``overlap.json`` gives the overlap
            table between subset draws; None: ``<runs>/subsets/overlap.json`` when present.
    """

    out: Path
    runs: Path | None = None
    table: Path | None = None
    target: float = 0.4
    late_fraction: float = 0.1
    full_images: int | None = None
    strategy: str | None = None
    fit_min_fraction: float | None = None
    reference: Path | None = None
    max_rel_diff: float = MAX_REL_DIFF_PCT
    epochs_policy: str | None = None
    subsets: Path | None = None

    def __post_init__(self) -> None:
        if (self.runs is None) == (self.table is None):
            raise InvalidInput("give exactly one of --runs DIR or --table CSV")
        if not (math.isfinite(self.target) and 0.0 < self.target < 1.0):
            raise InvalidInput(f"--target must be an mAP50-95 in (0, 1), got {self.target:g}")
        if not (math.isfinite(self.late_fraction) and 0.0 < self.late_fraction < 1.0):
            raise InvalidInput(f"--late-fraction must be in (0, 1), got {self.late_fraction:g}")
        if self.fit_min_fraction is not None and not (
            math.isfinite(self.fit_min_fraction) and 0.0 < self.fit_min_fraction <= 100.0
        ):
            raise InvalidInput(f"--fit-min-fraction must be in (0, 100], got {self.fit_min_fraction:g}")
        if not (math.isfinite(self.max_rel_diff) and self.max_rel_diff >= 0.0):
            raise InvalidInput(f"--max-rel-diff must be a percentage >= 0, got {self.max_rel_diff:g}")
        if self.full_images is not None and self.full_images < 1:
            raise InvalidInput(f"--full-images must be >= 1, got {self.full_images}")
        if self.epochs_policy is not None and self.epochs_policy not in EPOCHS_POLICIES:
            raise InvalidInput(
                f"--epochs-policy must be one of {', '.join(EPOCHS_POLICIES)}, got {self.epochs_policy!r}"
            )


def _num(x: float) -> int | float:
    """A fraction as a JSON number written minimally: 5.0 -> 5, 2.5 -> 2.5."""
    return int(x) if float(x).is_integer() else float(fraction_key(x))


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(float(x), digits)


def _target_json(fitted: list[Cell], result: FitResult, config: ReportConfig) -> dict[str, Any]:
    fit = result.fit
    assert fit is not None
    needed = fit.required_n(config.target)
    if needed is None:
        return {
            "map": config.target,
            "status": "not reachable",
            "reason": f"target {config.target:g} >= asymptote a = {fit.a:.4f}",
        }
    lo, hi = fitted[0].fraction, fitted[-1].fraction
    return {
        "map": config.target,
        "status": "reachable",
        "fraction": _r(needed),
        "images": math.ceil(needed / 100.0 * config.full_images) if config.full_images else None,
        "extrapolated": not lo <= needed <= hi,
        "beyond_full_set": needed > 100.0,
    }


def _fit_json(fitted: list[Cell], result: FitResult, config: ReportConfig) -> dict[str, Any]:
    if result.fit is None:
        return {"status": result.status, "reason": result.reason, "min_fraction": config.fit_min_fraction}
    fit = result.fit
    return {
        "status": "ok",
        "n": FIT_N,
        "a": _r(fit.a),
        "b": _r(fit.b),
        "alpha": _r(fit.alpha),
        "rmse": _r(fit.rmse),
        "r2": _r(fit.r2),
        "points": fit.points,
        "min_fraction": config.fit_min_fraction,
        "at_bound": list(fit.at_bound),
        "target": _target_json(fitted, result, config),
    }


def fitted_cells(model: ModelAnalysis, config: ReportConfig) -> list[Cell]:
    """The cells the power law is fitted to (all, or those at >= ``fit_min_fraction``)."""
    low = config.fit_min_fraction
    return [c for c in model.cells if low is None or c.fraction >= low]


def model_json(model: ModelAnalysis, result: FitResult, config: ReportConfig) -> dict[str, Any]:
    """The ``models.<model>`` entry of report.json."""
    cliff = model.cliff
    stability: dict[str, list[dict[str, Any]]] = {}
    for s in model.stability:
        stability.setdefault(fraction_key(s.run.fraction), []).append(
            {
                "seed": s.run.seed,
                "subset_seed": s.run.subset_seed,
                "best_epoch": s.run.best_epoch,
                "last_epoch": s.run.last_epoch,
                "epochs": s.run.epochs,
                "position": _r(s.position),
                "late_peak": s.late,
                "still_improving": s.still_improving,
            }
        )
    return {
        "best_map5095": {
            c.key: {
                "mean": _r(c.mean),
                "std": _r(c.std),
                "n": len(c.runs),
                "seeds": [r.seed for r in c.runs if r.seed is not None],
            }
            for c in model.cells
        },
        "best_map50": {c.key: _r(c.map50) for c in model.cells if c.map50 is not None},
        "retention": {k: _r(v) for k, v in model.retention.items()},
        "retention_reference": None
        if model.reference is None
        else {"fraction": _num(model.reference.fraction), "full": model.reference_is_full},
        "cliff": None
        if cliff is None
        else {
            "from": _num(cliff.upper.fraction),
            "to": _num(cliff.lower.fraction),
            "ratio": _r(cliff.ratio),
            "drop": _r(cliff.drop),
            "upper_map": _r(cliff.upper.mean),
            "lower_map": _r(cliff.lower.mean),
        },
        "steps": [
            {
                "from": _num(s.upper.fraction),
                "to": _num(s.lower.fraction),
                "drop": _r(s.drop),
                "ratio": _r(s.ratio),
            }
            for s in model.steps
        ],
        "stability": stability,
        "regimes": dict(model.regimes),
        "fit": _fit_json(fitted_cells(model, config), result, config),
    }


def _run_json(run: Run) -> dict[str, Any]:
    return {
        "model": run.model,
        "fraction": _num(run.fraction),
        "seed": run.seed,
        "subset_seed": run.subset_seed,
        "best_epoch": run.best_epoch,
        "last_epoch": run.last_epoch,
    }


def build_report(config: ReportConfig) -> dict[str, Any]:
    """Collect and analyze the runs; returns the report.json content (writes nothing).

    Raises:
        InvalidInput: Bad or inconsistent input (see :mod:`detpipe.report.collect`).
    """
    if config.runs is not None:
        loaded, source = load_runs(config.runs), {"kind": "runs", "path": str(config.runs)}
    else:
        assert config.table is not None
        loaded, source = load_table(config.table), {"kind": "table", "path": str(config.table)}
    selection = select_primary(loaded, config.strategy, config.epochs_policy)
    runs = selection.runs
    if not runs:
        raise InvalidInput(
            f"no runs with subset strategy {selection.strategy!r} and epochs policy "
            f"{selection.policy!r} together (choose with --strategy / --epochs-policy)"
        )
    groups = group_runs(runs)
    overlap_path, overlap_note = find_overlap(config.runs, config.subsets)
    overlap = None if overlap_path is None else load_overlap(overlap_path)
    source.update(
        runs=len(runs),
        strategy=selection.strategy,
        epochs_policy=selection.policy,
        all_runs=len(loaded),
        overlap=None if overlap is None else {"path": str(overlap_path), "seeds": overlap["seeds"]},
    )

    models: dict[str, Any] = {}
    notes: list[str] = list(selection.notes)
    if overlap_note:
        notes.append(overlap_note)
    late_peaks: list[dict[str, Any]] = []
    still_improving: list[dict[str, Any]] = []
    for name in order_models(m for m, _ in groups):
        analysis = analyze_model(name, groups, config.late_fraction)
        fitted = fitted_cells(analysis, config)
        result = fit_power_law([c.fraction for c in fitted], [c.mean for c in fitted])
        if result.fit is None:
            notes.append(f"{name}: power-law fit {result.status} ({result.reason})")
        elif result.fit.at_bound:
            notes.append(
                f"{name}: fit parameter(s) {', '.join(result.fit.at_bound)} at a bound; "
                "treat the extrapolation with care"
            )
        notes.extend(analysis.notes)
        models[name] = model_json(analysis, result, config)
        late_peaks += [_run_json(s.run) for s in analysis.stability if s.late]
        still_improving += [
            {**_run_json(s.run), "epochs": s.run.epochs} for s in analysis.stability if s.still_improving
        ]
    fractions = sorted({fraction_key(r.fraction) for r in runs}, key=float)
    reproduction, reproduction_ok = None, None
    if config.reference is not None:
        reference = load_reference(config.reference)
        reproduction, reproduction_ok = compare(models, reference, config.max_rel_diff)
        for name, entry in reproduction.items():
            if entry["ours"] is None:
                notes.append(f"{name}: no 100 % run to compare with the reference")
    return {
        "schema": SCHEMA,
        "source": source,
        "settings": {
            "target": config.target,
            "late_fraction": config.late_fraction,
            "full_images": config.full_images,
            "fit_n": FIT_N,
            "fit_min_fraction": config.fit_min_fraction,
            "reference": None if config.reference is None else str(config.reference),
            "max_rel_diff_pct": config.max_rel_diff,
            "strategy": config.strategy,
            "epochs_policy": config.epochs_policy,
            "subsets": None if config.subsets is None else str(config.subsets),
        },
        "fractions": fractions,
        "models": models,
        "late_peaks": late_peaks,
        "still_improving": still_improving,
        "strategies": compare_axis(
            selection.everything, "strategy", selection.strategy, {"epochs_policy": selection.policy}
        ),
        "policies": compare_axis(
            selection.everything, "epochs_policy", selection.policy, {"strategy": selection.strategy}
        ),
        "schedules": schedules(selection.everything),
        "variance": variance_by_model(groups),
        "overlap": None if overlap is None else overlap["summary"],
        "logs": find_log_analyses(selection.everything, config.runs) if config.runs is not None else [],
        "reproduction": reproduction,
        "reproduction_ok": reproduction_ok,
        "notes": notes,
    }


def write_report(config: ReportConfig) -> dict[str, Any]:
    """Build the report and write it to ``config.out`` atomically; returns report.json's content.

    Raises:
        InvalidInput: Bad input; nothing is written then.
    """
    report = build_report(config)  # all validation happens before anything is written
    from detpipe.report.html import write_page
    from detpipe.report.plots import write_plots  # matplotlib only once the input is good
    from detpipe.report.render import render_markdown

    with atomic_dir(config.out) as tmp:
        plots = write_plots(report, tmp)
        write_json(tmp / "report.json", report)
        write_text(tmp / "report.md", render_markdown(report, plots))
        write_page(tmp / "report.md", tmp / "report.html")
    log.info("report written to %s", config.out)
    return report
