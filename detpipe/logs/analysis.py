"""Training-log analysis of one run: losses, metric ranges, stability, spikes, LR phases, status.

The railway study read these off ultralytics' results.csv by hand; the rules below make
them repeatable. Epochs are 1-based and ranges inclusive (``11-30`` = epochs 11..30), as
in results.csv. Where the study gives no number, the constant is detpipe's own choice
(marked so) and a flag of ``detpipe logs analyze``.

Definitions:

* loss ``change_pct`` = 100 * (last - first) / first over the finite values (negative = the
  loss fell); a range's ``drop_pct`` = 100 * (start - end) / start (positive = it fell).
* range statistics: mean, population standard deviation (numpy's default, defined for a
  one-epoch range) and ``cov_pct`` = 100 * std / mean (None when the mean is 0).
* ``stable_epoch`` (mAP50): the first epoch e such that every window of ``window`` epochs
  starting at e or later (until the last full window) has a CoV at or under the run's own
  threshold; None if the last window is over it (or the run is shorter than a window). The
  threshold is ``STABLE_FACTOR`` x the run's settled variation (the median CoV of the windows
  that lie in its last quarter; the last window when the quarter is shorter than one),
  raised to ``STABLE_FLOOR_PCT`` and capped at ``cov_pct`` (``STABLE_COV_PCT``, the study's
  "stable" CoV). Relative, because no fixed threshold fits: on a log shaped like the study's
  seed-002 run (which starts near its final mAP50 and settles after a ±0.3 % zigzag over
  epochs 40-60) every 10-epoch window is under 2 % from epoch 1, and the zigzag's windows are
  under 0.4 %; capped, so a run whose end is as noisy as its start is not stable either. A
  window with a non-finite value or a mean of 0 (CoV undefined) is over the threshold.
  ``stability`` records the threshold, its parts and the last window over it.
* spike: a loss above ``spike_factor`` x the median of the previous ``SPIKE_LOOKBACK`` epochs.
* oscillation: an epoch where the curve turns (the step in and the step out have opposite
  signs) and both steps exceed ``OSCILLATION_STEP`` of the value.
* LR phases (``lr/pg0``): ``warm-up`` while the LR rises from the first epoch; afterwards each
  epoch is ``high`` (>= 2/3 of the peak LR), ``mid`` (>= 1/3) or ``low``; consecutive epochs
  of one phase form one entry.
* status: ``nan`` (a non-finite loss or metric), ``completed`` (all planned epochs),
  ``stopped_early`` (fewer epochs, and the last ``patience`` epochs brought no better
  mAP50-95: ultralytics' EarlyStopping), ``crashed`` (fewer epochs otherwise), or ``unknown``
  (the planned epochs are not recorded).
* dropped: ranges that do not overlap a run's epochs and milestones missing from its log are
  left out of its analysis. The defaults reach 600 epochs and are clipped to each run without
  a word; ranges or milestones chosen by the user that a run lacks are logged as a WARNING
  (naming them and the run's last epoch) and listed in ``runs.<name>.dropped``.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detpipe.logs.defaults import (
    DEFAULT_MILESTONES,
    DEFAULT_RANGES,
    SPIKE_FACTOR,
    STABLE_COV_PCT,
    STABLE_WINDOW,
)
from detpipe.logs.runlog import LOSSES, LR, METRICS, RunLog
from detpipe.train.summary import training_seconds

log = logging.getLogger(__name__)

STABLE_FACTOR = 2.0
"""detpipe's choice: a window has settled when its CoV is at most twice the run's settled
variation (the median window CoV over its last quarter)."""
STABLE_FLOOR_PCT = 0.1
"""detpipe's choice: a window CoV of 0.1 % or less counts as settled whatever the run ends
at (a run that ends perfectly flat would otherwise need a CoV of 0)."""
SPIKE_LOOKBACK = 5
"""detpipe's choice: epochs whose median is a spike's baseline."""
OSCILLATION_STEP = 0.02
"""detpipe's choice: an up/down turn counts when both steps exceed 2 % of the value."""
PHASE_BANDS = ((2 / 3, "high"), (1 / 3, "mid"), (0.0, "low"))
"""detpipe's choice: LR bands as shares of the peak LR after warm-up."""


