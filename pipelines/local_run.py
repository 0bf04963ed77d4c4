"""Run a pipeline on this machine with Kubeflow's own local runner and summarize the run.

``kfp.local`` (SubprocessRunner, this Python environment) executes every task as a
subprocess and keeps its artifacts under ``<workdir>/pipeline_root``; releases go to the
local store ``<workdir>/store``. The summary lists, per task: status, wall time as the runner
saw it (process start, imports and artifact handling included), the step's own time
(``step_time_s``, logged by the component), logged metrics and artifact URIs, and is written
to ``<workdir>/run_summary.json``::

    summary = run_local("train_to_edge", Path("runs/local"), arguments=arguments(..., quick=True))
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detpipe.errors import DetpipeError
from detpipe.io import read_json, write_json

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TASK_EVENT = re.compile(
    r"^(?:Executing task '(?P<start>[^']+)'|Task '(?P<end>[^']+)' finished with status (?P<status>\w+))"
)


class _TaskClock(logging.Filter):
    """Start and finish times of kfp.local's tasks, taken from its log records.

    kfp.local tells when a task starts and ends only in its log, and swaps the root logger's
    handlers around every task, so this listens as a filter on the root logger (filters stay).
    Loop iterations run in threads and share task names: a start is paired with the next
    finish of the same name in the same thread.
    """

    def __init__(self) -> None:
        super().__init__()
        self._open: dict[tuple[int | None, str], float] = {}
        self.intervals: list[tuple[str, float, float]] = []  # (task name, start, finish)
        self.failed: list[str] = []  # tasks that finished with FAILURE, in order

    def filter(self, record: logging.LogRecord) -> bool:
        match = _TASK_EVENT.match(_ANSI.sub("", str(record.msg)))
        if match and match["start"]:
            self._open[(record.thread, match["start"])] = record.created
        elif match:
            start = self._open.pop((record.thread, match["end"]), None)
            if match["status"] == "FAILURE":
                self.failed.append(match["end"])
            if start is not None:
                self.intervals.append((match["end"], start, record.created))
        return True

    def take(self, name: str, finished: float | None = None) -> float | None:
        """Seconds of the unclaimed run of task ``name`` that ended nearest ``finished`` (any if None)."""
        runs = [i for i in self.intervals if i[0] == name]
        if not runs:
            return None
        best = min(runs, key=lambda i: abs(i[2] - finished)) if finished is not None else runs[-1]
        self.intervals.remove(best)
        return round(best[2] - best[1], 3)


REPORT_ARGUMENTS = ("runs", "target", "fit_min_fraction")
"""The sweep's arguments its report step takes (locally a second pipeline run)."""


def _init_local(pipeline_root: Path) -> None:
    from kfp import local

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        raise_on_error=True,
    )


@dataclass(frozen=True)
class LocalRun:
    """One finished (or failed) local pipeline run: where kfp.local wrote it and when."""

    run_dir: Path
    started: float  # epoch seconds
    finished: float
    failed: str | None  # the task kfp.local reported as failed
    clock: _TaskClock

    @property
    def wall(self) -> float:
        return self.finished - self.started


def _run(pipeline_func: Any, arguments: dict[str, Any], pipeline_root: Path) -> LocalRun:
    """Run one pipeline with the local runner; a failed task is reported, not raised."""
    before = set(pipeline_root.iterdir()) if pipeline_root.exists() else set()
    started = time.time()
    failed = None
    clock = _TaskClock()
    logging.getLogger().addFilter(clock)
    try:
        pipeline_func(**arguments)
    except RuntimeError as e:  # kfp.local: "... Inner task failed: 'gate-op'."
        match = re.search(r"Inner task failed: \W*'([^']+)'", _ANSI.sub("", str(e)))
        if match is None and not clock.failed:
            raise
        # with a dsl.If in the pipeline kfp.local names no task ("Inner task failed: ."): its log did
        failed = match.group(1) if match else clock.failed[-1]
    finally:
        logging.getLogger().removeFilter(clock)
    finished = time.time()
    new = sorted(set(pipeline_root.iterdir()) - before, key=lambda p: p.stat().st_mtime)
    if not new:
        raise DetpipeError(f"the local runner wrote no run under {pipeline_root}")
    return LocalRun(new[-1], started, finished, failed, clock)


