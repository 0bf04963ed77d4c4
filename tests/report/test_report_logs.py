"""The report links each run's training-log analysis filed beside its train_summary.json."""

from __future__ import annotations

import json
from pathlib import Path

from detpipe.logs.stage import LogsConfig, write_analysis
from detpipe.report.stage import ReportConfig, write_report

RESULTS = """epoch,time,train/box_loss,metrics/mAP50(B),metrics/mAP50-95(B)
1,10,2.0,0.2,0.1
2,20,1.5,0.4,0.2
"""


def _cell(root: Path, name: str, fraction: float, best: float, with_logs: bool) -> None:
    """A sweep cell as the pipeline files it: train_summary.json (+ logs/ from the logs step)."""
    cell = root / name
    cell.mkdir(parents=True)
    summary = {"model": "yolo12n", "fraction": fraction, "best_map5095": best, "seed": 0}
    (cell / "train_summary.json").write_text(json.dumps(summary))
    if with_logs:  # and the record step's cell.json (contract 2 of issue 12)
        plan = {"strategy": "p", "subset_seed": 0, "epochs_policy": "fixed", "epochs": 2, "capped": False}
        (cell / "cell.json").write_text(json.dumps(plan))
        run = root.parent / "train" / name
        run.mkdir(parents=True)
        (run / "results.csv").write_text(RESULTS)
        (run / "args.yaml").write_text("epochs: 2\npatience: 100\n")
        write_analysis(LogsConfig(runs=(run,), out=cell / "logs", params=False))


def test_report_links_the_analyses(tmp_path):
    runs = tmp_path / "runs"
    _cell(runs, "yolo12n_100_p_s0", 100, 0.4, with_logs=True)
    _cell(runs, "yolo12n_50_p_s0", 50, 0.35, with_logs=False)
    report = write_report(ReportConfig(runs=runs, out=tmp_path / "report"))
    assert report["logs"] == [
        {
            "model": "yolo12n",
            "fraction": "100",
            "seed": 0,
            "strategy": "p",
            "subset_seed": 0,
            "epochs_policy": "fixed",
            "analysis": "yolo12n_100_p_s0/logs/analysis.md",
            "status": "completed",
            "reason": "all 2 epochs",
            "stable_epoch": None,
        }
    ]
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Training logs" in md and "[yolo12n_100_p_s0/logs/analysis.md]" in md


def test_a_table_report_has_no_log_links(tmp_path):
    report = write_report(ReportConfig(table=Path(__file__).with_name("scaling.csv"), out=tmp_path / "r"))
    assert report["logs"] == []