@dataclass(frozen=True)
class AnalysisSettings:
    """The knobs of the analysis (defaults: the module constants)."""

    ranges: tuple[tuple[int, int], ...] = DEFAULT_RANGES
    milestones: tuple[int, ...] = DEFAULT_MILESTONES
    stable_window: int = STABLE_WINDOW
    stable_cov_pct: float = STABLE_COV_PCT
    spike_factor: float = SPIKE_FACTOR


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def _finite(epochs: Sequence[int], values: Sequence[float]) -> list[tuple[int, float]]:
    return [(e, v) for e, v in zip(epochs, values, strict=True) if math.isfinite(v)]


def clip_ranges(ranges: Sequence[tuple[int, int]], first: int, last: int) -> list[tuple[int, int]]:
    """The ranges overlapping epochs ``first..last``, clipped to them."""
    return [(max(a, first), min(b, last)) for a, b in ranges if a <= last and b >= first]


def loss_summary(epochs: Sequence[int], values: Sequence[float]) -> dict[str, Any]:
    """``{first, last, change_pct, nan_epochs}`` of one loss column."""
    good = _finite(epochs, values)
    nan_epochs = [e for e, v in zip(epochs, values, strict=True) if not math.isfinite(v)]
    if not good:
        return {"first": None, "last": None, "change_pct": None, "nan_epochs": nan_epochs}
    first, last = good[0][1], good[-1][1]
    change = 100.0 * (last - first) / first if first else None
    return {"first": _r(first), "last": _r(last), "change_pct": _r(change, 4), "nan_epochs": nan_epochs}


def loss_drops(epochs: Sequence[int], values: Sequence[float], ranges: Sequence[tuple[int, int]]) -> list:
    """Per range: ``{from, to, start, end, drop, drop_pct}`` (start/end: first/last finite value)."""
    out = []
    for a, b in ranges:
        good = [(e, v) for e, v in _finite(epochs, values) if a <= e <= b]
        if not good:
            out.append({"from": a, "to": b, "start": None, "end": None, "drop": None, "drop_pct": None})
            continue
        start, end = good[0][1], good[-1][1]
        out.append(
            {
                "from": a,
                "to": b,
                "start": _r(start),
                "end": _r(end),
                "drop": _r(start - end),
                "drop_pct": _r(100.0 * (start - end) / start, 4) if start else None,
            }
        )
    return out


def range_stats(epochs: Sequence[int], values: Sequence[float], ranges: Sequence[tuple[int, int]]) -> list:
    """Per range: ``{from, to, mean, std, cov_pct}`` over the finite values in it."""
    out = []
    for a, b in ranges:
        vals = np.array([v for e, v in _finite(epochs, values) if a <= e <= b], dtype=float)
        if not vals.size:
            out.append({"from": a, "to": b, "mean": None, "std": None, "cov_pct": None})
            continue
        mean, std = float(vals.mean()), float(vals.std())
        cov = 100.0 * std / mean if mean else None
        out.append({"from": a, "to": b, "mean": _r(mean), "std": _r(std), "cov_pct": _r(cov, 4)})
    return out


def window_covs(values: Sequence[float], window: int) -> list[float]:
    """The CoV (%) of every ``window`` consecutive values, in order (NaN where undefined)."""
    out = []
    for i in range(len(values) - window + 1):
        w = np.array(values[i : i + window], dtype=float)
        mean = float(w.mean()) if np.isfinite(w).all() else math.nan
        out.append(100.0 * float(w.std()) / mean if mean > 0 else math.nan)
    return out


