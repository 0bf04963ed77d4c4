"""Run a pipeline on this machine with Kubeflow's own local runner and summarize the run.

``kfp.local`` (SubprocessRunner, this Python environment) executes every task as a
subprocess and keeps its artifacts under ``<workdir>/pipeline_root``; releases go to the
local store ``<workdir>/store``. The summary lists, per task: status, wall time, logged
metrics and artifact URIs, and is written to ``<workdir>/run_summary.json``::

    summary = run_local("train_to_edge", Path("runs/local"), arguments=arguments(..., quick=True))
"""

from __future__ import annotations

import logging
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
        raise_on_error=False,
    )


def _run(pipeline_func: Any, arguments: dict[str, Any], pipeline_root: Path) -> tuple[Path, float]:
    """Run one pipeline; returns (its run directory, wall seconds)."""
    before = set(pipeline_root.iterdir()) if pipeline_root.exists() else set()
    start = time.perf_counter()
    pipeline_func(**arguments)
    wall = time.perf_counter() - start
    new = sorted(set(pipeline_root.iterdir()) - before, key=lambda p: p.stat().st_mtime)
    if not new:
        raise DetpipeError(f"the local runner wrote no run under {pipeline_root}")
    return new[-1], wall


def collect_tasks(run_dir: Path) -> list[dict[str, Any]]:
    """One entry per executed task of a local run: status, metrics, artifacts, parameters.

    A task directory without ``executor_output.json`` is a task that failed (or never ran).
    """
    tasks = []
    for task_dir in sorted(p for p in run_dir.rglob("*") if p.is_dir() and _is_task_dir(p)):
        output = task_dir / "executor_output.json"
        entry: dict[str, Any] = {"task": str(task_dir.relative_to(run_dir)), "status": "FAILURE"}
        if output.is_file():
            data = read_json(output)
            entry["status"] = "SUCCESS"
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
    return tasks


def _is_task_dir(path: Path) -> bool:
    """Task dirs hold executor_output.json, or only output-artifact dirs when the task failed."""
    if (path / "executor_output.json").is_file():
        return True
    if path.name.startswith("for-loop-") or any(p.name.startswith("for-loop-") for p in path.parents):
        return False
    children = list(path.iterdir())
    return bool(children) and all(c.is_dir() and not any(c.iterdir()) for c in children)


def run_local(
    pipeline: str, workdir: Path, arguments: dict[str, Any], summary_path: Path | None = None
) -> dict[str, Any]:
    """Run ``pipeline`` locally under ``workdir``; returns (and writes) the run summary.

    Raises:
        DetpipeError: a task failed; the summary (with the failing task) is written first.
    """
    from detpipe.pipelines import build
    from detpipe.pipelines.settings import PipelineSettings

    workdir = Path(workdir).resolve()
    pipeline_root = workdir / "pipeline_root"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    settings = PipelineSettings(target="local", sweep_parallelism=1)
    arguments = _with_local_store(pipeline, arguments, workdir)
    _init_local(pipeline_root)
    run_dir, wall = _run(build(pipeline, settings), arguments, pipeline_root)
    tasks = collect_tasks(run_dir)
    if pipeline == "small_data_sweep" and all(t["status"] == "SUCCESS" for t in tasks):
        from detpipe.pipelines.small_data_sweep import build_sweep_report

        report_dir, report_wall = _run(
            build_sweep_report(settings), {"runs": arguments["runs"]}, pipeline_root
        )
        tasks += collect_tasks(report_dir)
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
    if summary["status"] != "SUCCESS":
        failed = [t["task"] for t in tasks if t["status"] != "SUCCESS"] or ["(no task ran)"]
        raise DetpipeError(f"pipeline {pipeline} failed at: {', '.join(failed)} (logs above)")
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
