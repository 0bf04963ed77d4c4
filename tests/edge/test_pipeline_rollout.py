"""The pipeline's edge step with ``rollout_steps``: it publishes the release at the first step and
runs the rollout controller's first cycle (run by kfp.local for real); the CronJob's command,
``detpipe edge rollout --once``, carries the rollout on; a retried step keeps the rollout as it
stands, and a version whose rollout aborted is never published again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from edge_support import Models
from kfp import compiler, local
from kfp.dsl import Artifact

from detpipe.components.edge import edge_publish_op
from detpipe.edge.agent import Agent, AgentConfig
from detpipe.edge.controller import read_state, state_key
from detpipe.edge.keys import load_signer
from detpipe.edge.publish import version_targets
from detpipe.edge.reports import ensure_device_key, load_public_key, register, trusted_root
from detpipe.edge.rollout import bucket
from detpipe.errors import InvalidInput, NotFound
from detpipe.pipelines.compile import load_compiled
from detpipe.pipelines.settings import PipelineSettings
from detpipe.pipelines.train_to_edge import build_train_to_edge
from detpipe.signing import ReleaseSigner
from detpipe.signing import keygen as release_key_gen
from detpipe.store import LocalStore, publish, release_uri


@pytest.fixture
def releases(tmp_path: Path, models: Models) -> tuple[LocalStore, Path]:
    """A local store with the signed releases pico 0.3.0 (good) and 0.4.0 (fails its health check)."""
    store = LocalStore(tmp_path / "store")
    release_keys = tmp_path / "release-keys"
    signer = ReleaseSigner(release_key_gen(release_keys)[0])
    publish(store, "pico", "0.3.0", {"model.onnx": models.good}, signer=signer)
    publish(store, "pico", "0.4.0", {"model.onnx": models.nan}, signer=signer)
    return store, release_keys


def _step(tmp_path: Path, store: LocalStore, release_keys: Path, keys: Path, version: str, **kw) -> Artifact:
    """The edge step's function in this process (kfp.local runs it in a subprocess: the first test)."""
    published = Artifact(name="published", uri=str(tmp_path / f"published-{version}"), metadata={})
    edge_publish_op.python_func(
        release=release_uri(store, "pico", version), store=str(store.root), device_class="cpu",
        keys_dir=str(keys), published=published, release_key_dir=str(release_keys), **kw,
    )  # fmt: skip
    return published


def _cronjob_cycle(store: LocalStore, keys: Path, version: str) -> subprocess.CompletedProcess:
    """One cycle as the CronJob runs it (k8s/edge/controller/rollout-cronjob.yaml), as a process."""
    cmd = [sys.executable, "-m", "detpipe.cli.main", "edge", "rollout", "--once", f"--store={store.root}",
           "--device-class=cpu", f"--version={version}", f"--keys={keys}", "--bake=0"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "DETPIPE_ROLLOUT_KILL_AT"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


ROLLOUT_PARAMS = {
    "edge_rollout_steps": ("rollout_steps", ""),
    "edge_rollout_max_failure_pct": ("rollout_max_failure_pct", 5.0),
    "edge_rollout_min_reports": ("rollout_min_reports", 1),
    "edge_rollout_bake_s": ("rollout_bake_s", 1800),
    "edge_rollout_pct": ("rollout_pct", 100),
}


@pytest.mark.parametrize("target", ["local", "cluster"])
def test_the_rollout_parameters_reach_the_edge_step(tmp_path: Path, target: str) -> None:
    out = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_train_to_edge(PipelineSettings(target=target)), str(out))
    spec, _ = load_compiled(out.read_text())
    params = spec["root"]["inputDefinitions"]["parameters"]
    inputs = spec["root"]["dag"]["tasks"]["edge-publish-op"]["inputs"]["parameters"]
    for name, (arg, default) in ROLLOUT_PARAMS.items():
        assert params[name]["defaultValue"] == default, name  # off by default: a plain publish at 100 %
        assert inputs[arg] == {"componentInputParameter": name}


def test_the_edge_step_starts_a_rollout_the_cronjob_carries_on(
    tmp_path: Path, keys: Path, releases: tuple[LocalStore, Path]
) -> None:
    store, release_keys = releases
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    task = edge_publish_op(
        release=release_uri(store, "pico", "0.3.0"), store=str(store.root), device_class="cpu",
        keys_dir=str(keys), release_key_dir=str(release_keys), rollout_pct=100, rollout_steps="5,100",
    )  # fmt: skip
    assert task.outputs["Output"] == "cpu/0.3.0/model.onnx"
    meta = task.outputs["published"].metadata
    assert meta["rollout_pct"] == 5  # the first step wins over rollout_pct
    assert (meta["rollout"]["action"], meta["rollout"]["status"], meta["rollout"]["pct"]) == (
        "start", "progressing", 5
    )  # fmt: skip

    assert (
        store.exists(state_key("cpu", "0.3.0")) and state_key("cpu", "0.3.0") == "ota/rollouts/cpu/0.3.0.json"
    )
    doc = read_state(store, "cpu", "0.3.0")
    assert (doc["status"], doc["pct"], doc["step"], doc["steps"], doc["previous"]) == (
        "progressing", 5, 0, [5, 100], None
    )  # fmt: skip
    assert (doc["max_failure_pct"], doc["min_reports"], doc["bake_s"]) == (5.0, 1, 1800)  # the step's gates
    assert [d["action"] for d in doc["decisions"]] == ["start"]
    assert {r.rollout_pct for r in version_targets(store, keys, "cpu", "0.3.0").values()} == {5}

    done = _cronjob_cycle(store, keys, "0.3.0")  # the CronJob's next cycle: no reports yet
    assert done.returncode == 0, done.stderr
    assert "hold at 5% (progressing)" in done.stdout, done.stdout
    doc = read_state(store, "cpu", "0.3.0")
    assert doc["last_check"]["action"] == "hold" and [d["action"] for d in doc["decisions"]] == ["start"]
    assert doc["bake_s"] == 1800  # the recorded gates, not the command's --bake 0


