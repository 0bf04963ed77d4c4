"""Run a pipeline on this machine with Kubeflow's own local runner and summarize the run.

``kfp.local`` (SubprocessRunner, this Python environment) executes every task as a
subprocess and keeps its artifacts under ``<workdir>/pipeline_root``; releases go to the
local store ``<workdir>/store``. The summary lists, per task: status, wall time, logged
metrics and artifact URIs, and is written to ``<workdir>/run_summary.json``::

    summary = run_local("train_to_edge", Path("runs/local"), arguments=arguments(..., quick=True))
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from detpipe.errors import DetpipeError
from detpipe.io import read_json, write_json

log = logging.getLogger(__name__)


def _init_local(pipeline_root: Path) -> None:
    from kfp import local

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        raise_on_error=True,
    )


def _run(
    pipeline_func: Any, arguments: dict[str, Any], pipeline_root: Path
) -> tuple[Path, float, str | None]:
    """Run one pipeline; returns (its run directory, wall seconds, the failed task or None)."""
    before = set(pipeline_root.iterdir()) if pipeline_root.exists() else set()
    start = time.perf_counter()
    failed = None
    try:
        pipeline_func(**arguments)
    except RuntimeError as e:  # kfp.local: "... Inner task failed: 'gate-op'."
        match = re.search(r"Inner task failed: \W*'([^']+)'", re.sub(r"\x1b\[[0-9;]*m", "", str(e)))
        if match is None:
            raise
        failed = match.group(1)
    wall = time.perf_counter() - start
    new = sorted(set(pipeline_root.iterdir()) - before, key=lambda p: p.stat().st_mtime)
    if not new:
        raise DetpipeError(f"the local runner wrote no run under {pipeline_root}")
    return new[-1], wall, failed


def collect_tasks(run_dir: Path, failed: str | None = None) -> list[dict[str, Any]]:
    """One entry per task of a local run: status, wall time, metrics, artifacts, parameters.

    Finished tasks are read from their ``executor_output.json``; ``failed`` (the task the
    runner reported) is added as a FAILURE. Tasks after a failure never ran and are absent.
    """
    tasks = []
    for output in sorted(run_dir.rglob("executor_output.json"), key=lambda p: p.stat().st_mtime):
        data = read_json(output)
        entry: dict[str, Any] = {"task": str(output.parent.relative_to(run_dir)), "status": "SUCCESS"}
        entry["parameters"] = data.get("parameterValues", {})
        entry["metrics"], entry["artifacts"] = {}, {}
        for name, group in data.get("artifacts", {}).items():
            for artifact in group.get("artifacts", []):
                if name == "metrics":
                    entry["metrics"].update(artifact.get("metadata", {}))
                else:
                    entry["artifacts"][name] = artifact["uri"]
        entry["wall_time_s"] = entry["metrics"].pop("wall_time_s", None)
        tasks.append(entry)
    if failed is not None:
        tasks.append({"task": failed, "status": "FAILURE"})
    return tasks


def run_local(
    pipeline: str, workdir: Path, arguments: dict[str, Any], summary_path: Path | None = None
) -> dict[str, Any]:
    """Run ``pipeline`` locally under ``workdir``; returns (and writes) the run summary.

    A failed step does not raise: the summary's ``status`` is ``FAILURE`` and the failed
    task is listed last (the steps after it never ran).
    """
    from detpipe.pipelines import build
    from detpipe.pipelines.settings import PipelineSettings

    workdir = Path(workdir).resolve()
    pipeline_root = workdir / "pipeline_root"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    settings = PipelineSettings(target="local", sweep_parallelism=1)
    arguments = _with_local_store(pipeline, arguments, workdir)
    _init_local(pipeline_root)
    run_dir, wall, failed = _run(build(pipeline, settings), arguments, pipeline_root)
    tasks = collect_tasks(run_dir, failed)
    if pipeline == "small_data_sweep" and all(t["status"] == "SUCCESS" for t in tasks):
        from detpipe.pipelines.small_data_sweep import build_sweep_report

        report_dir, report_wall, failed = _run(
            build_sweep_report(settings), {"runs": arguments["runs"]}, pipeline_root
        )
        tasks += collect_tasks(report_dir, failed)
        wall += report_wall
    summary = {
        "pipeline": pipeline,
        "status": "SUCCESS" if tasks and all(t["status"] == "SUCCESS" for t in tasks) else "FAILURE",
        "wall_time_s": round(wall, 3),
        "run_dir": str(run_dir),
        "arguments": arguments,
        "tasks": tasks,
    }
    write_json(summary_path or workdir / "run_summary.json", summary)
    return summary


def _with_local_store(pipeline: str, arguments: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Point store arguments at the local store under ``workdir`` unless given."""
    args = dict(arguments)
    if pipeline == "train_to_edge":
        args.setdefault("store", str(workdir / "store"))
    else:
        args.setdefault("runs", str(workdir / "store" / "sweeps" / "local"))
    return args


def format_summary(summary: dict[str, Any]) -> str:
    """The run summary as a table: task, status, wall time, key metrics, artifacts."""
    lines = [f"pipeline {summary['pipeline']}: {summary['status']} in {summary['wall_time_s']:.1f} s", ""]
    lines.append(f"{'task':<34} {'status':<8} {'wall s':>8}  metrics")
    for t in summary["tasks"]:
        wall = f"{t['wall_time_s']:.1f}" if t.get("wall_time_s") is not None else "-"
        metrics = ", ".join(f"{k}={_fmt(v)}" for k, v in list(t.get("metrics", {}).items())[:4])
        lines.append(f"{t['task']:<34} {t['status']:<8} {wall:>8}  {metrics}")
        for name, uri in t.get("artifacts", {}).items():
            lines.append(f"{'':<34} {'':<8} {'':>8}  {name}: {uri}")
        for name, value in t.get("parameters", {}).items():
            lines.append(f"{'':<34} {'':<8} {'':>8}  {name} = {value}")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
