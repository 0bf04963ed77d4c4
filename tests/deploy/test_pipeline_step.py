"""The pipeline's deploy step: wired after publish behind ``deploy``, and run for real by kfp.local."""

from __future__ import annotations

from pathlib import Path

import yaml
from kfp import compiler, local

from detpipe.components.deploy import deploy_op
from detpipe.deploy.config import CanaryConfig
from detpipe.deploy.render import render, to_yaml
from detpipe.pipelines.compile import load_compiled
from detpipe.pipelines.settings import PipelineSettings
from detpipe.pipelines.train_to_edge import build_train_to_edge

RELEASE = "s3://detpipe/models/yolov8n-coco/0.2.0"


def _compiled(target: str, tmp_path: Path) -> dict:
    out = tmp_path / f"{target}.yaml"
    compiler.Compiler().compile(build_train_to_edge(PipelineSettings(target=target)), str(out))
    spec, _ = load_compiled(out.read_text())
    return spec


def test_on_a_cluster_deploy_runs_after_publish_only_when_asked(tmp_path: Path) -> None:
    spec = _compiled("cluster", tmp_path)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["deploy"] == {"defaultValue": False, "isOptional": True, "parameterType": "BOOLEAN"}
    assert params["deploy_strategy"]["defaultValue"] == "rollout"
    condition = spec["root"]["dag"]["tasks"]["condition-1"]
    assert condition["dependentTasks"] == ["publish-op"]
    assert (
        condition["triggerPolicy"]["condition"]
        == "inputs.parameter_values['pipelinechannel--deploy'] == true"
    )
    (task,) = spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"].values()
    assert task["taskInfo"]["name"] == "deploy canary"
    inputs = task["inputs"]["parameters"]
    assert inputs["release"] == {"componentInputParameter": "pipelinechannel--publish-op-Output"}
    assert inputs["strategy"] == {"componentInputParameter": "pipelinechannel--deploy_strategy"}
    assert inputs["dry_run"] == {"runtimeValue": {"constant": False}}
    assert task["cachingOptions"] == {}  # applying is never served from cache


def test_locally_the_step_always_runs_and_deploy_switches_it(tmp_path: Path) -> None:
    """kfp.local 2.16 never runs a dsl.If branch on a parameter, so the local build passes ``enabled``."""
    spec = _compiled("local", tmp_path)
    task = spec["root"]["dag"]["tasks"]["deploy-op"]
    assert task["dependentTasks"] == ["publish-op"]
    inputs = task["inputs"]["parameters"]
    assert inputs["enabled"] == {"componentInputParameter": "deploy"}
    assert inputs["dry_run"] == {"runtimeValue": {"constant": True}}


def test_the_step_switched_off_renders_nothing(tmp_path: Path) -> None:
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    artifact = deploy_op(release=RELEASE, enabled=False).outputs["manifests"]
    assert not (Path(artifact.path) / "canary.yaml").exists()
    assert artifact.metadata == {"applied": False, "skipped": "deploy is off"}


def test_the_component_renders_the_canary_as_an_artifact(tmp_path: Path) -> None:
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    task = deploy_op(release=RELEASE, strategy="gateway", steps=[5, 25, 100], pause="manual", dry_run=True)
    artifact = task.outputs["manifests"]
    text = (Path(artifact.path) / "canary.yaml").read_text()
    cfg = CanaryConfig(RELEASE, strategy="gateway", steps=(5, 25, 100), pause="manual")
    assert text == to_yaml(render(cfg))
    assert [d["kind"] for d in yaml.safe_load_all(text)] == ["Service", "Service", "Deployment", "HTTPRoute"]
    assert artifact.metadata["version"] == "0.2.0" and artifact.metadata["applied"] is False
    assert artifact.metadata["objects"][-1] == "HTTPRoute/detpipe-serve"
