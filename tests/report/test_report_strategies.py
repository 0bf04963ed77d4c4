"""Strategies and epochs policies side by side (issue 12 §1), on the hand-checked sweep_axes.csv."""

from __future__ import annotations

from pathlib import Path

import pytest

from detpipe.errors import InvalidInput
from detpipe.report.collect import Run
from detpipe.report.compare import compare_axis
from detpipe.report.render import render_markdown
from detpipe.report.stage import ReportConfig, build_report, write_report

AXES = Path(__file__).with_name("sweep_axes.csv")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return build_report(ReportConfig(out=tmp_path_factory.mktemp("r") / "out", table=AXES))


def test_the_main_analysis_uses_p_and_fixed_and_says_so(report):
    assert (report["source"]["strategy"], report["source"]["epochs_policy"]) == ("p", "fixed")
    assert (report["source"]["runs"], report["source"]["all_runs"]) == (10, 15)
    n = report["models"]["yolo12n"]["best_map5095"]
    assert {k: (c["mean"], c["n"]) for k, c in n.items()} == {
        "5": (0.25, 4),
        "25": (0.43, 4),
        "100": (0.51, 2),
    }
    assert report["notes"][:2] == [
        "the main analysis uses subset strategy 'p' (also present: random, topn; see Strategies; "
        "choose with --strategy)",
        "the main analysis uses epochs policy 'fixed' (also present: iterations; see Epochs policies; "
        "choose with --epochs-policy)",
    ]


def test_strategies_per_model_and_fraction_with_winners(report):
    s = report["strategies"]
    assert (s["primary"], s["present"]) == ("p", ["p", "random", "topn"])
    assert s["models"]["yolo12n"] == {
        "5": {
            "p": {"mean": 0.25, "std": 0.052281, "n": 4},  # sqrt((.05² + .05² + .04² + .04²) / 3)
            "random": {"mean": 0.28, "std": None, "n": 1},
            "topn": {"mean": 0.15, "std": None, "n": 1},
        },
        "25": {"p": {"mean": 0.43, "std": 0.02582, "n": 4}, "random": {"mean": 0.42, "std": None, "n": 1}},
        "100": {"p": {"mean": 0.51, "std": 0.014142, "n": 2}},
    }
    assert s["winner"] == {"yolo12n": {"5": "random", "25": "p"}}  # no winner with a single strategy
    md = render_markdown(report)
    assert "| model | fraction | `p` | `random` | `topn` |" in md
    assert "| yolo12n | 5 % | 0.250 ± 0.052 (n=4) | **0.280** | 0.150 |" in md
    assert "| yolo12n | 25 % | **0.430 ± 0.026 (n=4)** | 0.420 | — |" in md


def test_policies_at_the_primary_strategy(report):
    p = report["policies"]
    assert (p["primary"], p["present"]) == ("fixed", ["fixed", "iterations"])
    assert p["models"]["yolo12n"]["5"]["iterations"] == {"mean": 0.33, "std": None, "n": 1}
    assert p["winner"] == {"yolo12n": {"5": "iterations", "25": "iterations"}}
    md = render_markdown(report)
    assert "## Epochs policies" in md
    assert "| yolo12n | 25 % | 0.430 ± 0.026 (n=4) | **0.450** |" in md


def test_schedules_say_which_policy_each_run_used(report):
    schedules = report["schedules"]
    assert len(schedules) == 15
    assert schedules[0] == {
        "model": "yolo12n",
        "fraction": 5,
        "strategy": "p",
        "seed": 0,
        "subset_seed": 0,
        "epochs_policy": "fixed",
        "epochs": 4,
        "epochs_scale": None,
        "capped": None,
    }
    md = render_markdown(report)
    assert "## Schedules (which epochs policy each run used)" in md
    assert "| yolo12n | 5 % | `p` | `fixed` | 4 | — | 4 | 0, 1 | 0, 1 |" in md
    assert "| yolo12n | 5 % | `p` | `iterations` | 40 | — | 1 | 0 | 0 |" in md


def test_a_plain_sweep_has_no_new_sections(tmp_path):
    report = build_report(ReportConfig(out=tmp_path / "o", table=Path(__file__).with_name("scaling.csv")))
    assert report["strategies"] == {
        "primary": None,
        "present": [],
        "models": {},
        "winner": {},
    }
    assert report["policies"]["present"] == [] and report["variance"] == {} and report["overlap"] is None
    md = render_markdown(report)
    for title in ("## Strategies", "## Epochs policies", "## Schedules", "## Variance", "## Overlap"):
        assert title not in md


