"""Filing a trained sweep cell: names, files and the planned cell as the report reads it."""

from __future__ import annotations

import json

from detpipe.report.collect import load_runs
from detpipe.sweep import cell_name, record_cell

SUMMARY = {"model": "yolov8n", "fraction": 5, "strategy": "random", "seed": 1, "best_map5095": 0.2}


def _cell(**kw):
    cell = {"arch": "yolov8n.yaml", "fraction": 5.0, "seed": 1.0, "strategy": "random", "subset_seed": 0.0}
    return {**cell, "epochs_policy": "fixed", "epochs": 6.0, **kw}


def test_cell_names_say_draw_and_policy_only_when_not_the_default():
    assert cell_name(SUMMARY, _cell()) == "yolov8n_5_random_s1"
    assert cell_name(SUMMARY, _cell(subset_seed=2.0)) == "yolov8n_5_random_s1_d2"
    assert cell_name(SUMMARY, _cell(epochs_policy="iterations")) == "yolov8n_5_random_s1_iters"
    assert cell_name({**SUMMARY, "fraction": None, "strategy": None}, {}) == "yolov8n_full_all_s1"


def test_record_cell_files_summary_metrics_and_cell(tmp_path):
    model, evaluation, runs = tmp_path / "model", tmp_path / "evaluation", tmp_path / "runs"
    model.mkdir()
    evaluation.mkdir()
    (model / "train_summary.json").write_text(json.dumps(SUMMARY))
    (evaluation / "metrics.json").write_text(json.dumps({"map50_95": 0.2}))
    uri = record_cell(model, evaluation, str(runs), _cell(subset_seed=2.0))
    assert uri.endswith("/yolov8n_5_random_s1_d2")
    cell_dir = runs / "yolov8n_5_random_s1_d2"
    assert sorted(p.name for p in cell_dir.iterdir()) == ["cell.json", "metrics.json", "train_summary.json"]
    cell = json.loads((cell_dir / "cell.json").read_text())
    # Kubeflow hands loop items' numbers over as floats: integers are ints again on file
    assert (cell["seed"], cell["subset_seed"], cell["epochs"]) == (1, 2, 6)
    assert isinstance(cell["epochs"], int)
    assert [r.model for r in load_runs(runs)] == ["yolov8n"]
    assert not list(model.parent.glob(".cell*"))  # nothing written beside the artifacts
