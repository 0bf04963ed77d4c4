"""The sweep's report step downloads each cell's cell.json and the subsets' overlap.json too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import detpipe.store
from detpipe.components.report import report_op
from detpipe.store import LocalStore


def _runs(root: Path) -> None:
    """A runs prefix as the sweep files it: cells (+ cell.json), subsets/, and files not needed."""
    for seed, draw, score in [(0, 0, 0.30), (1, 0, 0.32), (0, 1, 0.26), (1, 1, 0.28)]:
        cell = root / (f"yolo12n_5_random_s{seed}" + (f"_d{draw}" if draw else ""))
        cell.mkdir(parents=True)
        summary = {"model": "yolo12n", "fraction": 5, "best_map5095": score, "seed": seed}
        (cell / "train_summary.json").write_text(json.dumps(summary))
        plan = {"strategy": "random", "subset_seed": draw, "epochs_policy": "fixed", "epochs": 4}
        (cell / "cell.json").write_text(json.dumps(plan))
        (cell / "metrics.json").write_text("{}")
    full = root / "yolo12n_100_random_s0"
    full.mkdir()
    (full / "train_summary.json").write_text(
        json.dumps({"model": "yolo12n", "fraction": 100, "best_map5095": 0.5})
    )
    (root / "subsets").mkdir()
    (root / "subsets" / "summary.json").write_text(json.dumps({"seed": 0}))
    overlap = {
        "seeds": [0, 1],
        "summary": {
            "random": {
                "5": {
                    "mean_overlap_pct": 5.2,
                    "max_overlap_pct": 5.2,
                    "max_class_overlap_pct": 40.0,
                    "max_class": "cat",
                    "expected_random_pct": 5.0,
                }
            }
        },
    }
    (root / "subsets" / "overlap.json").write_text(json.dumps(overlap))


@pytest.mark.parametrize("remote", [True, False])
def test_report_step_reads_cells_and_overlap(tmp_path, monkeypatch, remote):
    from kfp.dsl import HTML, Artifact, Markdown

    source = tmp_path / "bucket" / "runs"
    _runs(source)
    fetched: list[str] = []

    class Recording(LocalStore):
        def get_file(self, key, dest):
            fetched.append(key)
            return super().get_file(key, dest)

    monkeypatch.setattr(detpipe.store, "open_store", lambda uri: Recording(source))
    out = Artifact(name="report", uri=str(tmp_path / "report"), metadata={})
    page = HTML(name="page", uri=str(tmp_path / "page.html"), metadata={})
    summary = Markdown(name="summary", uri=str(tmp_path / "summary.md"), metadata={})
    runs = "s3://bucket/runs" if remote else f"file://{source}"
    report_op.python_func(runs=runs, report=out, page=page, summary=summary)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    if remote:
        assert "yolo12n_5_random_s0/cell.json" in fetched and "subsets/overlap.json" in fetched
        assert not [k for k in fetched if k.endswith("metrics.json")]
    else:
        assert fetched == []  # a local prefix is read in place
    assert report["source"]["strategy"] == "random"  # from cell.json: the cell names carry no subset name
    assert report["variance"]["yolo12n"]["5"]["draws"] == [0, 1]
    assert report["overlap"]["random"]["5"]["max_class"] == "cat"
    assert report["source"]["overlap"]["seeds"] == [0, 1]
    # what the run shows: the page (as written beside report.md) and the tables without the plots
    assert (tmp_path / "page.html").read_bytes() == (tmp_path / "report" / "report.html").read_bytes()
    md = (tmp_path / "summary.md").read_text()
    assert md.startswith("# Data-scaling report") and "## Best mAP50-95" in md and "](" not in md
