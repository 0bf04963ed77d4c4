"""Reading runs: train_summary.json trees (with seeds and subset names) and CSV tables, strictly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detpipe.errors import InvalidInput
from detpipe.report.collect import (
    Run,
    fraction_key,
    group_runs,
    load_runs,
    load_table,
    parse_subset_name,
)
from detpipe.report.select import select_primary
from detpipe.report.stage import ReportConfig, build_report


def _summary(root: Path, rel: str, **keys) -> Path:
    path = root / rel / "train_summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(keys))
    return path


def _sweep(root: Path) -> None:
    """yolo12n on 4 fractions, 3 seeds at 5 %; fractions given, or only in the subset name."""
    for seed, score in [(0, 0.30), (1, 0.32), (2, 0.34)]:
        _summary(
            root,
            f"yolo12n/5/seed{seed}",
            model="yolo12n",
            fraction=5,
            best_map5095=score,
            best_map50=score + 0.2,
            best_epoch=95,
            last_epoch=100,
            seed=seed,
            extra={"ignored": True},
        )
    _summary(
        root, "a", model="yolo12n.yaml", data="/d/yolo/train2017_100_p.yaml", best_map5095=0.5, best_map50=0.7
    )
    _summary(root, "b", model="yolo12n", subset="train2017_2.5_p", best_map5095=0.1, best_map50=0.2)
    _summary(root, "yolo12n_train2017_10_p", model="yolo12n", best_map5095=0.4, best_map50=0.6)
    _summary(root, ".partial.tmp/x", model="yolo12n", fraction=50, best_map5095=0.9)  # in-progress: skipped


def test_runs_dir_with_seeds_and_subset_names(tmp_path):
    _sweep(tmp_path)
    runs = load_runs(tmp_path)
    assert len(runs) == 6
    by_fraction = {fraction_key(r.fraction) for r in runs}
    assert by_fraction == {"2.5", "5", "10", "100"}
    assert {r.model for r in runs} == {"yolo12n"}
    assert {r.strategy for r in runs} == {None, "p"}

    report = build_report(ReportConfig(out=tmp_path / "out", runs=tmp_path))
    n = report["models"]["yolo12n"]
    assert report["source"] == {
        "kind": "runs",
        "path": str(tmp_path),
        "runs": 6,
        "strategy": "p",
        "epochs_policy": None,
        "all_runs": 6,
        "overlap": None,
    }
    assert n["best_map5095"]["5"] == {"mean": 0.32, "std": 0.02, "n": 3, "seeds": [0, 1, 2]}
    assert n["best_map50"] == {"2.5": 0.2, "5": 0.52, "10": 0.6, "100": 0.7}
    assert n["retention"] == {"2.5": 20.0, "5": 64.0, "10": 80.0, "100": 100.0}
    assert n["cliff"]["from"] == 5 and n["cliff"]["to"] == 2.5
    assert n["cliff"]["ratio"] == pytest.approx(0.1 / 0.32, abs=1e-6)
    assert [p["seed"] for p in report["late_peaks"]] == [0, 1, 2]  # 95/100 in each seed
    assert n["fit"]["status"] == "ok" and n["fit"]["points"] == 4


def test_parse_subset_name():
    assert parse_subset_name("/data/yolo/train2017_0.3125_random.yaml") == (0.3125, "random")
    assert parse_subset_name("runs/yolo12n/train2017_5_p/weights") == (5.0, "p")
    assert parse_subset_name("coco.yaml") is None


def test_fraction_keys_are_minimal():
    assert [fraction_key(f) for f in (0.3125, 0.625, 2.5, 5.0, 100.0)] == [
        "0.3125",
        "0.625",
        "2.5",
        "5",
        "100",
    ]


def test_mixed_strategies_pick_a_primary_instead_of_refusing():
    # Until issue 12 a mix of strategies was refused; now the main analysis uses p (else the
    # first alphabetically) and says so, and --strategy still chooses.
    runs = [Run("yolo12n", 5, 0.3, strategy="p"), Run("yolo12n", 5, 0.2, strategy="random")]
    selection = select_primary(runs, None, None)
    assert (selection.runs, selection.strategy, selection.strategies) == ([runs[0]], "p", ["p", "random"])
    assert selection.notes == (
        "the main analysis uses subset strategy 'p' (also present: random; see Strategies; "
        "choose with --strategy)",
    )
    assert select_primary(runs, "random", None).runs == [runs[1]]
    no_p = [Run("m", 5, 0.3, strategy="topn"), Run("m", 5, 0.2, strategy="random")]
    assert select_primary(no_p, None, None).strategy == "random"
    with pytest.raises(InvalidInput, match=r"^no runs with subset strategy 'topn' \(present: p, random\)$"):
        select_primary(runs, "topn", None)


def test_table_with_comments_and_optional_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("# note\nmodel, fraction ,best_map5095,seed,best_map50\n\nyolo12s,2.5,0.25,7,\n")
    (run,) = load_table(path)
    assert run == Run("yolo12s", 2.5, 0.25, best_map50=None, seed=7, source=f"{path}:4")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("model,fraction\nyolo12n,5\n", "missing column(s) best_map5095 (need model,fraction,best_map5095)"),
        ("model,fraction,best_map5095,map\nyolo12n,5,0.3,1\n", "unknown column(s) map"),
        ("model,fraction,best_map5095\n", "the table has a header but no rows"),
        ("", "empty table"),
        ("model,fraction,best_map5095\nyolo12n,5\n", ":2: expected 3 fields, got 2"),
        ("model,fraction,best_map5095\nyolo12n,five,0.3\n", ":2: 'fraction' is not a number: 'five'"),
        (
            "model,fraction,best_map5095\nyolo12n,-5,0.3\n",
            ":2: 'fraction' = -5 must be in (0, 100] (percent)",
        ),
        (
            "model,fraction,best_map5095\nyolo12n,5,45.2\n",
            "'best_map5095' = 45.2 is outside [0, 1] (mAP as a fraction",
        ),
        ("model,fraction,best_map5095\nyolo12n,5,nan\n", "'best_map5095' must be finite"),
        ("model,fraction,best_map5095\n,5,0.3\n", ":2: missing 'model'"),
        (
            "model,fraction,best_map5095,best_epoch,last_epoch\nm,5,0.3,12,10\n",
            "best_epoch 12 is after last_epoch 10",
        ),
        ("model,fraction,best_map5095,best_epoch\nm,5,0.3,1.5\n", "'best_epoch' must be an integer"),
    ],
)
def test_bad_tables_say_why(tmp_path, text, reason):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(InvalidInput) as e:
        load_table(path)
    assert reason in str(e.value) and "\n" not in str(e.value)


def test_duplicates_need_distinct_seeds():
    with pytest.raises(InvalidInput, match=r"^duplicate rows for yolo12n at 5 % without seeds \(a, b\)$"):
        group_runs([Run("yolo12n", 5, 0.3, source="a"), Run("yolo12n", 5.0, 0.31, source="b")])
    with pytest.raises(InvalidInput, match=r"^duplicate seed for yolo12n at 5 % \(seed 1: a, b\)$"):
        group_runs([Run("yolo12n", 5, 0.3, seed=1, source="a"), Run("yolo12n", 5, 0.31, seed=1, source="b")])
    assert len(group_runs([Run("yolo12n", 5, 0.3, seed=1), Run("yolo12n", 5, 0.31, seed=2)])) == 1


def test_bad_summaries_say_why(tmp_path):
    with pytest.raises(InvalidInput, match=r"no train_summary\.json found"):
        load_runs(tmp_path)
    _summary(tmp_path, "x", model="yolo12n", best_map5095=0.3)
    with pytest.raises(
        InvalidInput, match="missing 'fraction' and no train2017_<pct>_<strategy> name to parse"
    ):
        load_runs(tmp_path)
    _summary(tmp_path, "x", model="yolo12n", fraction="5", best_map5095=0.3)  # strings only in CSV
    with pytest.raises(InvalidInput, match="'fraction' is not a number: '5'"):
        load_runs(tmp_path)
    (tmp_path / "x" / "train_summary.json").write_text("[1]")
    with pytest.raises(InvalidInput, match="expected a JSON object, got list"):
        load_runs(tmp_path)
