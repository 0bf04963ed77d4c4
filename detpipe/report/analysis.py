"""Per-model analysis of a data-scaling sweep: table cells, retention, cliff, stability.

Definitions (all on the mean over seeds of best mAP50-95):

* **retention** at fraction f: ``100 * score(f) / score(reference)``, in percent. The
  reference is the model's 100 % run; a model without one is measured against its largest
  fraction instead, and that is flagged (``reference_is_full`` False, plus a note).
* **steps**: every adjacent pair of the model's fractions (ascending), with the absolute
  drop ``score(upper) - score(lower)`` and the ratio ``score(lower) / score(upper)``.
* **cliff**: the step with the largest drop (the study's 5 % -> 2.5 %); ties go to the
  step at the larger fractions.
* **late peak**: a run whose best epoch lies in the last ``late_fraction`` of its epochs,
  ``last_epoch - best_epoch < late_fraction * last_epoch``: it had not converged.
* **still improving**: a late peak that also ran all its planned epochs (``last_epoch >=
  epochs``, when the planned ``epochs`` are known): training stopped on the schedule, not on
  patience, while the score was still rising; more epochs would likely help.
* **regime** of each fraction, on the mean curve: ``saturated`` when retention >=
  :data:`SATURATED_RETENTION_PCT`; ``collapsed`` when the fraction is at or below the cliff's
  lower fraction and retention < :data:`COLLAPSED_RETENTION_PCT`; ``steep`` otherwise.

Usage::

    groups = group_runs(runs)
    for model in order_models({m for m, _ in groups}):
        analysis = analyze_model(model, groups, late_fraction=0.1)
"""

from __future__ import annotations

import logging
import re
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from detpipe.report.collect import Run, fraction_key

log = logging.getLogger(__name__)

SATURATED_RETENTION_PCT = 90.0
"""Retention (%) from which more data barely helps: the curve is ``saturated``. detpipe's
choice on top of the study's cliff definition (the study names the cliff, not the regimes)."""
COLLAPSED_RETENTION_PCT = 50.0
"""Retention (%) below which a fraction at or under the cliff has ``collapsed`` (lost more
than half the full-data score). detpipe's choice on top of the study's cliff definition."""
REGIMES = ("saturated", "steep", "collapsed")

SCALES = "nsmlx"
# yolo12n, yolov8s, yolo11x-p2, rtdetr-l: a family ending in a digit or '-', then the scale letter.
_MODEL_RE = re.compile(r"^(?P<family>.*[\d-])(?P<scale>[nsmlx])(?P<rest>[-_.].*)?$")


def model_sort_key(model: str) -> tuple:
    """Sort key: by family, then scale n, s, m, l, x; names without a scale letter go last."""
    match = _MODEL_RE.match(model)
    if match is None:
        return (1, model)
    return (0, match["family"], match["rest"] or "", SCALES.index(match["scale"]))


def order_models(models: Iterable[str]) -> list[str]:
    """Models in report order (rows of the table)."""
    return sorted(set(models), key=model_sort_key)


@dataclass(frozen=True)
class Cell:
    """All runs of one model at one fraction, with their mean and spread.

    Attributes:
        model: Architecture name.
        fraction: Percent of the training set.
        runs: The runs (one per seed and subset draw), by seed then draw.
        mean: Mean best mAP50-95 over the runs.
        std: Sample standard deviation (n - 1) over all runs (seeds and draws); None for a
            single run.
        map50: Mean mAP50 when every run has it, else None.
    """

    model: str
    fraction: float
    runs: tuple[Run, ...]
    mean: float
    std: float | None
    map50: float | None

    @classmethod
    def of(cls, runs: list[Run]) -> Cell:
        """Build a cell from the runs of one (model, fraction) group."""
        runs = sorted(
            runs,
            key=lambda r: (r.seed is None, r.seed or 0, r.subset_seed is None, r.subset_seed or 0),
        )
        scores = [r.best_map5095 for r in runs]
        map50 = [r.best_map50 for r in runs]
        return cls(
            model=runs[0].model,
            fraction=runs[0].fraction,
            runs=tuple(runs),
            mean=statistics.fmean(scores),
            std=statistics.stdev(scores) if len(scores) > 1 else None,
            map50=statistics.fmean(map50) if all(v is not None for v in map50) else None,  # type: ignore[arg-type]
        )

    @property
    def key(self) -> str:
        """The fraction written minimally (``"2.5"``)."""
        return fraction_key(self.fraction)


