"""``detpipe logs analyze`` as a process: outputs, several runs, bad input, a real ultralytics run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from logs_runs import clean, nan_loss, noisy_plateau, railway_like, spiky, stopped_early

from detpipe.cli.main import main
from detpipe.train.models import CONFIGS_DIR

PNG = b"\x89PNG\r\n\x1a\n"


def _detpipe(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "-q", "logs", "analyze", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_several_runs(tmp_path):
    runs = [clean(tmp_path), nan_loss(tmp_path), stopped_early(tmp_path), spiky(tmp_path)]
    out = tmp_path / "logs"
    proc = _detpipe(*map(str, runs), "--out", str(out), "--ranges", "1-4,5-12", "--stable-window", "5")
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.iterdir())
    expected = [
        f"{r}_{kind}.png" for r in ("clean", "early", "nan", "spiky") for kind in ("losses", "metrics")
    ]
    assert names == sorted(["analysis.json", "analysis.md", "compare_map.png", *expected])
    assert all(p.read_bytes()[:8] == PNG for p in out.glob("*.png"))
    analysis = json.loads((out / "analysis.json").read_text())
    assert analysis["schema"] == "detpipe.logs/v1"
    assert analysis["settings"]["ranges"] == [[1, 4], [5, 12]]
    assert {n: r["status"] for n, r in analysis["runs"].items()} == {
        "clean": "completed",
        "nan": "nan",
        "early": "stopped_early",
        "spiky": "completed",
    }
    clean_run = analysis["runs"]["clean"]
    assert clean_run["losses"]["train/box_loss"]["change_pct"] == -50.0
    assert clean_run["ranges"]["map50"][0]["cov_pct"] == 44.7214 and clean_run["stable_epoch"] == 6
    winners = analysis["comparison"]["winners"]
    assert winners == {"accuracy": "early", "accuracy_per_mparam": None, "accuracy_per_hour": "early"}
    md = (out / "analysis.md").read_text()
    assert "Winner by accuracy: **early**" in md and "![clean_metrics.png](clean_metrics.png)" in md
    assert "train/box_loss: spikes at 6" in md
    assert proc.stdout.splitlines()[0].startswith(
        "clean: completed (all 12 epochs); best mAP50-95 0.3300 at epoch 10"
    )


def test_stability_is_explained(tmp_path):
    out = tmp_path / "logs"
    runs = [str(railway_like(tmp_path)), str(noisy_plateau(tmp_path))]
    proc = _detpipe(*runs, "--out", str(out), "--no-params")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].endswith("; stable from 60") and lines[1].endswith("; stable from —")
    analysis = json.loads((out / "analysis.json").read_text())
    assert analysis["settings"]["stable_cov_pct"] == 0.5 and analysis["settings"]["stable_window"] == 10
    s = analysis["runs"]["railway0"]["stability"]
    assert (s["settled_cov_pct"], s["threshold_cov_pct"]) == (0.0819, 0.1638)
    assert s["last_unstable"] == {"from": 59, "to": 68, "cov_pct": 0.1902}
    assert s["rule"].startswith("first epoch from which every 10-epoch window's mAP50 CoV is at most")
    md = (out / "analysis.md").read_text()
    assert "stable from epoch 60 (every window after: 10-epoch mAP50 CoV <= 0.16 %)." in md
    assert "not stable (10-epoch mAP50 CoV <= 0.50 %; the last window, 91–100, is over it)." in md


def test_dropped_ranges_and_milestones_are_warned_and_recorded(tmp_path):
    out = tmp_path / "logs"
    proc = _detpipe(
        str(clean(tmp_path)), "--out", str(out), "--ranges", "1-10,101-200", "--milestones", "10,300"
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "WARNING detpipe.logs.analysis: run clean: dropped --ranges 101-200 and --milestones 300: "
        "not in its log (last epoch 12)"
    ) in proc.stderr
    run = json.loads((out / "analysis.json").read_text())["runs"]["clean"]
    assert run["dropped"] == {"ranges": [[101, 200]], "milestones": [300]}
    md = (out / "analysis.md").read_text()
    assert "Dropped --ranges 101-200 and --milestones 300: not in this run's log (last epoch 12)." in md


def test_one_run_has_no_comparison(tmp_path):
    out = tmp_path / "logs"
    assert main(["-q", "logs", "analyze", str(clean(tmp_path) / "results.csv"), "--out", str(out)]) == 0
    analysis = json.loads((out / "analysis.json").read_text())
    assert analysis["comparison"] is None and list(analysis["runs"]) == ["clean"]
    assert not (out / "compare_map.png").exists()


def test_help_explains():
    proc = _detpipe("--help")
    assert proc.returncode == 0
    for word in ("results.csv", "--ranges", "--milestones", "stable", "stopped_early", "analysis.json"):
        assert word in proc.stdout


@pytest.mark.parametrize(
    ("make_args", "reason"),
    [
        (lambda t: [str(t / "missing")], "missing: not a directory"),
        (lambda t: [str(t)], "results.csv: no such file"),
        (lambda t: [str(clean(t)), "--ranges", "5-1"], "--ranges: '5-1' must have 1 <= FROM <= TO"),
        (lambda t: [str(clean(t)), "--milestones", "x"], "--milestones: 'x' is not a comma list"),
        (lambda t: [str(clean(t)), str(t / "clean")], "a run directory is given twice"),
        (lambda t: [str(clean(t)), "--spike-factor", "0.5"], "--spike-factor must be > 1"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, make_args, reason):
    work = tmp_path / "in"
    work.mkdir()
    out = tmp_path / "out"
    assert main(["-q", "logs", "analyze", *make_args(work), "--out", str(out), "--no-params"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("detpipe logs: error: ")
    assert reason in err
    assert not out.exists()


@pytest.mark.slow
def test_a_real_ultralytics_run(tmp_path, trained_pico: Path):
    """The pico YOLOv8 run the export tests train (tests/conftest.py): ultralytics' own files."""
    from ultralytics.nn.tasks import DetectionModel

    run = trained_pico.parent.parent  # <run>/weights/last.pt
    out = tmp_path / "logs"
    proc = _detpipe(str(run), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    entry = json.loads((out / "analysis.json").read_text())["runs"][run.name]
    assert entry["status"] == "completed" and entry["epochs"]["last"] == entry["epochs"]["planned"] == 40
    assert set(entry["losses"]) == {
        "train/box_loss",
        "train/cls_loss",
        "train/dfl_loss",
        "val/box_loss",
        "val/cls_loss",
        "val/dfl_loss",
    }
    assert entry["losses"]["train/box_loss"]["change_pct"] < 0  # it learned
    assert entry["lr_phases"][0]["phase"] == "warm-up"
    assert entry["time"]["total_s"] > 0
    pico = CONFIGS_DIR / "yolov8-pico.yaml"
    assert entry["params"] == sum(
        p.numel() for p in DetectionModel(str(pico), nc=2, verbose=False).parameters()
    )
