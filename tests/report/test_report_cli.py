"""``detpipe report`` as a process: outputs on success; on bad input exit 2, one line, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).with_name("scaling.csv")
OUTPUTS = ["cliff.png", "map_vs_size.png", "report.html", "report.json", "report.md", "retention_vs_size.png"]


def _detpipe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "-q", "report", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_table_to_report(tmp_path):
    out = tmp_path / "report"
    proc = _detpipe("--table", str(FIXTURE), "--out", str(out), "--target", "0.55", "--full-images", "118287")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temp dirs left behind
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "report.json").read_text())
    n, s = report["models"]["yolo12n"], report["models"]["yolo12s"]
    assert n["retention"]["5"] == 70.0 and n["cliff"]["from"] == 5 and n["cliff"]["ratio"] == 0.5
    assert n["fit"]["target"]["status"] == "not reachable"  # 0.55 is above yolo12n's asymptote
    assert s["fit"]["target"]["status"] == "reachable"
    assert s["fit"]["target"]["images"] == -(-s["fit"]["target"]["fraction"] * 118287 // 100)
    assert proc.stdout.splitlines()[0].startswith(
        "yolo12n: cliff 5 % -> 2.5 % (ratio 0.500); mAP 0.55 not reachable"
    )
    assert "not reachable (a = " in (out / "report.md").read_text()


def test_help_explains():
    proc = _detpipe("--help")
    assert proc.returncode == 0
    assert "train_summary.json" in proc.stdout and "--target" in proc.stdout and "cliff" in proc.stdout
    assert "--epochs-policy" in proc.stdout and "--subsets" in proc.stdout and "cell.json" in proc.stdout


def _bad_csv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("make_args", "reason"),
    [
        (lambda t: ["--table", _bad_csv(t, "model,fraction\nm,5\n")], "missing column(s) best_map5095"),
        (
            lambda t: ["--table", _bad_csv(t, "model,fraction,best_map5095\nm,x,0.3\n")],
            "'fraction' is not a number",
        ),
        (
            lambda t: ["--table", _bad_csv(t, "model,fraction,best_map5095\nm,-1,0.3\n")],
            "must be in (0, 100]",
        ),
        (lambda t: ["--table", _bad_csv(t, "model,fraction,best_map5095\nm,5,1.3\n")], "outside [0, 1]"),
        (
            lambda t: ["--table", _bad_csv(t, "model,fraction,best_map5095\nm,5,0.3\nm,5,0.4\n")],
            "duplicate rows for m at 5 % without seeds",
        ),
        (lambda t: ["--runs", str(t)], "no train_summary.json found"),
        (lambda t: ["--table", str(t / "missing.csv")], "missing.csv: no such file"),
        (lambda t: ["--table", str(FIXTURE), "--target", "1.2"], "--target must be an mAP50-95 in (0, 1)"),
        (
            lambda t: ["--table", str(FIXTURE), "--epochs-policy", "steps"],
            "--epochs-policy must be one of fixed, iterations",
        ),
        (lambda t: ["--table", str(FIXTURE), "--strategy", "topn"], "no runs with subset strategy 'topn'"),
        (lambda t: ["--table", str(FIXTURE), "--subsets", str(t)], "not a subsets output dir"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, make_args, reason):
    work = tmp_path / "in"
    work.mkdir()
    out = tmp_path / "out" / "report"
    proc = _detpipe(*make_args(work), "--out", str(out))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("detpipe report: error: ")
    assert reason in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_failure_keeps_a_previous_report(tmp_path):
    out = tmp_path / "report"
    assert _detpipe("--table", str(FIXTURE), "--out", str(out)).returncode == 0
    before = (out / "report.json").read_bytes()
    proc = _detpipe("--table", _bad_csv(tmp_path, "model,fraction,best_map5095\nm,5,2\n"), "--out", str(out))
    assert proc.returncode == 2
    assert (out / "report.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "report"]


def test_the_shipped_example_table_stays_valid(tmp_path):
    example = Path(__file__).parents[2] / "docs" / "report-example.csv"
    proc = _detpipe("--table", str(example), "--out", str(tmp_path / "r"), "--fit-min-fraction", "5")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert list(report["models"]) == ["yolo12n", "yolo12s", "yolo12m", "yolo12l", "yolo12x"]
    assert report["fractions"] == ["0.3125", "0.625", "1.25", "2.5", "5", "10", "25", "50", "100"]


def test_a_target_beyond_the_full_set_is_printed_as_an_extrapolation(tmp_path):
    """Issue 21: 'mAP 0.4 at 37,798 %' read like a plan; it is the fit followed far past the data."""
    rows = ["model,fraction,best_map5095"]
    rows += [f"yolo12n,{f:g},{0.55 - 0.3 * f**-0.5!r}" for f in (1.25, 2.5, 5, 10, 25, 50, 100)]
    table = tmp_path / "t.csv"
    table.write_text("\n".join(rows) + "\n")
    far = _detpipe("--table", str(table), "--out", str(tmp_path / "far"), "--target", "0.545",
                   "--full-images", "1000")  # fmt: skip
    assert far.returncode == 0, far.stderr
    beyond = "3,600 % (36,000 images; extrapolated beyond the full set: not reachable with this data)"
    assert far.stdout.splitlines()[0].endswith(f"; mAP 0.545 at ~{beyond}")  # N = (0.3 / 0.005)^2
    assert f"| ~{beyond} |" in (tmp_path / "far" / "report.md").read_text()
    near = _detpipe("--table", str(table), "--out", str(tmp_path / "near"), "--target", "0.4")
    assert near.returncode == 0, near.stderr
    assert near.stdout.splitlines()[0].endswith("; mAP 0.4 at 4 %")  # inside the fitted range: as is
