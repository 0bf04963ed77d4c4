"""The reproduction gate: reference tables, the comparison, and ``detpipe report --reference``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from detpipe.cli.main import main
from detpipe.errors import InvalidInput
from detpipe.report.reproduction import YOLO12_COCO, compare, load_reference
from detpipe.report.stage import ReportConfig, build_report

FIXTURE = Path(__file__).with_name("scaling.csv")  # yolo12n 100 % = 0.500, yolo12s 100 % = 0.600


def _detpipe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "-q", "report", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _csv(tmp_path: Path, text: str, name: str = "ref.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_shipped_yolo12_figures():
    assert load_reference(YOLO12_COCO) == {
        "yolo12n": 0.406,
        "yolo12s": 0.480,
        "yolo12m": 0.525,
        "yolo12l": 0.537,
        "yolo12x": 0.552,
    }
    assert "docs.ultralytics.com/models/yolo12" in YOLO12_COCO.read_text()


def _models(**full: float | None) -> dict:
    return {
        m: {"best_map5095": {} if v is None else {"100": {"mean": v}, "50": {"mean": v / 2}}}
        for m, v in full.items()
    }


def test_compare_signed_diffs_and_the_bound():
    entries, ok = compare(_models(a=0.39, b=0.414), {"a": 0.4, "b": 0.4, "zz": 0.5}, max_rel_diff=3.5)
    assert entries == {
        "a": {"ours": 0.39, "reference": 0.4, "abs_diff": -0.01, "rel_diff_pct": -2.5, "ok": True},
        "b": {"ours": 0.414, "reference": 0.4, "abs_diff": 0.014, "rel_diff_pct": 3.5, "ok": True},
    }
    assert ok is True
    entries, ok = compare(_models(a=0.39, b=0.414), {"a": 0.4, "b": 0.4}, max_rel_diff=3.0)
    assert [e["ok"] for e in entries.values()] == [True, False] and ok is False


def test_compare_without_a_full_run_fails_that_model():
    entries, ok = compare(_models(a=None, b=0.4), {"a": 0.4, "b": 0.4})
    assert entries["a"] == {
        "ours": None,
        "reference": 0.4,
        "abs_diff": None,
        "rel_diff_pct": None,
        "ok": False,
    }
    assert entries["b"]["ok"] is True and ok is False


def test_compare_refuses_a_reference_for_other_models():
    with pytest.raises(InvalidInput, match="names none of the reported models"):
        compare(_models(a=0.4), {"b": 0.4})


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("model,map\nm,0.4\n", "header must be model,map5095"),
        ("model,map5095\nm,40.6\n", "outside (0, 1] (write 40.6 % as 0.406)"),
        ("model,map5095\nm,x\n", "'map5095' is not a number"),
        ("model,map5095\nm,0.4\nm,0.5\n", "duplicate row for m"),
        ("# only a comment\nmodel,map5095\n", "has a header but no rows"),
        ("model,map5095\nm,0.4,1\n", "expected 'model,map5095'"),
    ],
)
def test_bad_reference_tables(tmp_path, text, reason):
    with pytest.raises(InvalidInput) as e:
        load_reference(_csv(tmp_path, text))
    assert reason in str(e.value)


def test_report_with_reference_passes_and_fails_the_gate(tmp_path, capsys):
    ref = _csv(tmp_path, "# ours: n 0.500, s 0.600\nmodel,map5095\nyolo12n,0.510\nyolo12s,0.406\n")
    out = tmp_path / "report"
    assert main(["-q", "report", "--table", str(FIXTURE), "--out", str(out), "--reference", str(ref)]) == 0
    stdout = capsys.readouterr().out  # a mismatch alone does not fail the command
    report = json.loads((out / "report.json").read_text())
    assert report["reproduction"]["yolo12n"] == {
        "ours": 0.5,
        "reference": 0.51,
        "abs_diff": -0.01,
        "rel_diff_pct": -1.9608,
        "ok": True,
    }
    assert report["reproduction"]["yolo12s"]["ok"] is False and report["reproduction_ok"] is False
    assert report["settings"]["max_rel_diff_pct"] == 3.5
    md = (out / "report.md").read_text()
    assert "| yolo12n | 0.500 | 0.510 | -0.010 | -2.0 % | ✓ |" in md and "**NOT reproduced**" in md
    assert "yolo12s: reproduction MISMATCH: 0.600 vs 0.406 (+47.8 %)" in stdout

    proc = _detpipe("--table", str(FIXTURE), "--out", str(out), "--reference", str(ref), "--fail-on-mismatch")
    assert proc.returncode == 4
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("detpipe report: error: yolo12s not reproduced within 3.5 %")
    assert (out / "report.json").exists()  # the report is still written for inspection

    loose = build_report(ReportConfig(out=out, table=FIXTURE, reference=ref, max_rel_diff=50.0))
    assert loose["reproduction_ok"] is True


def test_report_against_the_shipped_reference(tmp_path, capsys):
    out = tmp_path / "report"
    assert (
        main(["-q", "report", "--table", str(FIXTURE), "--out", str(out), "--reference", "yolo12-coco"]) == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert list(report["reproduction"]) == ["yolo12n", "yolo12s"]  # only the models in the table
    assert report["reproduction"]["yolo12s"]["rel_diff_pct"] == 25.0
    assert report["settings"]["reference"] == str(YOLO12_COCO)


def test_report_without_reference_has_no_gate(tmp_path):
    from detpipe.report.render import render_markdown

    report = build_report(ReportConfig(out=tmp_path / "report", table=FIXTURE))
    assert report["reproduction"] is None and report["reproduction_ok"] is None
    assert "## Reproduction" not in render_markdown(report)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["--reference", "missing.csv"], "missing.csv: no such file"),
        (["--reference", "yolo12-coco", "--max-rel-diff", "-1"], "--max-rel-diff must be a percentage >= 0"),
    ],
)
def test_bad_reference_input_exits_2_and_writes_nothing(tmp_path, capsys, extra, reason):
    out = tmp_path / "out"
    assert main(["-q", "report", "--table", str(FIXTURE), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("detpipe report: error: ") and reason in err
    assert not out.exists()