@dataclass(frozen=True)
class Stability:
    """The stability rule's outcome for one curve (see the module docstring).

    Attributes:
        epoch: The stable epoch, or None.
        window: Epochs per window.
        settled_cov_pct: The run's settled variation (None when undefined or too few epochs).
        threshold_cov_pct: The CoV a window may reach and count as settled.
        cap_cov_pct: The threshold's cap (``cov_pct``).
        last_unstable: The last window over the threshold: ``{from, to, cov_pct}`` (None if
            none; ``cov_pct`` None where undefined).
    """

    epoch: int | None
    window: int
    settled_cov_pct: float | None
    threshold_cov_pct: float | None
    cap_cov_pct: float
    last_unstable: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        """analysis.json's ``runs.<name>.stability``."""
        rule = (
            f"first epoch from which every {self.window}-epoch window's mAP50 CoV is at most "
            f"min({self.cap_cov_pct:g} %, max({STABLE_FLOOR_PCT:g} %, {STABLE_FACTOR:g} x the median "
            "window CoV over the run's last quarter))"
        )
        return {
            "rule": rule,
            "metric": "map50",
            "window": self.window,
            "settled_cov_pct": _r(self.settled_cov_pct, 4),
            "factor": STABLE_FACTOR,
            "floor_cov_pct": STABLE_FLOOR_PCT,
            "cap_cov_pct": self.cap_cov_pct,
            "threshold_cov_pct": _r(self.threshold_cov_pct, 4),
            "last_unstable": self.last_unstable,
        }