def collect_tasks(run: LocalRun) -> list[dict[str, Any]]:
    """One entry per task of a local run: status, wall time, metrics, artifacts, parameters.

    Finished tasks are read from their ``executor_output.json`` (written as a task ends);
    the failed task the runner reported is added as a FAILURE. Tasks after a failure never
    ran and are absent.
    """
    tasks = []
    for output in sorted(run.run_dir.rglob("executor_output.json"), key=lambda p: p.stat().st_mtime):
        data = read_json(output)
        entry: dict[str, Any] = {"task": str(output.parent.relative_to(run.run_dir)), "status": "SUCCESS"}
        entry["parameters"] = data.get("parameterValues", {})
        entry["metrics"], entry["artifacts"] = {}, {}
        for name, group in data.get("artifacts", {}).items():
            for artifact in group.get("artifacts", []):
                if name == "metrics":
                    entry["metrics"].update(artifact.get("metadata", {}))
                else:
                    entry["artifacts"][name] = artifact["uri"]
                    entry.setdefault("metadata", {})[name] = artifact.get("metadata", {})
        entry["wall_time_s"] = run.clock.take(output.parent.name, output.stat().st_mtime)
        entry["step_time_s"] = entry["metrics"].pop("wall_time_s", None)
        tasks.append(entry)
    if run.failed is not None:
        wall = run.clock.take(run.failed.rsplit("/", 1)[-1])
        tasks.append({"task": run.failed, "status": "FAILURE", "wall_time_s": wall})
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

    if pipeline == "train_to_edge":
        check_edge_rollout(arguments)
    workdir = Path(workdir).resolve()
    pipeline_root = workdir / "pipeline_root"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    settings = PipelineSettings(target="local", sweep_parallelism=1)
    arguments = _with_local_store(pipeline, arguments, workdir)
    _init_local(pipeline_root)
    run = _run(build(pipeline, settings), arguments, pipeline_root)
    tasks, wall = collect_tasks(run), run.wall
    if pipeline == "small_data_sweep" and all(t["status"] == "SUCCESS" for t in tasks):
        from detpipe.pipelines.small_data_sweep import build_sweep_report

        report_args = {k: arguments[k] for k in REPORT_ARGUMENTS if k in arguments}
        report = _run(build_sweep_report(settings), report_args, pipeline_root)
        tasks += collect_tasks(report)
        wall += report.wall
    if pipeline == "active_learning" and all(t["status"] == "SUCCESS" for t in tasks):
        from detpipe.pipelines.active_learning import REPORT_ARGUMENTS as AL_REPORT_ARGUMENTS
        from detpipe.pipelines.active_learning import build_al_report

        report_args = {k: arguments[k] for k in AL_REPORT_ARGUMENTS if k in arguments}
        report = _run(build_al_report(settings), report_args, pipeline_root)
        tasks += collect_tasks(report)
        wall += report.wall
    summary = {
        "pipeline": pipeline,
        "status": "SUCCESS" if tasks and all(t["status"] == "SUCCESS" for t in tasks) else "FAILURE",
        "wall_time_s": round(wall, 3),
        "run_dir": str(run.run_dir),
        "arguments": arguments,
        "tasks": tasks,
        "skipped": skipped_formats(tasks),
    }
    write_json(summary_path or workdir / "run_summary.json", summary)
    return summary


