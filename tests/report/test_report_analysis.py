"""The report on the hand-checked fixture scaling.csv: table, retention, cliff, stability, order."""

from __future__ import annotations

from pathlib import Path

import pytest

from detpipe.report.analysis import analyze_model, order_models
from detpipe.report.collect import Run, group_runs
from detpipe.report.render import render_markdown
from detpipe.report.stage import ReportConfig, build_report

FIXTURE = Path(__file__).with_name("scaling.csv")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return build_report(ReportConfig(out=tmp_path_factory.mktemp("r") / "out", table=FIXTURE))


def test_table_rows_and_columns(report):
    assert list(report["models"]) == ["yolo12n", "yolo12s"]  # n before s although s comes first in the CSV
    assert report["fractions"] == ["2.5", "5", "10", "25", "50", "100"]
    table = {m: {k: c["mean"] for k, c in d["best_map5095"].items()} for m, d in report["models"].items()}
    assert table == {
        "yolo12n": {"2.5": 0.175, "5": 0.35, "10": 0.4, "25": 0.45, "50": 0.48, "100": 0.5},
        "yolo12s": {"2.5": 0.3, "5": 0.36, "10": 0.48, "25": 0.54, "50": 0.57, "100": 0.6},
    }
    cell = report["models"]["yolo12n"]["best_map5095"]["5"]
    assert (cell["std"], cell["n"], cell["seeds"]) == (None, 1, [])


def test_retention_is_percent_of_the_100_percent_score(report):
    n, s = report["models"]["yolo12n"], report["models"]["yolo12s"]
    # 0.175/0.5, 0.35/0.5, ... and 0.30/0.6, 0.36/0.6, ...
    assert n["retention"] == {"2.5": 35.0, "5": 70.0, "10": 80.0, "25": 90.0, "50": 96.0, "100": 100.0}
    assert s["retention"] == {"2.5": 50.0, "5": 60.0, "10": 80.0, "25": 90.0, "50": 95.0, "100": 100.0}
    assert n["retention_reference"] == {"fraction": 100, "full": True}


def test_cliff_is_the_largest_adjacent_drop(report):
    n, s = report["models"]["yolo12n"], report["models"]["yolo12s"]
    assert n["cliff"] == {
        "from": 5,
        "to": 2.5,
        "ratio": 0.5,
        "drop": 0.175,
        "upper_map": 0.35,
        "lower_map": 0.175,
    }
    assert s["cliff"] == {
        "from": 10,
        "to": 5,
        "ratio": 0.75,
        "drop": 0.12,
        "upper_map": 0.48,
        "lower_map": 0.36,
    }
    assert [(st["from"], st["to"], st["drop"]) for st in s["steps"]] == [
        (100, 50, 0.03),
        (50, 25, 0.03),
        (25, 10, 0.06),
        (10, 5, 0.12),
        (5, 2.5, 0.06),
    ]


def test_late_peaks_are_flagged(report):
    # last 10 % of 100 epochs = epochs 91..100; of 300 epochs = 271..300.
    flagged = [(p["model"], p["fraction"], p["best_epoch"], p["last_epoch"]) for p in report["late_peaks"]]
    assert flagged == [("yolo12n", 2.5, 100, 100), ("yolo12n", 5, 91, 100), ("yolo12s", 10, 271, 300)]
    n = report["models"]["yolo12n"]["stability"]
    assert n["10"] == [
        {
            "seed": None,
            "subset_seed": None,
            "best_epoch": 90,
            "last_epoch": 100,
            "epochs": None,
            "position": 0.9,
            "late_peak": False,
            "still_improving": False,
        }
    ]
    # Planned epochs unknown: every late peak counts as still improving.
    assert [(p["model"], p["fraction"]) for p in report["still_improving"]] == [
        ("yolo12n", 2.5),
        ("yolo12n", 5),
        ("yolo12s", 10),
    ]
    assert report["models"]["yolo12s"]["stability"]["5"][0]["late_peak"] is False  # 270/300: not in 271..300


def test_regimes_on_the_mean_curve(report):
    # yolo12n: retention 35/70/80/90/96/100, cliff 5 -> 2.5; yolo12s: 50/60/80/90/95/100, cliff 10 -> 5.
    assert report["models"]["yolo12n"]["regimes"] == {
        "2.5": "collapsed",
        "5": "steep",
        "10": "steep",
        "25": "saturated",
        "50": "saturated",
        "100": "saturated",
    }
    # 2.5 % keeps exactly 50 %: not below the collapse threshold, so steep.
    assert report["models"]["yolo12s"]["regimes"]["2.5"] == "steep"
    assert set(report["models"]["yolo12s"]["regimes"].values()) == {"steep", "saturated"}
    md = render_markdown(report)
    assert "| yolo12n | collapsed | steep | steep | saturated | saturated | saturated |" in md