def test_choosing_the_primary_strategy_and_policy(tmp_path):
    random = build_report(ReportConfig(out=tmp_path / "o", table=AXES, strategy="random"))
    assert random["source"]["strategy"] == "random"
    assert {k: c["mean"] for k, c in random["models"]["yolo12n"]["best_map5095"].items()} == {
        "5": 0.28,
        "25": 0.42,
    }
    assert random["strategies"]["primary"] == "random"
    iters = build_report(ReportConfig(out=tmp_path / "o", table=AXES, epochs_policy="iterations"))
    assert iters["source"]["epochs_policy"] == "iterations"
    assert {k: c["mean"] for k, c in iters["models"]["yolo12n"]["best_map5095"].items()} == {
        "5": 0.33,
        "25": 0.45,
    }
    # strategies are compared at the primary policy: only p ran with iterations
    assert iters["strategies"]["present"] == ["p"]
    with pytest.raises(InvalidInput, match=r"^no runs with epochs policy 'iterations' \(present: none\)$"):
        build_report(
            ReportConfig(
                out=tmp_path / "o", table=Path(__file__).with_name("scaling.csv"), epochs_policy="iterations"
            )
        )
    with pytest.raises(
        InvalidInput, match=r"^--epochs-policy must be one of fixed, iterations, got 'steps'$"
    ):
        ReportConfig(out=tmp_path / "o", table=AXES, epochs_policy="steps")


def test_no_run_at_both_primaries_is_refused(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text(
        "model,fraction,best_map5095,strategy,epochs_policy\nm,5,0.3,p,iterations\nm,5,0.2,random,fixed\n"
    )
    with pytest.raises(
        InvalidInput, match=r"^no runs with subset strategy 'p' and epochs policy 'fixed' together"
    ):
        build_report(ReportConfig(out=tmp_path / "o", table=table))
    assert (
        build_report(ReportConfig(out=tmp_path / "o", table=table, strategy="random"))["source"]["runs"] == 1
    )
    # a model trained only on another strategy is named in the notes
    with table.open("a") as f:
        f.write("m,10,0.4,p,fixed\nother,5,0.3,random,fixed\n")
    report = build_report(ReportConfig(out=tmp_path / "o", table=table))
    assert list(report["models"]) == ["m"] and list(report["strategies"]["models"]) == ["m", "other"]
    note = "other: no runs at subset strategy 'p' and epochs policy 'fixed'; shown only in the comparisons"
    assert note in report["notes"]


def test_duplicates_must_differ_in_seed_or_subset_seed(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text(
        "model,fraction,best_map5095,seed,subset_seed\nm,5,0.3,0,1\nm,5,0.31,0,2\nm,5,0.32,0,1\n"
    )
    with pytest.raises(InvalidInput) as e:
        build_report(ReportConfig(out=tmp_path / "o", table=table))
    assert str(e.value) == f"duplicate seed for m at 5 % (seed 0, subset seed 1: {table}:2, {table}:4)"
    table.write_text("model,fraction,best_map5095,seed,subset_seed\nm,5,0.3,0,1\nm,5,0.31,0,2\n")
    assert (
        build_report(ReportConfig(out=tmp_path / "o", table=table))["models"]["m"]["best_map5095"]["5"]["n"]
        == 2
    )
    # the same seed and draw under two strategies are two cells, not duplicates
    table.write_text("model,fraction,best_map5095,seed,strategy\nm,5,0.3,0,p\nm,5,0.31,0,random\n")
    assert build_report(ReportConfig(out=tmp_path / "o", table=table))["strategies"]["present"] == [
        "p",
        "random",
    ]


def test_bad_policy_values_say_why(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("model,fraction,best_map5095,epochs_policy\nm,5,0.3,steps\n")
    with pytest.raises(
        InvalidInput, match=r":2: 'epochs_policy' must be one of fixed, iterations, got 'steps'$"
    ):
        build_report(ReportConfig(out=tmp_path / "o", table=table))
    table.write_text("model,fraction,best_map5095,epochs\nm,5,0.3,0\n")
    with pytest.raises(InvalidInput, match=r":2: 'epochs' = 0 must be >= 1$"):
        build_report(ReportConfig(out=tmp_path / "o", table=table))


def test_ties_go_to_the_primary_then_alphabetically():
    runs = [Run("m", 5, 0.3, strategy=s) for s in ("topn", "random", "p")]
    assert compare_axis(runs, "strategy", "p", {})["winner"] == {"m": {"5": "p"}}
    assert compare_axis(runs, "strategy", "topn", {})["winner"] == {"m": {"5": "topn"}}
    assert compare_axis(runs[:2], "strategy", "p", {})["winner"] == {"m": {"5": "random"}}


def test_the_comparison_plots_are_written_only_with_two_values(tmp_path):
    write_report(ReportConfig(out=tmp_path / "r", table=AXES))
    names = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert names == [
        "cliff.png",
        "map_vs_size.png",
        "policies.png",
        "report.html",
        "report.json",
        "report.md",
        "retention_vs_size.png",
        "strategies.png",
        "variance.png",
    ]
    md = (tmp_path / "r" / "report.md").read_text()
    assert "![mAP50-95 vs training-set size per subset strategy](strategies.png)" in md
    write_report(ReportConfig(out=tmp_path / "r2", table=AXES, strategy="topn"))  # topn: 1 run, fixed only
    assert not (tmp_path / "r2" / "variance.png").exists()
    assert not (tmp_path / "r2" / "policies.png").exists()
    assert (tmp_path / "r2" / "strategies.png").exists()  # strategies still compared at 'fixed'
