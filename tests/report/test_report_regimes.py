"""Stability and regimes (issue 12 §1): still-improving runs, regime labels, and cell.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detpipe.errors import InvalidInput
from detpipe.report.analysis import (
    COLLAPSED_RETENTION_PCT,
    SATURATED_RETENTION_PCT,
    analyze_model,
)
from detpipe.report.collect import Run, group_runs, load_runs
from detpipe.report.render import render_markdown
from detpipe.report.stage import ReportConfig, build_report

AXES = Path(__file__).with_name("sweep_axes.csv")


def _regimes(scores: dict[float, float]) -> dict[str, str]:
    runs = [Run("m", f, v) for f, v in scores.items()]
    return analyze_model("m", group_runs(runs)).regimes


def test_regime_thresholds():
    assert (SATURATED_RETENTION_PCT, COLLAPSED_RETENTION_PCT) == (90.0, 50.0)
    # retention 10 / 20 / 50 / 85 / 89.9 / 100; cliff 10 -> 5 (drop .35), lower fraction 5
    regimes = _regimes({1: 0.1, 2.5: 0.2, 5: 0.5, 10: 0.85, 50: 0.899, 100: 1.0})
    assert regimes == {
        "1": "collapsed",
        "2.5": "collapsed",
        "5": "steep",  # at the cliff but keeps exactly 50 %
        "10": "steep",
        "50": "steep",  # 89.9 %
        "100": "saturated",
    }
    # 5 % keeps 45 % but lies above the cliff (5 -> 1): steep, not collapsed.
    assert _regimes({1: 0.0, 5: 0.45, 25: 0.7, 100: 1.0}) == {
        "1": "collapsed",
        "5": "steep",
        "25": "steep",
        "100": "saturated",
    }
    assert _regimes({100: 0.5}) == {"100": "saturated"}  # no cliff, nothing collapses
    assert _regimes({50: 0.0, 100: 0.0}) == {}  # retention unknown (reference score 0)


def test_regimes_on_the_axes_fixture(tmp_path):
    report = build_report(ReportConfig(out=tmp_path / "o", table=AXES))
    assert report["models"]["yolo12n"]["regimes"] == {"5": "collapsed", "25": "steep", "100": "saturated"}
    assert "| yolo12n | collapsed | steep | saturated |" in render_markdown(report)


def test_still_improving_needs_all_planned_epochs(tmp_path):
    report = build_report(ReportConfig(out=tmp_path / "o", table=AXES))
    # 5 %: seed 0 draw 0 peaked at 4/4 of 4 planned; seed 1 draw 1 peaked at 3/3 but 4 were planned
    assert [(p["seed"], p["subset_seed"]) for p in report["late_peaks"]] == [(0, 0), (1, 1)]
    assert report["still_improving"] == [
        {
            "model": "yolo12n",
            "fraction": 5,
            "seed": 0,
            "subset_seed": 0,
            "best_epoch": 4,
            "last_epoch": 4,
            "epochs": 4,
        }
    ]
    flags = {
        (e["seed"], e["subset_seed"]): (e["late_peak"], e["still_improving"])
        for e in report["models"]["yolo12n"]["stability"]["5"]
    }
    assert flags == {
        (0, 0): (True, True),
        (0, 1): (False, False),
        (1, 0): (False, False),
        (1, 1): (True, False),
    }
    md = render_markdown(report)
    assert "### Still improving" in md and "| yolo12n | 5 % | 0 | 0 | 4/4 | 4 |" in md


def _cell(runs: Path, name: str, summary: dict, cell: dict | str | None) -> Path:
    d = runs / name
    d.mkdir(parents=True)
    (d / "train_summary.json").write_text(json.dumps({"model": "yolo12n", "best_map5095": 0.3, **summary}))
    if cell is not None:
        (d / "cell.json").write_text(cell if isinstance(cell, str) else json.dumps(cell))
    return d


PLAN = {
    "arch": "yolo12n.yaml",
    "model": "yolo12n",
    "fraction": 5,
    "strategy": "random",
    "seed": 0,
    "subset_seed": 2,
    "epochs_policy": "iterations",
    "epochs": 40,
    "base_epochs": 4,
    "epochs_scale": 10.0,
    "capped": True,
    "warmup_epochs": 30.0,
    "images": 117,
    "steps_per_epoch": 8,
}


def test_cell_json_overrides_the_summary(tmp_path):
    runs = tmp_path / "runs"
    _cell(
        runs,
        "yolo12n_5_random_s0_d2_iters",
        {"subset": "train2017_5_p", "seed": 0, "subset_seed": 0, "best_epoch": 40, "last_epoch": 40},
        PLAN,
    )
    (run,) = load_runs(runs)
    assert (run.fraction, run.strategy, run.subset_seed, run.epochs_policy) == (
        5.0,
        "random",
        2,
        "iterations",
    )
    assert (run.epochs, run.epochs_scale, run.capped) == (40, 10.0, True)
    report = build_report(ReportConfig(out=tmp_path / "o", runs=runs))
    assert report["schedules"] == [
        {
            "model": "yolo12n",
            "fraction": 5,
            "strategy": "random",
            "seed": 0,
            "subset_seed": 2,
            "epochs_policy": "iterations",
            "epochs": 40,
            "epochs_scale": 10.0,
            "capped": True,
        }
    ]
    assert report["still_improving"][0]["epochs"] == 40
    assert "| yolo12n | 5 % | `random` | `iterations` | 40 | 10× ✂ | 1 | 0 | 2 |" in render_markdown(report)


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("[]", "cell.json: expected a JSON object, got list"),
        ({"epochs": 2.5}, "'epochs' must be an integer"),
        ({"epochs": 0}, "'epochs' = 0 must be >= 1"),
        ({"epochs": 3}, "'epochs' = 3 is before best_epoch 4"),
        ({"subset_seed": "1"}, "'subset_seed' is not a number: '1'"),
        ({"epochs_policy": "steps"}, "'epochs_policy' must be one of fixed, iterations, got 'steps'"),
        ({"epochs_scale": -1}, "'epochs_scale' = -1 must be > 0"),
        ({"capped": "yes"}, "'capped' must be true or false, got 'yes'"),
        ({"strategy": 3}, "'strategy' must be a non-empty string, got 3"),
    ],
)
def test_a_bad_cell_json_says_why(tmp_path, cell, reason):
    runs = tmp_path / "runs"
    _cell(runs, "c", {"fraction": 5, "best_epoch": 4, "last_epoch": 4}, cell)
    with pytest.raises(InvalidInput) as e:
        load_runs(runs)
    assert reason in str(e.value) and "cell.json" in str(e.value) and "\n" not in str(e.value)


def test_a_summary_subset_seed_is_read_and_checked(tmp_path):
    runs = tmp_path / "runs"
    _cell(runs, "a", {"fraction": 5, "subset_seed": 3}, None)
    assert load_runs(runs)[0].subset_seed == 3
    _cell(runs, "b", {"fraction": 5, "subset_seed": True}, None)
    with pytest.raises(InvalidInput, match="'subset_seed' is not a number: True"):
        load_runs(runs)
