"""Local-runner overhead: train_to_edge through kfp.local vs the same steps called directly.

The pipeline side is ``detpipe pipeline run`` (every step a subprocess of Kubeflow's local
runner, artifacts handed over on disk). The peer calls each component's own Python function
(``component.python_func``, the code kfp executes) in-process, in DAG order, on the same
arguments. The ratio is what the local runner costs: process starts, imports, executor
input/output handling.

    .venv/bin/python benchmarks/pipeline.py             # quick profile (what `make run` runs)
    .venv/bin/python benchmarks/pipeline.py --set epochs=2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from kfp import dsl

from detpipe.components.bench import bench_op
from detpipe.components.data import data_op
from detpipe.components.evaluate import evaluate_op
from detpipe.components.export import export_op, gate_op
from detpipe.components.publish import publish_op
from detpipe.components.subsets import subsets_op
from detpipe.components.train import train_op
from detpipe.io import write_json
from detpipe.overrides import parse_set
from detpipe.pipelines.local_run import run_local
from detpipe.pipelines.profiles import arguments


def _artifact(kind: type, root: Path, name: str) -> Any:
    return kind(name=name, uri=str(root / name), metadata={})


def run_direct(args: dict[str, Any], root: Path) -> dict[str, float]:
    """Call every step's function in-process; returns wall seconds per step."""
    a = {
        k: _artifact(k_type, root, k)
        for k, k_type in [
            ("dataset", dsl.Dataset),
            ("subsets", dsl.Dataset),
            ("model", dsl.Model),
            ("evaluation", dsl.Artifact),
            ("exported", dsl.Model),
            ("bench", dsl.Artifact),
        ]
    }
    metrics = lambda name: _artifact(dsl.Metrics, root, f"metrics-{name}")  # noqa: E731
    steps = [
        (
            "data",
            data_op,
            dict(
                dataset=a["dataset"],
                metrics=metrics("data"),
                synth_images=args["synth_images"],
                synth_imgsz=args["synth_imgsz"],
            ),
        ),
        ("subsets", subsets_op, dict(dataset=a["dataset"], subsets=a["subsets"], metrics=metrics("subsets"))),
        (
            "train",
            train_op,
            dict(
                dataset=a["dataset"],
                subsets=a["subsets"],
                model=a["model"],
                metrics=metrics("train"),
                arch=args["arch"],
                fraction=args["fraction"],
                epochs=args["epochs"],
                imgsz=args["imgsz"],
                batch=args["batch"],
                device=args["device"],
                workers=args["workers"],
                train_overrides=args["train_overrides"],
            ),
        ),
        (
            "evaluate",
            evaluate_op,
            dict(
                model=a["model"],
                dataset=a["dataset"],
                evaluation=a["evaluation"],
                metrics=metrics("evaluate"),
                imgsz=args["imgsz"],
                device=args["device"],
            ),
        ),
        (
            "export",
            export_op,
            dict(
                model=a["model"],
                dataset=a["dataset"],
                subsets=a["subsets"],
                exported=a["exported"],
                metrics=metrics("export"),
                formats=args["formats"],
                imgsz=args["imgsz"],
                calib_images=args["calib_images"],
            ),
        ),
        ("gate", gate_op, dict(exported=a["exported"], metrics=metrics("gate"), max_drop=args["max_drop"])),
        (
            "bench",
            bench_op,
            dict(
                exported=a["exported"], bench=a["bench"], metrics=metrics("bench"), iters=args["bench_iters"]
            ),
        ),
        (
            "publish",
            publish_op,
            dict(
                model=a["model"],
                evaluation=a["evaluation"],
                exported=a["exported"],
                bench=a["bench"],
                subsets=a["subsets"],
                store=str(root / "store"),
                name=args["release_name"],
                version=args["release_version"],
            ),
        ),
    ]
    walls = {}
    for name, op, kwargs in steps:
        start = time.perf_counter()
        op.python_func(**kwargs)
        walls[name] = time.perf_counter() - start
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    opts = parser.parse_args()
    args = arguments("train_to_edge", quick=True, overrides=parse_set(opts.overrides))
    with tempfile.TemporaryDirectory(prefix="detpipe-bench-pipeline-") as tmp:
        root = Path(tmp)
        summary = run_local("train_to_edge", root / "pipeline", args)
        direct = run_direct({**args, **summary["arguments"]}, root / "direct")
    pipeline_wall = summary["wall_time_s"]
    direct_wall = sum(direct.values())
    result = {
        "pipeline_status": summary["status"],
        "pipeline_wall_s": round(pipeline_wall, 2),
        "direct_wall_s": round(direct_wall, 2),
        "ratio": round(pipeline_wall / direct_wall, 3),
        "direct_steps_s": {k: round(v, 2) for k, v in direct.items()},
        "pipeline_steps_s": {t["task"]: t.get("wall_time_s") for t in summary["tasks"]},
        "pipeline_steps_own_s": {t["task"]: t.get("step_time_s") for t in summary["tasks"]},
    }
    print(json.dumps(result, indent=2))
    print(
        f"local runner overhead: pipeline {pipeline_wall:.1f} s / direct {direct_wall:.1f} s = "
        f"{pipeline_wall / direct_wall:.2f}x (target < 1.5x)"
    )
    if opts.json:
        write_json(opts.json, result)


if __name__ == "__main__":
    main()
