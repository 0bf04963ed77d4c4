"""The active-learning report's arithmetic on hand-computed curves: mean ± std, where a curve
reaches a mAP, the label saving, its per-seed spread and its bootstrap interval over seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detpipe.activelearning.stats import (
    Reach,
    images_to_reach,
    label_saving,
    mean_curve,
    mean_std,
    percentile_interval,
    saving,
)

XS = [30, 60, 90]


def test_mean_and_sample_std():
    s = mean_std([0.31, 0.35])
    assert s.mean == pytest.approx(0.33)
    assert s.std == pytest.approx(0.04 / math.sqrt(2))  # ddof 1: |a - b| / sqrt(2)
    assert s.n == 2
    assert mean_std([0.2]).std is None
    with pytest.raises(ValueError):
        mean_std([])


def test_reach_is_interpolated_between_the_rounds_around_the_first_crossing():
    assert images_to_reach(XS, [0.1, 0.2, 0.3], 0.25) == Reach(75.0, "reached")
    assert images_to_reach(XS, [0.1, 0.3, 0.2], 0.2) == Reach(45.0, "reached")  # first crossing, not last
    assert images_to_reach(XS, [0.3, 0.4, 0.5], 0.25) == Reach(30.0, "at_start")
    assert images_to_reach(XS, [0.1, 0.2, 0.3], 0.31) == Reach(None, "not_reached")
    with pytest.raises(ValueError):
        images_to_reach([60, 30], [0.1, 0.2], 0.1)  # labeled counts only grow


def test_saving_against_the_baselines_final_map():
    s = saving((XS, [0.1, 0.3, 0.35]), (XS, [0.1, 0.2, 0.3]))
    assert (s.target, s.baseline_images, s.images, s.saving) == (0.3, 90.0, 60.0, 30.0)
    assert s.saving_pct == pytest.approx(100 / 3)
    # a baseline that peaked early is charged only for the images it needed to get there
    early = saving((XS, [0.1, 0.25, 0.3]), (XS, [0.1, 0.3, 0.25]))
    assert early.target == 0.25 and early.baseline_images == pytest.approx(52.5)
    assert early.images == pytest.approx(60.0) and early.saving == pytest.approx(-7.5)


def test_a_strategy_that_never_reaches_the_target_has_no_saving_only_a_bound():
    s = saving(([30, 60], [0.1, 0.15]), (XS, [0.1, 0.2, 0.3]))
    assert (s.images, s.saving, s.status, s.bound) == (None, None, "not_reached", 30.0)
    assert s.saving_pct is None


def test_label_saving_over_two_seeds_by_hand():
    strategy = {0: (XS, [0.1, 0.3, 0.4]), 1: (XS, [0.1, 0.2, 0.3])}
    baseline = {0: (XS, [0.1, 0.2, 0.3]), 1: (XS, [0.1, 0.25, 0.3])}
    ls = label_saving(strategy, baseline, resamples=4000)
    assert ls.seeds == (0, 1)
    # mean curves: strategy 0.1/0.25/0.35, baseline 0.1/0.225/0.3 -> target 0.3 at 90 vs 75
    assert (ls.mean.target, ls.mean.baseline_images) == (pytest.approx(0.3), pytest.approx(90.0))
    assert ls.mean.images == pytest.approx(75.0) and ls.mean.saving == pytest.approx(15.0)
    assert ls.per_seed[0].saving == pytest.approx(30.0) and ls.per_seed[1].saving == pytest.approx(0.0)
    assert ls.seed_std == pytest.approx(30 / math.sqrt(2))
    # resamples {0,0}: 30, {1,1}: 0, {0,1}: 15 -> the 90 % interval is [0, 30]
    b = ls.bootstrap
    assert (b.low, b.high, b.reached_share, b.resamples, b.level) == (0.0, 30.0, 1.0, 4000, 0.9)
    assert label_saving(strategy, baseline, resamples=4000).bootstrap == b  # seeded


def test_bootstrap_counts_unreached_resamples_below_every_saving():
    strategy = {0: (XS, [0.1, 0.3, 0.4]), 1: (XS, [0.05, 0.1, 0.15])}
    baseline = {0: (XS, [0.1, 0.2, 0.3]), 1: (XS, [0.1, 0.2, 0.3])}
    ls = label_saving(strategy, baseline, resamples=2000)
    assert ls.per_seed[1].saving is None and ls.seed_std is None  # one finite per-seed saving
    assert ls.bootstrap.low == -math.inf and ls.bootstrap.high == 30.0
    # only {0,0} (a quarter of the resamples) reaches 0.3: {1,1} tops out at 0.15, {0,1} at 0.275
    assert 0.2 < ls.bootstrap.reached_share < 0.3


def test_label_saving_needs_a_common_seed_and_a_sane_level():
    with pytest.raises(ValueError):
        label_saving({0: (XS, [0.1, 0.2, 0.3])}, {1: (XS, [0.1, 0.2, 0.3])})
    with pytest.raises(ValueError):
        label_saving({0: (XS, [0.1, 0.2, 0.3])}, {0: (XS, [0.1, 0.2, 0.3])}, level=1.0)


def test_mean_curve_uses_the_rounds_every_curve_has():
    xs, ys = mean_curve([(XS, [0.1, 0.2, 0.3]), (XS[:2], [0.3, 0.4])])
    assert xs.tolist() == [30.0, 60.0] and ys.tolist() == pytest.approx([0.2, 0.3])


def test_percentile_interval_by_nearest_rank():
    i = percentile_interval(np.arange(100.0), 0.9)
    assert (i.low, i.high, i.reached_share, i.resamples) == (4.0, 94.0, 1.0, 100)  # the 5th and 95th of 100
    j = percentile_interval(np.array([-math.inf] * 10 + [1.0] * 90), 0.8)
    assert (j.low, j.high, j.reached_share) == (-math.inf, 1.0, 0.9)