def stability(epochs: Sequence[int], values: Sequence[float], window: int, cov_pct: float) -> Stability:
    """The stability rule on one curve (mAP50), with the threshold it used (see above)."""
    covs = window_covs(values, window)
    if not covs:
        return Stability(None, window, None, None, cov_pct, None)
    n = len(values)
    tail = [c for c in covs[n - n // 4 :] if math.isfinite(c)] if n // 4 >= window else []
    level = statistics.median(tail) if tail else covs[-1]
    settled = level if math.isfinite(level) else None
    threshold = None if settled is None else min(cov_pct, max(STABLE_FLOOR_PCT, STABLE_FACTOR * settled))
    over = [i for i, c in enumerate(covs) if threshold is None or not c <= threshold]  # NaN: over
    if not over:
        return Stability(int(epochs[0]), window, settled, threshold, cov_pct, None)
    i = over[-1]
    last = {"from": int(epochs[i]), "to": int(epochs[i + window - 1]), "cov_pct": _r(covs[i], 4)}
    epoch = None if i == len(covs) - 1 else int(epochs[i + 1])
    return Stability(epoch, window, settled, threshold, cov_pct, last)


def stable_epoch(epochs: Sequence[int], values: Sequence[float], window: int, cov_pct: float) -> int | None:
    """The first epoch from which every later window's CoV stays under the run's threshold
    (at most ``cov_pct``; see above)."""
    return stability(epochs, values, window, cov_pct).epoch


def spikes(epochs: Sequence[int], values: Sequence[float], factor: float) -> list[dict[str, Any]]:
    """Epochs whose value exceeds ``factor`` x the median of the previous finite values (up to
    ``SPIKE_LOOKBACK``): ``[{epoch, value, baseline, rise_pct}]``."""
    good = _finite(epochs, values)
    out = []
    for i in range(SPIKE_LOOKBACK, len(good)):
        baseline = statistics.median(v for _, v in good[i - SPIKE_LOOKBACK : i])
        epoch, value = good[i]
        if baseline > 0 and value > factor * baseline:
            out.append(
                {
                    "epoch": epoch,
                    "value": _r(value),
                    "baseline": _r(baseline),
                    "rise_pct": _r(100.0 * (value - baseline) / baseline, 4),
                }
            )
    return out


def oscillations(epochs: Sequence[int], values: Sequence[float]) -> list[int]:
    """Epochs where the curve turns with both steps above ``OSCILLATION_STEP`` of the value."""
    good = _finite(epochs, values)
    out = []
    for (_, a), (e, b), (_, c) in zip(good, good[1:], good[2:], strict=False):
        step_in, step_out = b - a, c - b
        size = OSCILLATION_STEP * abs(b)
        if step_in * step_out < 0 and abs(step_in) > size and abs(step_out) > size:
            out.append(e)
    return out


def lr_phases(epochs: Sequence[int], values: Sequence[float]) -> list[dict[str, Any]]:
    """``[{phase, from, to, lr_start, lr_end}]`` over the LR column (see the module docstring)."""
    good = _finite(epochs, values)
    if not good:
        return []
    warm = 0
    while warm + 1 < len(good) and good[warm + 1][1] > good[warm][1]:
        warm += 1
    labels = ["warm-up"] * warm if warm else []
    rest = good[warm:] if warm else good
    peak = max(v for _, v in rest)
    for _, v in rest:
        share = v / peak if peak > 0 else 0.0
        labels.append(next(name for low, name in PHASE_BANDS if share >= low - 1e-12))
    out: list[dict[str, Any]] = []
    for (epoch, value), label in zip(good, labels, strict=True):
        if out and out[-1]["phase"] == label:
            out[-1].update(to=epoch, lr_end=_r(value, 8))
        else:
            out.append(
                {"phase": label, "from": epoch, "to": epoch, "lr_start": _r(value, 8), "lr_end": _r(value, 8)}
            )
    return out


def seconds_per_epoch(times: Sequence[float]) -> list[float]:
    """Each epoch's duration from the cumulative ``time`` column (which restarts at a resume)."""
    out, previous = [], 0.0
    for t in times:
        out.append(t - previous if t >= previous else t)
        previous = t
    return out


def timing(run: RunLog) -> dict[str, Any]:
    """``{total_s, hours, sec_per_epoch_mean, sec_per_epoch_median, images_per_s}``."""
    times = run.column("time")
    if times is None or not all(math.isfinite(t) for t in times):
        return {
            "total_s": None,
            "hours": None,
            "sec_per_epoch_mean": None,
            "sec_per_epoch_median": None,
            "images_per_s": run.images_per_s,
        }
    per = seconds_per_epoch(times)
    total = training_seconds(run.rows)
    return {
        "total_s": total,
        "hours": _r(total / 3600.0),
        "sec_per_epoch_mean": _r(statistics.fmean(per), 3),
        "sec_per_epoch_median": _r(statistics.median(per), 3),
        "images_per_s": run.images_per_s,
    }


def best_epoch(run: RunLog) -> dict[str, Any]:
    """The epoch with the highest finite mAP50-95 (the earliest on ties, as ultralytics keeps best.pt)."""
    values = run.column(METRICS["map5095"])
    good = _finite(run.epochs, values) if values else []
    if not good:
        return {"epoch": None, "map5095": None, "map50": None}
    epoch, value = max(good, key=lambda ev: (ev[1], -ev[0]))
    row = run.rows[run.epochs.index(epoch)]
    return {"epoch": epoch, "map5095": _r(value), "map50": _r(row.get(METRICS["map50"], math.nan))}


def classify(run: RunLog, best: int | None) -> tuple[str, str]:
    """``(status, reason)`` (see the module docstring)."""
    for column in (*LOSSES, *METRICS.values()):
        values = run.column(column)
        if values is None:
            continue
        bad = [e for e, v in zip(run.epochs, values, strict=True) if not math.isfinite(v)]
        if bad:
            return "nan", f"non-finite {column} from epoch {bad[0]} ({len(bad)} epoch(s))"
    last, planned = run.epochs[-1], run.planned_epochs
    if planned is None:
        return (
            "unknown",
            f"{last} epochs; the planned number is not recorded (no args.yaml or train_summary.json)",
        )
    if last >= planned:
        return "completed", f"all {planned} epochs"
    patience = run.patience
    if patience and best is not None and last - best >= patience:
        return "stopped_early", (
            f"early stopping at epoch {last} of {planned}: no mAP50-95 gain since epoch {best} "
            f"(patience {patience})"
        )
    where = "" if run.finished else "; no train_summary.json"
    return "crashed", f"stopped at epoch {last} of {planned} without meeting early stopping{where}"


def dropped(run: RunLog, settings: AnalysisSettings) -> dict[str, list]:
    """The chosen ranges and milestones (not the defaults) that ``run`` has no epochs for; warns.

    Returns:
        ``{"ranges": [[from, to], ...], "milestones": [epoch, ...]}`` (empty lists when none).
    """
    epochs = run.epochs
    first, last = epochs[0], epochs[-1]
    ranges = [] if settings.ranges == DEFAULT_RANGES else [
        [a, b] for a, b in settings.ranges if a > last or b < first
    ]  # fmt: skip
    have = set(epochs)
    milestones = [] if settings.milestones == DEFAULT_MILESTONES else [
        m for m in settings.milestones if m not in have
    ]  # fmt: skip
    out = {"ranges": ranges, "milestones": milestones}
    if ranges or milestones:
        log.warning("run %s: dropped %s: not in its log (last epoch %d)", run.name, dropped_text(out), last)
    return out


def dropped_text(entry: dict[str, list]) -> str:
    """``{"ranges": [[101, 200]], "milestones": [150]}`` -> ``--ranges 101-200 and --milestones 150``."""
    what = []
    if entry["ranges"]:
        what.append("--ranges " + ",".join(f"{a}-{b}" for a, b in entry["ranges"]))
    if entry["milestones"]:
        what.append("--milestones " + ",".join(map(str, entry["milestones"])))
    return " and ".join(what)


def analyze_run(run: RunLog, settings: AnalysisSettings) -> dict[str, Any]:
    """The ``runs.<name>`` entry of analysis.json for one run."""
    epochs = run.epochs
    first, last = epochs[0], epochs[-1]
    ranges = clip_ranges(settings.ranges, first, last)
    losses, drops, loss_spikes, wobble = {}, {}, {}, {}
    for column in LOSSES:
        values = run.column(column)
        if values is None:
            continue
        losses[column] = loss_summary(epochs, values)
        drops[column] = loss_drops(epochs, values, ranges)
        loss_spikes[column] = spikes(epochs, values, settings.spike_factor)
        wobble[column] = oscillations(epochs, values)
    metric_ranges, milestones = {}, {}
    for name, column in METRICS.items():
        values = run.column(column)
        if values is None:
            continue
        metric_ranges[name] = range_stats(epochs, values, ranges)
        wobble[name] = oscillations(epochs, values)
    for m in settings.milestones:
        if m in epochs:
            row = run.rows[epochs.index(m)]
            milestones[str(m)] = {name: _r(row[c]) for name, c in METRICS.items() if c in row}
    map50 = run.column(METRICS["map50"])
    stable = (
        None if map50 is None else stability(epochs, map50, settings.stable_window, settings.stable_cov_pct)
    )
    best = best_epoch(run)
    status, reason = classify(run, best["epoch"])
    lr = run.column(LR)
    return {
        "path": str(run.path),
        "status": status,
        "reason": reason,
        "epochs": {"first": first, "last": last, "planned": run.planned_epochs, "patience": run.patience},
        "best": best,
        "params": run.params,
        "losses": losses,
        "loss_ranges": drops,
        "ranges": metric_ranges,
        "milestones": milestones,
        "dropped": dropped(run, settings),
        "stable_epoch": None if stable is None else stable.epoch,
        "stability": None if stable is None else stable.as_json(),
        "spikes": loss_spikes,
        "oscillations": wobble,
        "lr_phases": [] if lr is None else lr_phases(epochs, lr),
        "time": timing(run),
    }