@dataclass(frozen=True)
class Step:
    """Going from the ``upper`` fraction down to the adjacent ``lower`` one."""

    upper: Cell
    lower: Cell

    @property
    def drop(self) -> float:
        """Absolute mAP lost: score(upper) - score(lower)."""
        return self.upper.mean - self.lower.mean

    @property
    def ratio(self) -> float | None:
        """score(lower) / score(upper); None when the upper score is 0."""
        return self.lower.mean / self.upper.mean if self.upper.mean > 0 else None


@dataclass(frozen=True)
class RunStability:
    """Where in its training a run peaked."""

    run: Run
    position: float  # best_epoch / last_epoch
    late: bool
    still_improving: bool  # late, and ran all its planned epochs (when they are known)


@dataclass(frozen=True)
class ModelAnalysis:
    """Everything the report says about one model (fit aside)."""

    model: str
    cells: tuple[Cell, ...]  # ascending fraction
    reference: Cell | None
    reference_is_full: bool
    retention: dict[str, float]
    steps: tuple[Step, ...]  # descending: 100->50 first
    cliff: Step | None
    stability: tuple[RunStability, ...]
    notes: tuple[str, ...]
    regimes: dict[str, str] = field(default_factory=dict)


def stability_of(run: Run, late_fraction: float) -> RunStability | None:
    """The run's peak position, or None when its epochs are unknown."""
    if run.best_epoch is None or run.last_epoch is None:
        return None
    late = run.last_epoch - run.best_epoch < late_fraction * run.last_epoch
    ran_all = run.epochs is None or run.last_epoch >= run.epochs
    return RunStability(
        run=run, position=run.best_epoch / run.last_epoch, late=late, still_improving=late and ran_all
    )


def regimes_of(cells: tuple[Cell, ...], retention: Mapping[str, float], cliff: Step | None) -> dict[str, str]:
    """The regime of each fraction (module docstring); empty when retention is unknown."""
    out = {}
    for cell in cells:
        if cell.key not in retention:
            continue
        kept = retention[cell.key]
        if kept >= SATURATED_RETENTION_PCT:
            out[cell.key] = "saturated"
        elif cliff is not None and cell.fraction <= cliff.lower.fraction and kept < COLLAPSED_RETENTION_PCT:
            out[cell.key] = "collapsed"
        else:
            out[cell.key] = "steep"
    return out


def analyze_model(
    model: str, groups: Mapping[tuple[str, str], list[Run]], late_fraction: float = 0.1
) -> ModelAnalysis:
    """Retention, adjacent steps, cliff and late-peak flags for one model.

    Args:
        model: The model to analyze.
        groups: Runs grouped by (model, fraction key), as from ``group_runs``.
        late_fraction: Share of the final epochs in which a best epoch counts as a late peak.

    Returns:
        The model's analysis; its ``notes`` say what could not be computed and why.
    """
    cells = tuple(sorted((Cell.of(runs) for (m, _), runs in groups.items() if m == model), key=_by_fraction))
    notes: list[str] = []
    full = [c for c in cells if c.fraction == 100.0]
    reference = full[0] if full else cells[-1]
    if not full:
        notes.append(
            f"{model}: no 100 % run; retention is relative to its largest fraction ({reference.key} %)"
        )
    retention: dict[str, float] = {}
    if reference.mean > 0:
        retention = {c.key: 100.0 * c.mean / reference.mean for c in cells}
    else:
        notes.append(f"{model}: reference score is 0; retention omitted")
        reference = None
    steps = tuple(Step(upper=cells[i + 1], lower=cells[i]) for i in reversed(range(len(cells) - 1)))
    cliff = None
    for step in steps:  # descending, so a tie keeps the step at the larger fractions
        if cliff is None or step.drop > cliff.drop:
            cliff = step
    if cliff is None:
        notes.append(f"{model}: a single fraction; no cliff")
    stability = tuple(s for c in cells for r in c.runs if (s := stability_of(r, late_fraction)) is not None)
    for s in stability:
        if s.late:
            seed = "" if s.run.seed is None else f" seed {s.run.seed}"
            log.info(
                "%s at %s %%%s peaked late (%d/%d)",
                model,
                fraction_key(s.run.fraction),
                seed,
                s.run.best_epoch,
                s.run.last_epoch,
            )
    return ModelAnalysis(
        model=model,
        cells=cells,
        reference=reference,
        reference_is_full=bool(full),
        retention=retention,
        steps=steps,
        cliff=cliff,
        stability=stability,
        notes=tuple(notes),
        regimes=regimes_of(cells, retention, cliff),
    )


def _by_fraction(cell: Cell) -> float:
    return cell.fraction