def test_a_retried_step_keeps_the_rollout_as_it_stands(
    tmp_path: Path, keys: Path, releases: tuple[LocalStore, Path]
) -> None:
    """A retried (or re-run) step finds the rollout started: the version stays at the share its
    controller signed, and the step's cycle is the rollout's next one, never a second start."""
    store, release_keys = releases
    steps = {"rollout_steps": "5,25,100", "rollout_bake_s": 0}
    first = _step(tmp_path, store, release_keys, keys, "0.3.0", **steps)
    assert (first.metadata["rollout"]["action"], first.metadata["rollout_pct"]) == ("start", 5)
    # one enrolled device that the 5 % and 25 % steps do not select: nothing to wait for (bake 0)
    device = next(f"cam-{i}" for i in range(100) if bucket(f"cam-{i}", "0.3.0") >= 25)
    signer = ensure_device_key(tmp_path / device)
    register(store, "cpu", device, signer.public_key, [load_signer(keys, "targets")], trusted_root(store))
    done = _cronjob_cycle(store, keys, "0.3.0")
    assert done.returncode == 0 and "advance" in done.stdout, (done.stdout, done.stderr)
    assert read_state(store, "cpu", "0.3.0")["pct"] == 25
    again = _step(tmp_path, store, release_keys, keys, "0.3.0", **steps)
    assert again.metadata["rollout_pct"] == 25  # published at the rollout's share, not the first step's
    assert (again.metadata["rollout"]["action"], again.metadata["rollout"]["pct"]) == ("advance", 100)
    doc = read_state(store, "cpu", "0.3.0")
    assert [(d["action"], d["pct"]) for d in doc["decisions"]] == [
        ("start", 5), ("advance", 25), ("advance", 100)
    ]  # fmt: skip


@pytest.mark.parametrize("steps", ["5,50", "25,5,100", "0,100", "5,x,100", "5,,100", "200"])
def test_bad_steps_fail_the_step_before_anything_is_signed(
    tmp_path: Path, keys: Path, releases: tuple[LocalStore, Path], steps: str
) -> None:
    store, release_keys = releases
    with pytest.raises(InvalidInput, match="steps"):
        _step(tmp_path, store, release_keys, keys, "0.3.0", rollout_steps=steps)
    assert not store.list("ota/")


def test_an_aborted_version_is_not_published_again(
    tmp_path: Path, keys: Path, releases: tuple[LocalStore, Path]
) -> None:
    store, release_keys = releases
    _step(tmp_path, store, release_keys, keys, "0.3.0")  # a plain publish at 100 %
    agents = [
        Agent(AgentConfig(str(store.root), "cpu", f"cam-{i}", keys / "root.json", tmp_path / f"cam-{i}"))
        for i in range(3)
    ]
    assert {a.run_once()["outcome"] for a in agents} == {"installed"}
    trusted, signers = trusted_root(store, anchor=None), [load_signer(keys, "targets")]
    for a in agents:
        register(store, "cpu", a.cfg.device_id, load_public_key(a.cfg.dir / "device.pub"), signers, trusted)

    started = _step(tmp_path, store, release_keys, keys, "0.4.0", rollout_steps="100", rollout_bake_s=0)
    assert started.metadata["rollout"] == {**started.metadata["rollout"], "action": "start", "pct": 100}
    assert read_state(store, "cpu", "0.4.0")["previous"] == "0.3.0"
    assert {a.run_once()["outcome"] for a in agents} == {"rolled-back"}  # 0.4.0 fails its health check
    done = _cronjob_cycle(store, keys, "0.4.0")
    assert done.returncode == 4 and "(aborted)" in done.stdout, (done.stdout, done.stderr)

    with pytest.raises(InvalidInput, match=r"rollout of cpu 0\.4\.0 was aborted at 100%"):
        _step(tmp_path, store, release_keys, keys, "0.4.0", rollout_steps="100")
    with pytest.raises(InvalidInput, match="was aborted"):  # nor as a plain publish
        _step(tmp_path, store, release_keys, keys, "0.4.0")
    with pytest.raises(NotFound):
        version_targets(store, keys, "cpu", "0.4.0")  # still withdrawn by the signed rollback
    for a in agents:
        a.run_once()
    assert {a.slots.manifest(a.slots.active())["version"] for a in agents} == {"0.3.0"}


def test_a_local_run_refuses_bad_steps_before_it_trains(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    cmd = [sys.executable, "-m", "detpipe.cli.main", "pipeline", "run", "--quick", "--workdir", str(workdir),
           "--set", "edge_device_class=cpu", "--set", "edge_rollout_steps=5,50"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "detpipe pipeline: error: steps '5,50': rising percentages from 1, ending at 100 (e.g. 5,25,100)"
    ]
    assert not workdir.exists()  # nothing ran
