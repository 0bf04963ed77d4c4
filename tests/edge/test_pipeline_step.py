"""The pipeline's edge-publish step: behind ``edge_device_class`` after publish, keys from a Secret
mounted as files on the cluster (never in the YAML), and the component run for real by kfp.local."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from edge_support import Models
from kfp import compiler, local

from detpipe.components.edge import edge_publish_op
from detpipe.edge.agent import Agent, AgentConfig
from detpipe.errors import SignatureError
from detpipe.pipelines.compile import load_compiled
from detpipe.pipelines.settings import PipelineSettings
from detpipe.pipelines.train_to_edge import build_train_to_edge
from detpipe.signing import ReleaseSigner
from detpipe.signing import keygen as release_key_gen
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
    task = spec["root"]["dag"]["tasks"]["edge-publish-op"]
    assert task["dependentTasks"] == ["publish-op"] and task["taskInfo"]["name"] == "edge publish"
    inputs = task["inputs"]["parameters"]
    assert inputs["release"] == {
        "taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "publish-op"}
    }
    assert inputs["device_class"] == {"componentInputParameter": "edge_device_class"}
    assert inputs["keys_dir"] == {"runtimeValue": {"constant": "/var/run/secrets/detpipe/edge-keys"}}
    executor = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-edge-publish-op"]
    assert executor["secretAsVolume"][0]["secretName"] == "detpipe-edge-keys"
    assert executor["secretAsVolume"][0]["mountPath"] == "/var/run/secrets/detpipe/edge-keys"
    # the release is checked with the publish step's signing Secret (release.pub) before it is re-signed
    assert [v["secretName"] for v in executor["secretAsVolume"]] == ["detpipe-edge-keys"]  # no signing key
    assert "detpipe-release-pub" in [v["configMapName"] for v in executor["configMapAsVolume"]]
    release_key = PipelineSettings().release_key_mount
    assert inputs["release_key_dir"] == {"runtimeValue": {"constant": release_key}}
    assert "-----BEGIN" not in text  # no key material, only the Secret's name


def test_the_component_publishes_a_release_devices_install(
    tmp_path: Path, keys: Path, models: Models
) -> None:
    store = LocalStore(tmp_path / "store")
    release_keys = tmp_path / "release-keys"
    signer = ReleaseSigner(release_key_gen(release_keys)[0])
    publish(store, "pico", "0.3.0", {"model.onnx": models.good}, signer=signer)
    publish(store, "pico", "0.4.0", {"model.onnx": models.good})  # unsigned
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    from kfp.dsl import Artifact

    published = Artifact(name="published", uri=str(tmp_path / "published"), metadata={})
    with pytest.raises(SignatureError, match=r"not signed \(no manifest\.sig\)"):
        edge_publish_op.python_func(
            release=release_uri(store, "pico", "0.4.0"), store=str(store.root), device_class="cpu",
            keys_dir=str(keys), published=published, release_key_dir=str(release_keys),
        )  # fmt: skip
    assert not (store.root / "ota").exists()  # nothing signed for the fleet
    task = edge_publish_op(
        release=release_uri(store, "pico", "0.3.0"), store=str(store.root), device_class="cpu",
        keys_dir=str(keys), rollout_pct=100, release_key_dir=str(release_keys),
    )  # fmt: skip
    assert task.outputs["Output"] == "cpu/0.3.0/model.onnx"
    meta = task.outputs["published"].metadata
    assert (meta["format"], meta["version"], meta["rollout_pct"]) == ("onnx", "0.3.0", 100)
    d = tmp_path / "device"
    r = Agent(AgentConfig(str(store.root), "cpu", "cam-1", keys / "root.json", d)).run_once()
    assert (r["outcome"], r["version"]) == ("installed", "0.3.0")
    assert json.loads((d / "current" / "manifest.json").read_text())["sha256"] == meta["sha256"]


def test_an_empty_device_class_publishes_nothing(tmp_path: Path, keys: Path) -> None:
    from kfp.dsl import Artifact

    store = LocalStore(tmp_path / "store")
    published = Artifact(name="published", uri=str(tmp_path / "published"), metadata={})
    release = "file:///nonexistent/models/x/1"  # never read when the step is off
    out = edge_publish_op.python_func(
        release=release, store=str(store.root), device_class="", keys_dir=str(keys), published=published
    )
    assert out == "" and published.metadata == {"skipped": "edge_device_class is empty"}
    assert not store.list("ota/")
