"""The pipeline's edge-publish step: behind ``edge_device_class`` after publish, keys from a Secret
mounted as files on the cluster (never in the YAML), and the component run for real by kfp.local."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Models
from kfp import compiler, local

from detpipe.components.edge import edge_publish_op
from detpipe.edge.agent import Agent, AgentConfig
from detpipe.pipelines.compile import load_compiled
from detpipe.pipelines.settings import PipelineSettings
from detpipe.pipelines.train_to_edge import build_train_to_edge
from detpipe.store import LocalStore, publish, release_uri


def _compiled(target: str, tmp_path: Path) -> tuple[dict, dict | None, str]:
    out = tmp_path / f"{target}.yaml"
    compiler.Compiler().compile(build_train_to_edge(PipelineSettings(target=target)), str(out))
    text = out.read_text()
    spec, platform = load_compiled(text)
    return spec, platform, text


def test_edge_publish_runs_after_publish_only_for_a_device_class(tmp_path: Path) -> None:
    spec, platform, text = _compiled("cluster", tmp_path)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["edge_device_class"]["defaultValue"] == ""  # off by default
    (name,) = [n for n, t in spec["root"]["dag"]["tasks"].items() if t["taskInfo"]["name"] == "edge"]
    condition = spec["root"]["dag"]["tasks"][name]
    assert condition["dependentTasks"] == ["publish-op"]
    assert (
        condition["triggerPolicy"]["condition"]
        == "inputs.parameter_values['pipelinechannel--edge_device_class'] != ''"
    )
    (task,) = spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"].values()
    assert task["taskInfo"]["name"] == "edge publish"
    inputs = task["inputs"]["parameters"]
    assert inputs["release"] == {"componentInputParameter": "pipelinechannel--publish-op-Output"}
    assert inputs["keys_dir"] == {"runtimeValue": {"constant": "/var/run/secrets/detpipe/edge-keys"}}
    executor = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-edge-publish-op"]
    assert executor["secretAsVolume"][0]["secretName"] == "detpipe-edge-keys"
    assert executor["secretAsVolume"][0]["mountPath"] == "/var/run/secrets/detpipe/edge-keys"
    assert "-----BEGIN" not in text  # no key material, only the Secret's name


def test_the_component_publishes_a_release_devices_install(
    tmp_path: Path, keys: Path, models: Models
) -> None:
    store = LocalStore(tmp_path / "store")
    publish(store, "pico", "0.3.0", {"model.onnx": models.good})
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    task = edge_publish_op(
        release=release_uri(store, "pico", "0.3.0"), store=str(store.root), device_class="cpu",
        keys_dir=str(keys), rollout_pct=100,
    )  # fmt: skip
    assert task.outputs["Output"] == "cpu/0.3.0/model.onnx"
    meta = task.outputs["published"].metadata
    assert (meta["format"], meta["version"], meta["rollout_pct"]) == ("onnx", "0.3.0", 100)
    d = tmp_path / "device"
    r = Agent(AgentConfig(str(store.root), "cpu", "cam-1", keys / "root.json", d)).run_once()
    assert (r["outcome"], r["version"]) == ("installed", "0.3.0")
    assert json.loads((d / "current" / "manifest.json").read_text())["sha256"] == meta["sha256"]
