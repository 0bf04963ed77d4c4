"""The numbers of the active-learning report: mean ± std, where a curve reaches a mAP, label saving.

A *curve* is one cell's (labeled images, mAP50-95) after each round, in round order. Every
function here is pure (lists in, numbers out)::

    mean_std([0.31, 0.35])                                   # Stat(mean=0.33, std=0.0283, n=2)
    images_to_reach([30, 60, 90], [0.10, 0.20, 0.30], 0.25)  # Reach(images=75.0, status="reached")
    label_saving({0: (xs, ys_u)}, {0: (xs, ys_r)})            # LabelSaving(...)

**Label saving.** The target is the baseline's (random's) final mAP. A curve *reaches* a target
where it first gets to it, linearly interpolated between the two rounds around the crossing;
at its first point if it starts there (then the images are an upper bound: it may have needed
fewer); not at all if it never gets there (then it needed more than its last count). The saving
is ``images the baseline needed - images the strategy needed`` (the baseline's own crossing of
its final mAP, so a baseline that peaked early is not charged for its later rounds), positive
when the strategy needed fewer. It is computed on the curves averaged over seeds; its
uncertainty comes two ways, both over seeds, each seed a paired comparison (the same seed gives
both strategies the same seed set and round-0 model):

- the seed-to-seed spread: the saving of each seed on its own (target: that seed's random
  final mAP), and their sample std;
- a bootstrap interval: seeds resampled with replacement, the saving of the resampled mean
  curves, the percentile interval (nearest rank). With few seeds it is coarse: two seeds give
  three distinct resamples. A resample whose strategy curve never reaches the target counts as
  -inf (below every finite saving); ``reached_share`` says how often it did.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Curve = tuple[Sequence[float], Sequence[float]]
"""(labeled images per round, mAP per round), round order."""

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_LEVEL = 0.9


@dataclass(frozen=True)
class Stat:
    """Mean, sample std (None for one value) and count."""

    mean: float
    std: float | None
    n: int


def mean_std(values: Sequence[float]) -> Stat:
    """Mean and sample standard deviation (ddof 1, as the sweep's report); std None for n = 1.

    Raises:
        ValueError: no values.
    """
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        raise ValueError("mean_std of no values")
    std = float(arr.std(ddof=1)) if arr.size > 1 else None
    return Stat(float(arr.mean()), std, int(arr.size))


@dataclass(frozen=True)
class Reach:
    """Where a curve first reaches a target.

    ``status``: ``reached`` (``images`` interpolated), ``at_start`` (at its first point already:
    ``images`` is that point's count, an upper bound) or ``not_reached`` (``images`` None).
    """

    images: float | None
    status: str


def images_to_reach(labeled: Sequence[float], maps: Sequence[float], target: float) -> Reach:
    """The labeled images at which the curve first reaches ``target`` (see :class:`Reach`)."""
    xs, ys = _checked(labeled, maps)
    hits = np.flatnonzero(ys >= target)
    if not hits.size:
        return Reach(None, "not_reached")
    i = int(hits[0])
    if i == 0:
        return Reach(float(xs[0]), "at_start")
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return Reach(float(x0 + (target - y0) / (y1 - y0) * (x1 - x0)), "reached")


def _checked(labeled: Sequence[float], maps: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = np.asarray(labeled, dtype=float), np.asarray(maps, dtype=float)
    if xs.shape != ys.shape or xs.ndim != 1 or not xs.size:
        raise ValueError("a curve needs as many labeled counts as mAPs, at least one")
    if np.any(np.diff(xs) < 0):
        raise ValueError("labeled counts must not decrease along a curve")
    return xs, ys


@dataclass(frozen=True)
class Saving:
    """A strategy curve against the baseline's, at the baseline's final mAP.

    Attributes:
        target: the baseline's final mAP.
        baseline_images: where the baseline first reached it.
        images: where the strategy first reached it (None: never).
        status: the strategy's :class:`Reach` status.
        saving: ``baseline_images - images`` (None when not reached).
        bound: when not reached, the saving is below this (``baseline_images - last count``).
    """

    target: float
    baseline_images: float
    images: float | None
    status: str
    saving: float | None
    bound: float | None

    @property
    def saving_pct(self) -> float | None:
        """The saving in percent of the baseline's images."""
        if self.saving is None or self.baseline_images <= 0:
            return None
        return 100.0 * self.saving / self.baseline_images


def saving(strategy: Curve, baseline: Curve) -> Saving:
    """How many fewer labeled images ``strategy`` needed to reach ``baseline``'s final mAP."""
    bx, by = _checked(*baseline)
    sx, _ = _checked(*strategy)
    target = float(by[-1])
    base = images_to_reach(bx, by, target)
    assert base.images is not None  # a curve always reaches its own last value
    reach = images_to_reach(*strategy, target)
    if reach.images is None:
        return Saving(target, base.images, None, reach.status, None, float(base.images - sx[-1]))
    return Saving(target, base.images, reach.images, reach.status, base.images - reach.images, None)


def mean_curve(curves: Sequence[Curve]) -> tuple[np.ndarray, np.ndarray]:
    """The curves averaged round by round (over the rounds all of them have)."""
    if not curves:
        raise ValueError("mean_curve of no curves")
    length = min(len(c[0]) for c in curves)
    xs = np.mean([np.asarray(c[0], dtype=float)[:length] for c in curves], axis=0)
    ys = np.mean([np.asarray(c[1], dtype=float)[:length] for c in curves], axis=0)
    return xs, ys


@dataclass(frozen=True)
class Interval:
    """A bootstrap percentile interval; ``low``/``high`` may be -inf (not reached)."""

    level: float
    low: float
    high: float
    reached_share: float
    resamples: int


@dataclass(frozen=True)
class LabelSaving:
    """A strategy's label saving over seeds (module docstring).

    Attributes:
        seeds: the seeds both the strategy and the baseline have.
        mean: the saving on the curves averaged over ``seeds``.
        per_seed: each seed's own saving.
        seed_std: sample std of the finite per-seed savings (None: fewer than two).
        bootstrap: the interval over resampled seeds.
    """

    seeds: tuple[int, ...]
    mean: Saving
    per_seed: dict[int, Saving]
    seed_std: float | None
    bootstrap: Interval


def label_saving(
    strategy: Mapping[int, Curve],
    baseline: Mapping[int, Curve],
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = BOOTSTRAP_LEVEL,
    rng_seed: int = 0,
) -> LabelSaving:
    """The label saving of ``strategy`` against ``baseline`` (seed -> curve each), paired by seed.

    Raises:
        ValueError: no seed in common, or ``level`` not in (0, 1).
    """
    seeds = tuple(sorted(set(strategy) & set(baseline)))
    if not seeds:
        raise ValueError("no seed in common between the strategy and the baseline")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    s_curves = [strategy[s] for s in seeds]
    b_curves = [baseline[s] for s in seeds]
    mean = saving(mean_curve(s_curves), mean_curve(b_curves))
    per_seed = {s: saving(strategy[s], baseline[s]) for s in seeds}
    finite = [p.saving for p in per_seed.values() if p.saving is not None]
    seed_std = mean_std(finite).std if finite else None
    rng = np.random.default_rng(rng_seed)
    draws = np.empty(resamples)
    for i in range(resamples):
        pick = rng.integers(0, len(seeds), len(seeds))
        got = saving(mean_curve([s_curves[j] for j in pick]), mean_curve([b_curves[j] for j in pick]))
        draws[i] = -math.inf if got.saving is None else got.saving
    return LabelSaving(seeds, mean, per_seed, seed_std, percentile_interval(draws, level))


def percentile_interval(draws: np.ndarray, level: float) -> Interval:
    """The central ``level`` interval of ``draws`` by nearest rank (-inf values allowed).

    The p-quantile is the smallest draw with at least a share p of the draws at or below it
    (rank ``ceil(p n)``), for p = (1 - level) / 2 and (1 + level) / 2.
    """
    ordered = np.sort(np.asarray(draws, dtype=float))
    n = len(ordered)

    def rank(p: float) -> int:
        return min(n - 1, max(0, math.ceil(p * n - 1e-9) - 1))  # tolerance: floating-point error in p n

    lo, hi = ordered[rank((1 - level) / 2)], ordered[rank((1 + level) / 2)]
    return Interval(level, float(lo), float(hi), float(np.isfinite(ordered).mean()), n)