def test_markdown_shows_the_tables(report):
    md = render_markdown(report, ["map_vs_size.png"])
    assert "| model | 2.5 % | 5 % | 10 % | 25 % | 50 % | 100 % |" in md
    assert "| yolo12n | 0.175 | 0.350 | 0.400 | 0.450 | 0.480 | 0.500 |" in md
    assert "| yolo12s | 50.0 | 60.0 | 80.0 | 90.0 | 95.0 | 100.0 |" in md
    assert "| yolo12n | 5 % → 2.5 % | 0.350 | 0.175 | 0.175 | 0.500 |" in md
    assert "| yolo12n | 100/100 ⚠ | 91/100 ⚠ | 90/100 | 60/100 | 55/100 | 50/100 |" in md
    assert "![mAP50-95 vs training-set size (fits dashed)](map_vs_size.png)" in md


def _runs(model: str, scores: dict[float, float]) -> list[Run]:
    return [Run(model=model, fraction=f, best_map5095=v) for f, v in scores.items()]


def test_without_a_100_percent_run_retention_is_relative_to_the_largest_fraction():
    groups = group_runs(_runs("yolo12m", {10: 0.3, 25: 0.36, 50: 0.4}))
    a = analyze_model("yolo12m", groups)
    assert a.reference is not None and a.reference.fraction == 50 and not a.reference_is_full
    assert a.retention == pytest.approx({"10": 75.0, "25": 90.0, "50": 100.0})
    assert a.notes == ("yolo12m: no 100 % run; retention is relative to its largest fraction (50 %)",)


def test_cliff_tie_goes_to_the_larger_fractions_and_single_fraction_has_none():
    groups = group_runs(_runs("m", {25: 0.25, 50: 0.5, 100: 0.75}) + _runs("one", {100: 0.5}))  # exact tie
    cliff = analyze_model("m", groups).cliff
    assert cliff is not None and (cliff.upper.fraction, cliff.lower.fraction) == (100, 50)
    assert analyze_model("one", groups).cliff is None


def test_seeds_are_averaged_with_sample_std():
    runs = [Run("yolo12n", 5, v, seed=s) for s, v in [(2, 0.30), (0, 0.34), (1, 0.32)]]
    a = analyze_model("yolo12n", group_runs(runs))
    (cell,) = a.cells
    assert [r.seed for r in cell.runs] == [0, 1, 2]
    assert cell.mean == pytest.approx(0.32)
    assert cell.std == pytest.approx(0.02)  # sqrt((0.02² + 0 + 0.02²) / 2)


def test_model_order_n_s_m_l_x_within_each_family():
    names = ["yolo12x", "custom", "yolo11n", "yolo12n", "yolo12l", "yolo12s", "yolo12m", "yolov8s"]
    assert order_models(names) == [
        "yolo11n",
        "yolo12n",
        "yolo12s",
        "yolo12m",
        "yolo12l",
        "yolo12x",
        "yolov8s",
        "custom",
    ]


def test_too_few_fractions_for_a_fit_and_no_full_run_are_reported(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("model,fraction,best_map5095\nyolo12m,10,0.3\nyolo12m,25,0.36\nyolo12m,50,0.4\n")
    report = build_report(ReportConfig(out=tmp_path / "o", table=table))
    m = report["models"]["yolo12m"]
    assert m["fit"] == {
        "status": "insufficient points",
        "reason": "3 fractions, need >= 4",
        "min_fraction": None,
    }
    assert m["retention"] == {"10": 75.0, "25": 90.0, "50": 100.0}
    assert m["retention_reference"] == {"fraction": 50, "full": False}
    assert m["stability"] == {} and report["late_peaks"] == []
    md = render_markdown(report)
    assert "| yolo12m | — | — | — | — | — | — | insufficient points (3 fractions, need >= 4) |" in md
    assert "| yolo12m † | 75.0 | 90.0 | 100.0 |" in md
    assert "No epoch information in the inputs." in md
    assert report["notes"] == [
        "yolo12m: power-law fit insufficient points (3 fractions, need >= 4)",
        "yolo12m: no 100 % run; retention is relative to its largest fraction (50 %)",
    ]
