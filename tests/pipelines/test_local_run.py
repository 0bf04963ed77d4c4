"""A whole train_to_edge run on Kubeflow's own local runner, leaving a release in the local store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from detpipe.report.html import external_references
from detpipe.signing import ReleaseVerifier
from detpipe.store import fetch_release, latest_version

TINY = {
    "synth_images": 24,
    "synth_imgsz": 128,
    "epochs": 1,
    "imgsz": 64,
    "batch": 8,
    "formats": "[onnx]",
    "bench_iters": 5,
    "release_name": "tiny",
    "min_map": 0.0,  # one epoch at 64 px learns nothing; the floor would (rightly) stop the run
}


def _pipeline_run(workdir: Path, params: dict, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    """``detpipe pipeline run --quick`` as a process; returns it and the run summary it wrote."""
    sets = [a for k, v in params.items() for a in ("--set", f"{k}={v}")]
    cmd = [sys.executable, "-m", "detpipe.cli.main", "pipeline", "run", "--quick", "--workdir", str(workdir)]
    res = subprocess.run([*cmd, *extra, *sets], capture_output=True, text=True, timeout=900)
    summary_file = workdir / "run_summary.json"
    return res, json.loads(summary_file.read_text()) if summary_file.is_file() else {}


@pytest.mark.slow
def test_train_to_edge_runs_locally_and_publishes(tmp_path):
    workdir = tmp_path / "run"
    res, summary = _pipeline_run(workdir, TINY)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert summary["status"] == "SUCCESS"
    tasks = {t["task"]: t for t in summary["tasks"]}
    assert set(tasks) == {
        "data-op",
        "subsets-op",
        "train-op",
        "evaluate-op",
        "export-op",
        "gate-op",
        "bench-op",
        "publish-op",
        "logs-op",
        "deploy-op",  # deploy=False: a no-op locally (kfp.local cannot run a dsl.If on a parameter)
        "edge-publish-op",  # edge_device_class="": a no-op
    }
    assert all(t["status"] == "SUCCESS" for t in tasks.values())
    # tasks run one after another: their runner-side times add up to at most the pipeline's
    assert all(t["wall_time_s"] > 0 for t in tasks.values())
    assert sum(t["wall_time_s"] for t in tasks.values()) <= summary["wall_time_s"] + 0.01
    assert 0 < tasks["train-op"]["step_time_s"] <= tasks["train-op"]["wall_time_s"]
    assert "map50_95" in tasks["evaluate-op"]["metrics"]
    assert "pipeline train_to_edge: SUCCESS" in res.stdout

    store = workdir / "store"
    release = tasks["publish-op"]["parameters"]["Output"]
    assert release == f"{store.resolve()}/models/tiny/0.1.0" or release.endswith("models/tiny/0.1.0")
    assert latest_version(str(store), "tiny") == "0.1.0"
    # signed with the run's development key (pipelines.local_run.development_signing_key)
    verifier = ReleaseVerifier(workdir / "release-keys" / "release.pub")
    manifest = fetch_release(release, tmp_path / "fetched", verifier=verifier)
    paths = {e.path for e in manifest.objects}
    assert {"weights.pt", "model.onnx", "metrics.json", "MODEL_CARD.md"} <= paths
    assert any(p.startswith("bench/") for p in paths)
    assert manifest.lineage["dataset_subset"] == "train2017_100_p.txt"
    card = (tmp_path / "fetched" / "MODEL_CARD.md").read_text()
    assert card.startswith("# Model card: tiny 0.1.0\n") and "| `x86_64-cpu` (" in card

    # what the run shows: KFP v2's visualization types
    matrix = tasks["evaluate-op"]["metadata"]["confusion_matrix"]["confusionMatrix"]
    labels = [spec["displayName"] for spec in matrix["annotationSpecs"]]
    assert labels[-1] == "background" and len(matrix["rows"]) == len(labels)
    summary_md = Path(tasks["evaluate-op"]["artifacts"]["summary"]).read_text()
    assert summary_md.startswith("# Evaluation\n") and "## Per class" in summary_md
    page = Path(tasks["logs-op"]["artifacts"]["page"]).read_text()
    assert external_references(page) == [] and page.count('src="data:image/png;base64,') >= 2


def test_a_failing_step_stops_the_run_and_is_reported(tmp_path):
    workdir = tmp_path / "run"
    no_such_subset = {"synth_images": 12, "synth_imgsz": 96, "fraction": 7}  # there is no 7 % list
    res, summary = _pipeline_run(workdir, no_such_subset)
    assert res.returncode == 1
    assert (
        res.stderr.strip()
        .splitlines()[-1]
        .startswith("detpipe pipeline: error: pipeline train_to_edge failed at train-op")
    )
    assert summary["status"] == "FAILURE"
    assert [(t["task"], t["status"]) for t in summary["tasks"]] == [
        ("data-op", "SUCCESS"),
        ("subsets-op", "SUCCESS"),
        ("train-op", "FAILURE"),
    ]
    assert all(t["wall_time_s"] > 0 for t in summary["tasks"])  # the failed step's time too
    assert not (workdir / "store" / "models").exists()  # nothing published


@pytest.mark.slow
def test_small_data_sweep_runs_locally_and_reports(tmp_path):
    """Two subset draws at 50 %, iteration-matched: 2 cells, each trained twice the epochs of 100 %."""
    workdir = tmp_path / "sweep"
    cells = "[{arch: yolov8n.yaml, fraction: 50.0, seed: 0}]"
    tiny = {"synth_images": 24, "synth_imgsz": 128, "epochs": 1, "imgsz": 64, "batch": 8, "cells": cells}
    tiny |= {"strategies": "[random]", "subset_seeds": "[0, 1]", "epochs_policy": "iterations"}
    res, summary = _pipeline_run(workdir, tiny, "--pipeline", "small_data_sweep")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert summary["status"] == "SUCCESS"
    names = sorted(t["task"] for t in summary["tasks"])
    steps = ("evaluate-op", "logs-op", "record-op", "train-op")
    loop = [f"for-loop-1-iteration-{i}/{op}" for i in (0, 1) for op in steps]
    assert names == sorted(["data-op", "subsets-op", "plan-op", "report-op", *loop])
    assert all(t["wall_time_s"] > 0 for t in summary["tasks"])

    runs = workdir / "store" / "sweeps" / "local"
    cell_dirs = sorted(p.name for p in runs.iterdir() if p.name != "subsets")
    assert cell_dirs == ["yolov8n_50_random_s0_d1_iters", "yolov8n_50_random_s0_iters"]
    assert (runs / "subsets" / "overlap.json").is_file()  # the plan step filed the draws' overlap
    cell = json.loads((runs / "yolov8n_50_random_s0_d1_iters" / "cell.json").read_text())
    assert (cell["subset_seed"], cell["epochs"], cell["epochs_policy"]) == (1, 2, "iterations")
    trained = json.loads((runs / "yolov8n_50_random_s0_d1_iters" / "train_summary.json").read_text())
    assert (trained["subset_seed"], trained["last_epoch"]) == (1, 2)  # the draw and the schedule ran
    report_dir = Path(next(t for t in summary["tasks"] if t["task"] == "report-op")["artifacts"]["report"])
    report = json.loads((report_dir / "report.json").read_text())
    # the answer under the run table (kfp.local may leave its indenting stdout wrapper behind)
    assert res.stdout.splitlines()[-1].strip() == str(report_dir / "report.md")
    assert res.stdout.splitlines()[-2].strip().startswith("yolov8n: ")
    model = report["models"]["yolov8n"]
    assert set(model["best_map5095"]) == {"50"}  # two epochs: scores near 0
    assert model["best_map5095"]["50"]["n"] == 2  # both draws
    assert report["variance"]["yolov8n"]["50"]["draws"] == [0, 1]
    assert {r["epochs_policy"] for r in report["schedules"]} == {"iterations"}
    assert {"map_vs_size.png", "retention_vs_size.png", "cliff.png"} <= {p.name for p in report_dir.iterdir()}
    report_task = next(t for t in summary["tasks"] if t["task"] == "report-op")
    page = Path(report_task["artifacts"]["page"]).read_text()
    assert external_references(page) == [] and page.count('src="data:image/png;base64,') >= 3
    assert Path(report_task["artifacts"]["summary"]).read_text().startswith("# Data-scaling report\n")
    # every cell's training-log analysis is filed beside its summary and linked by the report
    assert all((runs / name / "logs" / "analysis.json").is_file() for name in cell_dirs)
    linked = sorted((e["fraction"], e["status"]) for e in report["logs"])
    assert linked == [("50", "completed"), ("50", "completed")]
