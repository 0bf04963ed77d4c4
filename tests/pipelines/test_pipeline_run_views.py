"""What a Kubeflow run shows, in the compiled IR: KFP v2's visualization types on the steps that
make them (the evaluate step's confusion matrix and summary, the report's and training-log
analysis' HTML pages, the report's markdown)."""

from __future__ import annotations

import pytest
from kfp import compiler

from detpipe.pipelines.compile import load_compiled
from detpipe.pipelines.settings import PipelineSettings
from detpipe.pipelines.small_data_sweep import build_small_data_sweep
from detpipe.pipelines.train_to_edge import build_train_to_edge

EVALUATE = {"confusion_matrix": "system.ClassificationMetrics", "summary": "system.Markdown"}
VIEWS = {
    "train_to_edge": {
        "comp-evaluate-op": EVALUATE,
        "comp-logs-op": {"page": "system.HTML"},
        "comp-publish-op": {"card": "system.Markdown"},
    },
    "small_data_sweep": {
        "comp-evaluate-op": EVALUATE,
        "comp-logs-op": {"page": "system.HTML"},
        "comp-report-op": {"page": "system.HTML", "summary": "system.Markdown"},
    },
}
BUILD = {"train_to_edge": build_train_to_edge, "small_data_sweep": build_small_data_sweep}


@pytest.mark.parametrize("pipeline", sorted(VIEWS))
def test_steps_declare_kfp_visualization_artifacts(pipeline, tmp_path):
    out = tmp_path / f"{pipeline}.yaml"
    compiler.Compiler().compile(BUILD[pipeline](PipelineSettings(target="cluster")), str(out))
    spec, _ = load_compiled(out.read_text())
    for component, outputs in VIEWS[pipeline].items():
        artifacts = spec["components"][component]["outputDefinitions"]["artifacts"]
        got = {name: artifacts[name]["artifactType"]["schemaTitle"] for name in outputs}
        assert got == outputs, component


def test_the_model_card_judges_the_gate_with_the_runs_own_settings(tmp_path):
    out = tmp_path / "train_to_edge.yaml"
    compiler.Compiler().compile(build_train_to_edge(PipelineSettings(target="cluster")), str(out))
    spec, _ = load_compiled(out.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    for name in ("max_drop", "min_map", "allow_missing"):
        wired = {"componentInputParameter": name}
        assert tasks["gate-op"]["inputs"]["parameters"][name] == wired
        assert tasks["publish-op"]["inputs"]["parameters"][name] == wired, name
