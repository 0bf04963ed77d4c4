"""Variance across subset draws vs training seeds, and the draws' overlap table (issue 12 §1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from detpipe.errors import InvalidInput
from detpipe.report.collect import Run
from detpipe.report.render import render_markdown
from detpipe.report.stage import ReportConfig, build_report
from detpipe.report.variance import pooled, variance_of

AXES = Path(__file__).with_name("sweep_axes.csv")

OVERLAP = {
    "seeds": [0, 1, 2],
    "definition": "overlap_pct = 100 x |A and B| / |A| ...",
    "pairs": [],
    "summary": {
        "p": {
            "25": {
                "mean_overlap_pct": 41.5,
                "max_overlap_pct": 43.0,
                "max_class_overlap_pct": 100.0,
                "max_class": "toothbrush",
                "expected_random_pct": 25.0,
            },
            "5": {
                "mean_overlap_pct": 12.25,
                "max_overlap_pct": 13.5,
                "max_class_overlap_pct": 100.0,
                "max_class": "hair drier",
                "expected_random_pct": 5.0,
            },
        },
        "random": {
            "5": {
                "mean_overlap_pct": 5.1,
                "max_overlap_pct": 5.6,
                "max_class_overlap_pct": 33.3,
                "max_class": "person",
                "expected_random_pct": 5.0,
            }
        },
    },
}


def test_draws_vs_seeds_on_the_fixture(tmp_path):
    report = build_report(ReportConfig(out=tmp_path / "o", table=AXES))
    v = report["variance"]["yolo12n"]
    # 5 %: draw 0 (.20, .30) var .005, draw 1 (.21, .29) var .0032 -> sqrt(.0041);
    #      seed 0 (.20, .21), seed 1 (.30, .29): var .00005 each -> sqrt(.00005)
    assert v["5"] == {
        "runs": 4,
        "seeds": [0, 1],
        "draws": [0, 1],
        "across_seeds": {"mean": 0.25, "std": 0.064031, "groups": 2},
        "across_draws": {"mean": 0.25, "std": 0.007071, "groups": 2},
        "dominant": "seeds",
    }
    assert v["25"]["across_seeds"]["std"] == 0.014142 and v["25"]["across_draws"]["std"] == 0.028284
    assert v["25"]["dominant"] == "draws"
    # 100 %: two seeds on one draw: no spread across draws to compare with
    assert v["100"]["across_draws"] is None and v["100"]["dominant"] is None
    md = render_markdown(report)
    assert "## Variance: subset draws vs training seeds" in md
    assert "| yolo12n | 5 % | 4 | 2 | 2 | 0.250 ± 0.064 (2 groups) | 0.250 ± 0.007 (2 groups) | seeds |" in md
    assert "| yolo12n | 100 % | 2 | 2 | 1 | 0.510 ± 0.014 (1 group) | — | — |" in md


def test_pooling_skips_single_run_groups():
    assert pooled({0: [0.2, 0.4], 1: [0.5], 2: [0.1, 0.1, 0.1]}) == {"mean": 0.2, "std": 0.1, "groups": 2}
    assert pooled({0: [0.2], 1: [0.3]}) is None
    # runs without seeds / subset seeds are one group each
    entry = variance_of([Run("m", 5, 0.2), Run("m", 5, 0.3, subset_seed=1), Run("m", 5, 0.4, subset_seed=1)])
    assert entry["seeds"] == [None] and entry["draws"] == [1, None]
    assert entry["across_seeds"] == {"mean": 0.35, "std": 0.070711, "groups": 1}
    assert entry["across_draws"] == {"mean": 0.3, "std": 0.1, "groups": 1}
    assert entry["dominant"] == "draws"


def _cell(runs: Path, name: str, fraction: float, score: float, seed: int, draw: int) -> None:
    cell = runs / name
    cell.mkdir(parents=True)
    summary = {
        "model": "yolo12n",
        "fraction": fraction,
        "best_map5095": score,
        "seed": seed,
        "subset_seed": draw,
    }
    (cell / "train_summary.json").write_text(json.dumps(summary))


def _sweep(runs: Path, overlap: dict | None = OVERLAP) -> None:
    for seed, draw, score in [(0, 0, 0.2), (0, 1, 0.26), (1, 0, 0.22), (1, 1, 0.24)]:
        _cell(runs, f"yolo12n_5_p_s{seed}" + (f"_d{draw}" if draw else ""), 5, score, seed, draw)
    _cell(runs, "yolo12n_100_p_s0", 100, 0.5, 0, 0)
    (runs / "subsets").mkdir()
    (runs / "subsets" / "summary.json").write_text(json.dumps({"seed": 0}))
    if overlap is not None:
        (runs / "subsets" / "overlap.json").write_text(json.dumps(overlap))


def test_the_overlap_filed_under_runs_is_shown(tmp_path):
    runs = tmp_path / "runs"
    _sweep(runs)
    report = build_report(ReportConfig(out=tmp_path / "o", runs=runs))
    assert report["source"]["overlap"] == {"path": str(runs / "subsets" / "overlap.json"), "seeds": [0, 1, 2]}
    assert list(report["overlap"]) == ["p", "random"]
    assert list(report["overlap"]["p"]) == ["5", "25"]  # ascending fractions
    assert report["overlap"]["p"]["5"] == OVERLAP["summary"]["p"]["5"]
    # subset_seed from train_summary.json: 2 draws x 2 seeds at 5 %
    assert report["variance"]["yolo12n"]["5"]["draws"] == [0, 1]
    assert (
        report["variance"]["yolo12n"]["5"]["dominant"] == "draws"
    )  # .2/.26 and .22/.24 vs .2/.22 and .26/.24
    md = render_markdown(report)
    assert "## Overlap between subset draws" in md and "(subset seeds 0, 1, 2)" in md
    assert "| `p` | 5 % | 12.2 % (13.5 %) | 5.0 % | 100.0 % (hair drier) |" in md
    assert "| `random` | 5 % | 5.1 % (5.6 %) | 5.0 % | 33.3 % (person) |" in md


def test_subsets_flag_and_its_errors(tmp_path):
    runs = tmp_path / "runs"
    _sweep(runs, overlap=None)
    assert build_report(ReportConfig(out=tmp_path / "o", runs=runs))["overlap"] is None
    other = tmp_path / "subsets"
    other.mkdir()
    (other / "summary.json").write_text("{}")
    report = build_report(ReportConfig(out=tmp_path / "o", runs=runs, subsets=other))
    assert report["overlap"] is None
    assert f"{other}: no overlap.json (a single subset draw); no overlap table" in report["notes"]
    (other / "overlap.json").write_text(json.dumps(OVERLAP))
    report = build_report(ReportConfig(out=tmp_path / "o", table=AXES, subsets=other))
    assert report["overlap"]["random"]["5"]["max_class"] == "person"
    with pytest.raises(InvalidInput, match="not a subsets output dir"):
        build_report(ReportConfig(out=tmp_path / "o", runs=runs, subsets=runs))
    with pytest.raises(InvalidInput, match="not a directory"):
        build_report(ReportConfig(out=tmp_path / "o", runs=runs, subsets=tmp_path / "nope"))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("[1]", "not a subsets overlap.json (no 'summary')"),
        ('{"seeds": [0, 1], "summary": {"p": {"5": {"mean_overlap_pct": "a lot"}}}}', "is not a number"),
        ('{"seeds": "0,1", "summary": {}}', "'seeds' must be a list of integers"),
        ('{"seeds": [0, 1], "summary": {"p": {"five": {}}}}', "summary fraction 'five' is not a percentage"),
        ("{", "not valid JSON"),
    ],
)
def test_a_bad_overlap_file_is_refused(tmp_path, content, reason):
    runs = tmp_path / "runs"
    _sweep(runs, overlap=None)
    (runs / "subsets" / "overlap.json").write_text(content)
    with pytest.raises(InvalidInput) as e:
        build_report(ReportConfig(out=tmp_path / "o", runs=runs))
    assert reason in str(e.value) and "overlap.json" in str(e.value)


def test_cli_subsets_flag(tmp_path):
    subsets = tmp_path / "subsets"
    subsets.mkdir()
    (subsets / "summary.json").write_text(json.dumps({"seed": 0}))
    (subsets / "overlap.json").write_text(json.dumps(OVERLAP))
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "detpipe.cli.main", "-q", "report", "--table", str(AXES), "--out", str(out)]
    proc = subprocess.run([*cmd, "--subsets", str(subsets)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "yolo12n: best strategy per fraction: 5 % random, 25 % p" in proc.stdout
    assert json.loads((out / "report.json").read_text())["overlap"]["p"]["25"]["mean_overlap_pct"] == 41.5
    proc = subprocess.run([*cmd, "--subsets", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "not a subsets output dir (no summary.json)" in proc.stderr