def development_signing_key(workdir: Path) -> Path:
    """``WORKDIR/release-keys``: a development key pair local runs sign their releases with.

    Made once (``detpipe release keygen``) and kept, so that a server started with
    ``--release-key WORKDIR/release-keys/release.pub`` trusts every later local release.
    """
    from detpipe.signing import keygen
    from detpipe.signing.keys import PRIVATE_KEY

    keys = workdir / "release-keys"
    if not (keys / PRIVATE_KEY).is_file():
        keygen(keys, overwrite=True)
        log.info("made a development release signing key in %s (not for production)", keys)
    return keys


EDGE_ROLLOUT_GATES = {
    "edge_rollout_max_failure_pct": "max_failure_pct",
    "edge_rollout_min_reports": "min_reports",
    "edge_rollout_bake_s": "bake_s",
}


def check_edge_rollout(arguments: dict[str, Any]) -> None:
    """Refuse bad ``edge_rollout_*`` arguments before the run trains anything (the edge step, the
    last, parses them again with the same function). Nothing to check when the edge step is off.

    Raises:
        InvalidInput: bad steps or gates.
    """
    if not arguments.get("edge_device_class") or not arguments.get("edge_rollout_steps"):
        return
    from detpipe.edge.release_step import rollout_spec

    gates = {gate: arguments[name] for name, gate in EDGE_ROLLOUT_GATES.items() if name in arguments}
    rollout_spec(arguments["edge_rollout_steps"], **gates)


def _with_local_store(pipeline: str, arguments: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Point store arguments at the local store under ``workdir`` unless given."""
    args = dict(arguments)
    if pipeline == "train_to_edge":
        args.setdefault("store", str(workdir / "store"))
        if "signing_key" not in args:
            args["signing_key"] = str(development_signing_key(workdir))
    elif pipeline == "active_learning":
        args.setdefault("runs", str(workdir / "store" / "al" / "local"))
    else:
        args.setdefault("runs", str(workdir / "store" / "sweeps" / "local"))
    return args


def skipped_formats(tasks: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Requested formats a step skipped (engines on a CPU-only run), from its ``<fmt>_skipped`` metadata."""
    return [
        {"task": t["task"], "format": key.removesuffix("_skipped"), "reason": str(reason)}
        for t in tasks
        for meta in t.get("metadata", {}).values()
        for key, reason in meta.items()
        if key.endswith("_skipped")
    ]


def format_summary(summary: dict[str, Any]) -> str:
    """The run summary as a table: task, status, wall time, key metrics, artifacts."""
    lines = [f"pipeline {summary['pipeline']}: {summary['status']} in {summary['wall_time_s']:.1f} s", ""]
    lines.append(f"{'task':<34} {'status':<8} {'wall s':>7} {'step s':>7}  metrics")
    pad = " " * (34 + 1 + 8 + 1 + 7 + 1 + 7)
    for t in summary["tasks"]:
        wall, step = (f"{t[k]:.1f}" if t.get(k) is not None else "-" for k in ("wall_time_s", "step_time_s"))
        metrics = ", ".join(f"{k}={_fmt(v)}" for k, v in list(t.get("metrics", {}).items())[:4])
        lines.append(f"{t['task']:<34} {t['status']:<8} {wall:>7} {step:>7}  {metrics}")
        for name, uri in t.get("artifacts", {}).items():
            lines.append(f"{pad}  {name}: {uri}")
        for name, value in t.get("parameters", {}).items():
            lines.append(f"{pad}  {name} = {_shorten(value)}")
    for s in summary.get("skipped", []):
        lines += ["", f"!! SKIPPED {s['format']} in {s['task']} (CPU-only run, not released): {s['reason']}"]
    return "\n".join(lines)


def _shorten(value: Any, width: int = 160) -> str:
    """A parameter for the table: long ones (the sweep plan's cells) cut, the count said."""
    text = str(value)
    if len(text) <= width:
        return text
    count = f" ({len(value)} items)" if isinstance(value, list | dict) else ""
    return f"{text[: width - 4]} ...{count}"


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
