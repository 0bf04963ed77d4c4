"""What a pipeline run may release: named after its data, gated by the mAP floor, engines
skipped only on CPU-only runs and then shown loudly in the run summary."""

from __future__ import annotations

import inspect

from detpipe.cli.pipeline import run_failure
from detpipe.components.export import export_op, gate_op
from detpipe.errors import DetpipeError, GateFailed
from detpipe.export.gate import DEFAULT_MIN_MAP
from detpipe.pipelines.local_run import format_summary, skipped_formats
from detpipe.pipelines.profiles import arguments
from detpipe.pipelines.settings import PipelineSettings
from detpipe.pipelines.train_to_edge import build_train_to_edge
from detpipe.publish import release_name


def _defaults(func) -> dict:
    return {k: p.default for k, p in inspect.signature(func).parameters.items()}


def test_release_names_follow_the_data():
    assert release_name("yolov8n.yaml") == "yolov8n-synth"
    assert release_name("yolo12s.yaml", "/data/coco/") == "yolo12s-coco"
    assert release_name("yolov8n.yaml", "/data/coco-val128", 5.0) == "yolov8n-coco-val128-5p"
    assert release_name("runs/t/weights/best.pt", "/mnt/coco", 0.3125, "random") == "best-coco-0.3125random"
    # the quick profile no longer pins "-synth": `--coco PATH` gets a name after PATH
    assert "release_name" not in arguments("train_to_edge", quick=True)
    assert _defaults(build_train_to_edge(PipelineSettings()).pipeline_func)["release_name"] == ""


def test_floor_and_gpu_step_parameters():
    params = _defaults(build_train_to_edge(PipelineSettings()).pipeline_func)
    assert params["min_map"] == DEFAULT_MIN_MAP and params["allow_missing"] is False
    assert _defaults(gate_op.python_func)["min_map"] == DEFAULT_MIN_MAP  # the component repeats the literal
    assert _defaults(export_op.python_func)["device"] == "auto"


REASON = "CPU-only run (device cpu): engines need a CUDA GPU"


def test_skipped_engines_are_loud_in_the_summary():
    meta = {"exported": {"onnx": "ok", "engine-fp16": "skipped", "engine-fp16_skipped": REASON}}
    tasks = [{"task": "export-op", "status": "SUCCESS", "metrics": {}, "artifacts": {}, "metadata": meta}]
    skipped = skipped_formats(tasks)
    assert skipped == [{"task": "export-op", "format": "engine-fp16", "reason": REASON}]
    summary = {"pipeline": "train_to_edge", "status": "SUCCESS", "wall_time_s": 1.0, "tasks": tasks}
    text = format_summary({**summary, "skipped": skipped})
    assert (
        text.splitlines()[-1] == f"!! SKIPPED engine-fp16 in export-op (CPU-only run, not released): {REASON}"
    )


def test_a_run_the_gate_stops_exits_4(tmp_path):
    gate = run_failure("train_to_edge", "gate-op", tmp_path / "run_summary.json")
    assert isinstance(gate, GateFailed) and gate.exit_code == 4
    assert str(gate).startswith(
        "pipeline train_to_edge stopped by the accuracy gate at gate-op: nothing published"
    )
    other = run_failure("train_to_edge", "train-op", tmp_path / "run_summary.json")
    assert type(other) is DetpipeError and other.exit_code == 1
