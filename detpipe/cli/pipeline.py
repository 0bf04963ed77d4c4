"""``detpipe pipeline run | compile | submit``: the Kubeflow pipelines, locally or on a cluster."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from detpipe.errors import DetpipeError, GateFailed, InvalidInput
from detpipe.overrides import parse_set
from detpipe.pipelines import PIPELINES as PIPELINE_NAMES  # light: the pipelines build on use


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pipeline", choices=PIPELINE_NAMES, default="train_to_edge", help="default: train_to_edge"
    )
    p.add_argument(
        "--quick", action="store_true", help="the quick profile: tiny synthetic data, a few epochs"
    )
    p.add_argument("--coco", default="", help="COCO root (images/, annotations/); default: synthetic data")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a pipeline parameter (YAML value), e.g. --set epochs=50 --set formats=[onnx]; repeatable",
    )


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("pipeline", help="run, compile or submit the Kubeflow pipelines")
    psub = parser.add_subparsers(dest="pipeline_command", metavar="ACTION", required=True)

    p = psub.add_parser(
        "run",
        help="run a pipeline here with Kubeflow's local runner",
        description="Run a pipeline on this machine with kfp.local (SubprocessRunner, this Python "
        "environment): every step is a subprocess, artifacts live under WORKDIR/pipeline_root and "
        "releases in the local store WORKDIR/store. Prints a per-step summary (status, wall time, "
        "metrics, artifact URIs) and writes it to WORKDIR/run_summary.json; small_data_sweep then "
        "prints its report's headline (cliff, data for the target mAP) and report.md's path. "
        "small_data_sweep's axes: cells (model x fraction x seed), strategies (e.g. [p, random]), "
        "subset_seeds (independent subset draws, e.g. [0, 1, 2]), epochs_policy (fixed | iterations: "
        "the same optimizer steps at every fraction, at most max_epochs_scale x the epochs).",
    )
    _add_common(p)
    p.add_argument("--workdir", default="runs/local", help="where everything goes (default: runs/local)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_run)

    p = psub.add_parser(
        "compile",
        help="compile pipelines to Kubeflow IR YAML",
        description="Compile for the cluster (GPU tasks, MinIO Secret as env, node selectors, "
        "tolerations, /dev/shm) and check the result: the right name, tasks present, no credential.",
    )
    p.add_argument(
        "--pipeline",
        choices=(*PIPELINE_NAMES, "all"),
        default="all",
        help="one pipeline (OUT is a file) or all (OUT is a directory; default)",
    )
    p.add_argument("--out", required=True, help="output YAML file, or directory with --pipeline all")
    _add_cluster(p)
    p.set_defaults(func=_compile)

    p = psub.add_parser(
        "submit",
        help="submit a pipeline run to a Kubeflow Pipelines cluster",
        description="Compile for the cluster and create a run with kfp.Client. The API token, when "
        "needed, comes from KF_PIPELINES_TOKEN. --dry-run prints what would be sent.",
    )
    _add_common(p)
    p.add_argument("--host", required=True, help="KFP API URL, e.g. https://kubeflow.example.com/pipeline")
    p.add_argument("--experiment", default="detpipe", help="experiment name (default: detpipe)")
    p.add_argument("--run-name", default=None, help="run name (default: chosen by KFP)")
    p.add_argument("--namespace", default=None, help="Kubeflow profile namespace (multi-user)")
    p.add_argument("--service-account", default="detpipe-pipeline", help="default: detpipe-pipeline")
    p.add_argument("--dry-run", action="store_true", help="print what would be submitted, send nothing")
    _add_cluster(p)
    p.set_defaults(func=_submit)


def _add_cluster(p: argparse.ArgumentParser) -> None:
    from detpipe.images import TRAIN_IMAGE

    p.add_argument("--image", default=TRAIN_IMAGE, help=f"image for every step (default: {TRAIN_IMAGE})")
    p.add_argument(
        "--gpus", type=int, default=1, help="GPUs per train/evaluate/export/bench step (default: 1)"
    )
    p.add_argument(
        "--launch-only-train",
        action="store_true",
        help="the train step only launches and watches a multi-node PyTorchJob/TrainJob (nnodes > 1): "
        "no GPU for its own pod",
    )
    p.add_argument(
        "--cache-training", action="store_true", help="let KFP reuse a training step with identical inputs"
    )


def _arguments(args: argparse.Namespace) -> dict[str, Any]:
    from detpipe.pipelines.profiles import arguments

    overrides = parse_set(args.overrides)
    if args.coco:
        if not (Path(args.coco) / "annotations").is_dir():
            raise InvalidInput(f"--coco {args.coco}: expected a COCO root with annotations/ and images/")
        overrides["coco_root"] = str(Path(args.coco).resolve())
    return arguments(args.pipeline, args.quick, overrides)


def _settings(args: argparse.Namespace) -> Any:
    from detpipe.pipelines.settings import PipelineSettings

    if args.gpus < 0:
        raise InvalidInput(f"--gpus must be >= 0, got {args.gpus}")
    return PipelineSettings(
        target="cluster",
        image=args.image,
        gpus=args.gpus,
        launch_only_train=args.launch_only_train,
        cache_training=args.cache_training,
    )


def _run(args: argparse.Namespace) -> int:
    from detpipe.pipelines.local_run import format_summary, run_local

    summary = run_local(args.pipeline, Path(args.workdir), _arguments(args))
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    if not args.json:
        for line in report_headline(summary):
            print(line)
    if summary["status"] != "SUCCESS":
        failed = summary["tasks"][-1]["task"] if summary["tasks"] else "(no step ran)"
        raise run_failure(args.pipeline, failed, Path(args.workdir) / "run_summary.json")
    return 0


REPORT_TASKS = {"report-op": "detpipe.report.render", "al-report-op": "detpipe.activelearning.render"}
"""The report step of each pipeline that has one, and the module whose ``headline`` reads its report.json."""


def report_headline(summary: dict[str, Any]) -> list[str]:
    """A sweep's or an active-learning run's answer under its run table: the headline, report.md."""
    from importlib import import_module

    from detpipe.io import read_json

    task = next((t for t in summary["tasks"] if t["task"] in REPORT_TASKS and t["status"] == "SUCCESS"), None)
    if task is None:
        return []
    headline = import_module(REPORT_TASKS[task["task"]]).headline
    report_dir = Path(task["artifacts"]["report"])
    return ["", *headline(read_json(report_dir / "report.json")), str(report_dir / "report.md")]


GATE_TASKS = ("gate-op",)
"""Steps that are quality gates: a run they stop exits 4 (GateFailed), as ``detpipe export`` does."""


def run_failure(pipeline: str, failed: str, summary: Path) -> DetpipeError:
    """The error a failed local run ends with: GateFailed (exit 4) when a gate stopped it, else exit 1."""
    where = f"(its log is above); summary in {summary}"
    if failed.rsplit("/", 1)[-1] in GATE_TASKS:
        return GateFailed(
            f"pipeline {pipeline} stopped by the accuracy gate at {failed}: nothing published {where}"
        )
    return DetpipeError(f"pipeline {pipeline} failed at {failed} {where}")


def _compile(args: argparse.Namespace) -> int:
    from detpipe.pipelines.compile import compile_pipeline, compile_pipelines

    settings = _settings(args)
    if args.pipeline == "all":
        paths = compile_pipelines(PIPELINE_NAMES, Path(args.out), settings)
    else:
        paths = [compile_pipeline(args.pipeline, settings, Path(args.out))]
    for path in paths:
        print(path)
    return 0


def _submit(args: argparse.Namespace) -> int:
    from detpipe.pipelines.submit import SubmitConfig, plan, submit

    cfg = SubmitConfig(
        host=args.host,
        pipeline=args.pipeline,
        arguments=_arguments(args),
        experiment=args.experiment,
        run_name=args.run_name,
        namespace=args.namespace,
        service_account=args.service_account,
        settings=_settings(args),
    )
    if args.dry_run:
        print(json.dumps(plan(cfg), indent=2))
        return 0
    print(submit(cfg))
    return 0
