"""``detpipe al report`` on hand-made round records: the curves' mean ± std, the label saving and its
uncertainty as report.json gives them, the sweep's power law in labeled images, the markdown, PNG
and self-contained page, records filed on a real S3 server (moto), bad input refused in one line
(the CLI as a process)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from detpipe.activelearning.records import SCHEMA, file_cell, load_records
from detpipe.activelearning.report import ReportConfig, build_report, write_report
from detpipe.errors import InvalidInput
from detpipe.report.html import external_references

XS = [30, 60, 90]
# the curves of tests/activelearning/test_stats.py::test_label_saving_over_two_seeds_by_hand
CURVES = {
    ("uncertainty", 0): [0.1, 0.3, 0.4],
    ("uncertainty", 1): [0.1, 0.2, 0.3],
    ("random", 0): [0.1, 0.2, 0.3],
    ("random", 1): [0.1, 0.25, 0.3],
}
SHARED = {"budget": 30, "rounds": 2, "seed_fraction": 10.0, "imgsz": 64, "annotated_images": 300,
          "val_images": 80, "finetune": False, "model": "yolov8-pico"}  # fmt: skip


def record(strategy: str, seed: int, k: int, labeled: int, value: float, **extra) -> dict:
    return {"schema": SCHEMA, "cell": f"{strategy}_s{seed}", "strategy": strategy, "seed": seed, "round": k,
            "labeled_images": labeled, "map50_95": value, "map50": 2 * value, "epochs": 30,
            **SHARED, **extra}  # fmt: skip


def write_cells(root: Path, curves: dict = CURVES, **extra) -> Path:
    for (strategy, seed), ys in curves.items():
        cell = root / f"{strategy}_s{seed}"
        cell.mkdir(parents=True, exist_ok=True)
        (cell / "cell.json").write_text(json.dumps({"name": f"{strategy}_s{seed}", **SHARED}))
        for k, (x, y) in enumerate(zip(XS, ys, strict=False)):
            (cell / f"round-{k}.json").write_text(json.dumps(record(strategy, seed, k, x, y, **extra)))
    return root


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "detpipe.cli.main", *args], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_report_numbers(tmp_path):
    report = write_report(ReportConfig(runs=str(write_cells(tmp_path / "runs")), out=tmp_path / "out"))
    assert list(report["strategies"]) == ["random", "uncertainty"]  # the baseline first
    points = report["strategies"]["uncertainty"]["points"]
    assert [p["labeled"]["mean"] for p in points] == [30, 60, 90]
    assert points[1]["map50_95"] == {"mean": 0.25, "std": pytest.approx(0.070711, abs=1e-6), "n": 2}
    assert points[0]["map50_95"]["std"] == 0.0 and points[1]["seeds"] == [0, 1]
    s = report["saving"]["uncertainty"]
    assert (s["target"], s["baseline_images"], s["images"], s["saving"]) == (0.3, 90.0, 75.0, 15.0)
    assert s["saving_pct"] == pytest.approx(16.667) and s["status"] == "reached"
    assert s["per_seed"]["0"]["saving"] == 30.0 and s["per_seed"]["1"]["saving"] == 0.0
    assert s["seed_std"] == pytest.approx(21.213)
    assert (s["bootstrap"]["low"], s["bootstrap"]["high"], s["bootstrap"]["level"]) == (0.0, 30.0, 0.9)
    assert report["settings"]["seeds"] == [0, 1] and report["settings"]["budget"] == 30
    assert report["power_law"] is None
    assert any("2 seed(s)" in n for n in report["notes"])

    out = tmp_path / "out"
    assert json.loads((out / "report.json").read_text()) == report
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "| uncertainty | 1 | 60 | 0.250 ± 0.071 (n=2) | 0.500 ± 0.141 (n=2) |" in md
    assert "+15.0 images (+16.7 %)" in md and "0: +30.0, 1: +0.0" in md
    assert "[+0.0, +30.0] (90%, reached in 100%)" in md and "the interval spans 0" in md
    page = (out / "report.html").read_text()
    assert external_references(page) == [] and page.count('src="data:image/png;base64,') == 1


def test_the_sweeps_power_law_in_labeled_images(tmp_path):
    sweep = tmp_path / "sweep" / "report.json"
    sweep.parent.mkdir()
    fit = {"status": "ok", "a": 0.6, "b": 1.5, "alpha": 0.5, "r2": 0.99, "min_fraction": 10}
    sweep.write_text(json.dumps({"models": {"yolov8-pico": {"fit": fit}, "yolo12n": {"fit": fit}},
                                 "settings": {"full_images": None}}))  # fmt: skip
    runs = str(write_cells(tmp_path / "runs"))
    cfg = ReportConfig(runs=runs, out=tmp_path / "o", sweep_report=str(sweep.parent))
    law = build_report(cfg)["power_law"]
    assert (law["model"], law["full_images"]) == ("yolov8-pico", 300)  # the cells' model and images
    # 90 of 300 images = 30 %: 0.6 - 1.5 / sqrt(30); the target 0.3 needs (1.5 / 0.3)^2 = 25 % = 75 images
    assert law["predicted_at_final"] == {
        "random": pytest.approx(0.326139),
        "uncertainty": pytest.approx(0.326139),
    }
    assert law["images_for_target"] == 75.0
    given = build_report(
        ReportConfig(runs=runs, out=tmp_path / "o", power_law=(0.6, 1.5, 0.5), full_images=600)
    )
    assert given["power_law"]["images_for_target"] == 150.0 and given["power_law"]["source"] == "given"
    with pytest.raises(InvalidInput, match="no model 'yolo11n'"):
        build_report(
            ReportConfig(runs=runs, out=tmp_path / "o", sweep_report=str(sweep), sweep_model="yolo11n")
        )
    sweep.write_text(json.dumps({"models": {"yolov8-pico": {"fit": {"status": "insufficient points"}}}}))
    with pytest.raises(InvalidInput, match="no power-law fit"):
        build_report(ReportConfig(runs=runs, out=tmp_path / "o", sweep_report=str(sweep)))


def test_cells_that_cannot_be_compared_are_refused(tmp_path):
    runs = write_cells(tmp_path / "runs")
    bad = record("uncertainty", 2, 0, 30, 0.1) | {"budget": 20}
    (runs / "uncertainty_s2").mkdir()
    (runs / "uncertainty_s2" / "round-0.json").write_text(json.dumps(bad))
    with pytest.raises(InvalidInput, match=r"different budget: 30 .* and 20 .*report them apart"):
        build_report(ReportConfig(runs=str(runs), out=tmp_path / "o"))
    (runs / "uncertainty_s2" / "round-0.json").unlink()
    (runs / "uncertainty_s1" / "round-1.json").unlink()
    with pytest.raises(InvalidInput, match=r"uncertainty seed 1: rounds \[0, 2\] filed"):
        build_report(ReportConfig(runs=str(runs), out=tmp_path / "o"))
    (runs / "uncertainty_s1" / "round-2.json").write_text('{"schema": "something else"}')
    with pytest.raises(InvalidInput, match="not an active-learning round record"):
        load_records(runs)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="no active-learning round records"):
        load_records(tmp_path / "empty")
    with pytest.raises(InvalidInput, match="not both"):
        ReportConfig(runs="x", out=tmp_path, sweep_report="r.json", power_law=(1, 1, 1))


def test_without_random_cells_there_is_no_saving(tmp_path):
    only = {k: v for k, v in CURVES.items() if k[0] == "uncertainty"}
    report = build_report(ReportConfig(runs=str(write_cells(tmp_path / "runs", only)), out=tmp_path / "o"))
    assert report["saving"] == {} and "no random cells: no baseline, no label saving" in report["notes"]


def test_records_filed_on_s3_and_reported_from_there(tmp_path, s3, monkeypatch):
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    cells = write_cells(tmp_path / "cells")
    runs = f"s3://detpipe-test/al-{uuid.uuid4().hex[:8]}"
    uris = [file_cell(cells / name, runs) for name in sorted(p.name for p in cells.iterdir())]
    assert uris[0] == f"{runs}/random_s0"
    report = build_report(ReportConfig(runs=runs, out=tmp_path / "o"))
    assert report["source"]["records"] == 12 and report["saving"]["uncertainty"]["saving"] == 15.0


def test_cli_prints_the_headline_and_refuses_bad_input_in_one_line(tmp_path):
    runs = write_cells(tmp_path / "runs")
    res = _cli(
        "al", "report", "--runs", str(runs), "--out", str(tmp_path / "out"), "--power-law", "0.6,1.5,0.5"
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith(
        "uncertainty vs random: +15.0 images (+16.7 %) to reach mAP50-95 0.300; seed std 21.2"
    )
    assert lines[-1] == str(tmp_path / "out" / "report.md")
    for args in (
        ["al", "report", "--runs", str(tmp_path / "nothing"), "--out", str(tmp_path / "o2")],
        ["al", "run", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "o3")],
        ["al", "run", "--data", str(tmp_path), "--out", str(tmp_path / "o3"), "--seed-fraction", "100"],
    ):
        res = _cli(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()
    res = _cli("al", "report", "--runs", str(runs), "--out", str(tmp_path / "o4"), "--power-law", "1,2")
    assert res.returncode == 2 and "expected A,B,ALPHA" in res.stderr
