"""Compiled pipelines: the DAG, cluster settings and no credentials, read back from the IR YAML."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from detpipe.pipelines import PIPELINES
from detpipe.pipelines.compile import load_compiled
from detpipe.pipelines.settings import PipelineSettings
from detpipe.pipelines.small_data_sweep import VARIANCE_MAX_FRACTION, sweep_grid

ROOT = Path(__file__).resolve().parents[2]

TRAIN_TO_EDGE_ORDER = {
    "subsets-op": {"data-op"},
    "train-op": {"data-op", "subsets-op"},
    "evaluate-op": {"train-op", "data-op"},
    "export-op": {"train-op", "data-op", "subsets-op"},
    "gate-op": {"export-op"},
    "bench-op": {"export-op", "gate-op"},
    "publish-op": {"train-op", "evaluate-op", "export-op", "bench-op", "subsets-op", "gate-op"},
    "condition-1": {"publish-op"},  # dsl.If(deploy): the canary (tests/deploy/test_pipeline_step.py)
    "edge-publish-op": {"publish-op"},  # a no-op without edge_device_class (tests/edge/test_pipeline_step.py)
    "logs-op": {"train-op"},  # detpipe logs analyze on the trained run
}


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled")
    res = _cli(
        "pipeline", "compile", "--out", str(out), "--image", "registry.local/detpipe:test", "--gpus", "2"
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(out / f"{name}.yaml") for name in PIPELINES]  # every one the CLI knows
    return {p.stem: p.read_text() for p in out.glob("*.yaml")}


def test_train_to_edge_dag(compiled):
    spec, _ = load_compiled(compiled["train_to_edge"])
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"data-op", *TRAIN_TO_EDGE_ORDER}
    for task, upstream in TRAIN_TO_EDGE_ORDER.items():
        assert set(tasks[task]["dependentTasks"]) == upstream, task
    # the release URI is the pipeline's output, for the deploy/edge steps to append to
    assert spec["root"]["outputDefinitions"]["parameters"]["Output"]["parameterType"] == "STRING"
    assert tasks["train-op"]["cachingOptions"] == {}  # training is never served from cache
    assert tasks["publish-op"]["retryPolicy"]["maxRetryCount"] == 2
    # fixed batch 1 by default (edge); export_batch > 1 makes releases batchable by the server
    assert spec["root"]["inputDefinitions"]["parameters"]["export_batch"]["defaultValue"] == 1
    assert tasks["export-op"]["inputs"]["parameters"]["max_batch"] == {
        "componentInputParameter": "export_batch"
    }


def test_cluster_settings(compiled):
    spec, platform = load_compiled(compiled["train_to_edge"])
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {"registry.local/detpipe:test"}
    for gpu_task in ("train-op", "evaluate-op", "export-op", "bench-op"):
        resources = executors[f"exec-{gpu_task}"]["container"]["resources"]
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert resources["accelerator"]["resourceCount"] == "2"
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    train = k8s["exec-train-op"]
    assert train["nodeSelector"]["labels"] == PipelineSettings().gpu_node_selector
    assert train["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert train["emptyDirMounts"][0]["mountPath"] == "/dev/shm"
    publish = k8s["exec-publish-op"]
    assert publish["secretAsEnv"][0]["secretName"] == "detpipe-minio"
    assert {e["envVar"] for e in publish["secretAsEnv"][0]["keyToEnv"]} == {
        "MINIO_ACCESS_KEY",
        "MINIO_SECRET_KEY",
    }
    assert publish["configMapAsEnv"][0]["configMapName"] == "detpipe-config"
    # the release signing key: a Secret named by the run's signing_key parameter, mounted as files
    [key_volume] = publish["secretAsVolume"]
    assert key_volume["mountPath"] == PipelineSettings().release_key_mount
    assert key_volume["secretNameParameter"] == {"componentInputParameter": "signing_key"}
    assert (
        spec["root"]["inputDefinitions"]["parameters"]["signing_key"]["defaultValue"] == "detpipe-release-key"
    )
    publish_inputs = spec["root"]["dag"]["tasks"]["publish-op"]["inputs"]["parameters"]
    assert (
        publish_inputs["signing_key_dir"]["runtimeValue"]["constant"] == PipelineSettings().release_key_mount
    )
    # only store steps see credentials (train fetches a multi-node job's outputs from the store)
    assert "secretAsEnv" not in k8s["exec-evaluate-op"] and "secretAsEnv" in train


@pytest.mark.parametrize("pipeline", ["train_to_edge", "small_data_sweep"])
def test_store_steps_trust_the_store_ca(compiled, pipeline):
    """Every step with the store's credentials also mounts the (optional) CA ConfigMap and points
    DETPIPE_S3_CA_BUNDLE at its ca.crt, as the serving pods do; no other step gets them."""
    serve = yaml.safe_load((ROOT / "k8s/serving/serve-deployment.yaml").read_text())["spec"]["template"][
        "spec"
    ]
    (container,) = serve["containers"]
    serve_bundle = next(e["value"] for e in container["env"] if e["name"] == "DETPIPE_S3_CA_BUNDLE")
    spec, platform = load_compiled(compiled[pipeline])
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    executors = spec["deploymentSpec"]["executors"]
    store_steps = {name for name, e in k8s.items() if "secretAsEnv" in e}
    assert store_steps  # the data, train and publish steps at least
    for name, e in executors.items():
        env = {v["name"]: v["value"] for v in e["container"].get("env", [])}
        volumes = [
            v
            for v in k8s.get(name, {}).get("configMapAsVolume", [])
            if v["configMapName"] == "detpipe-store-ca"
        ]
        if name not in store_steps:
            assert not volumes and "DETPIPE_S3_CA_BUNDLE" not in env, name
            continue
        (volume,) = volumes
        assert volume["optional"] is True, name  # a plain-HTTP development store has no CA
        assert env["DETPIPE_S3_CA_BUNDLE"] == f"{volume['mountPath']}/ca.crt" == serve_bundle, name


def test_no_credentials_in_compiled_yaml(tmp_path):
    """Real (random) secret values in every place detpipe and kfp read credentials from, then
    compile: none of the values may appear in the YAML (only env *references* to the Secret)."""
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    values = {name: f"{name.lower()}-{secrets.token_hex(12)}" for name in SECRET_ENV}
    for name in ("accesskey", "secretkey"):
        (secret_dir / name).write_text(values.setdefault(f"file:{name}", secrets.token_hex(16)))
    env = {**os.environ, **{k: v for k, v in values.items() if not k.startswith("file:")}}
    env["DETPIPE_S3_SECRET_DIR"] = str(secret_dir)
    out = tmp_path / "compiled"
    cmd = [sys.executable, "-m", "detpipe.cli.main", "pipeline", "compile", "--out", str(out), "--image", "i"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    texts = {p.name: p.read_text() for p in out.glob("*.yaml")}
    assert set(texts) == {f"{name}.yaml" for name in PIPELINES}
    leaked = {(f, name) for f, text in texts.items() for name, value in values.items() if value in text}
    assert leaked == set()
    assert all(v not in res.stdout + res.stderr for v in values.values())
    for text in texts.values():
        assert "minioadmin" not in text and "AWS_SECRET_ACCESS_KEY" not in text


# Every credential variable detpipe (store/config.py), boto3 and kfp (submit) read.
SECRET_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "MINIO_ACCESS_KEY",
    "MINIO_SECRET_KEY",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "DETPIPE_S3_ACCESS_KEY",
    "DETPIPE_S3_SECRET_KEY",
    "KF_PIPELINES_TOKEN",
)


def test_sweep_plans_cells_loops_over_them_then_reports(compiled):
    spec, _ = load_compiled(compiled["small_data_sweep"])
    tasks = spec["root"]["dag"]["tasks"]
    loop_name = next(name for name in tasks if name.startswith("for-loop"))
    loop = tasks[loop_name]
    # the loop runs the plan step's cells (grid x strategies x subset draws, each with its schedule)
    items = loop["parameterIterator"]["items"]["inputParameter"]
    assert loop["inputs"]["parameters"][items]["taskOutputParameter"]["producerTask"] == "plan-op"
    plan_inputs = tasks["plan-op"]["inputs"]["parameters"]
    for name in ("cells", "strategies", "subset_seeds", "epochs_policy", "epochs", "max_epochs_scale"):
        assert plan_inputs[name]["componentInputParameter"] == name
    draws = tasks["subsets-op"]["inputs"]["parameters"]["draw_seeds"]
    assert draws["componentInputParameter"] == "subset_seeds"
    assert set(tasks["report-op"]["dependentTasks"]) == {loop_name}
    loop_tasks = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert set(loop_tasks) == {"train-op", "evaluate-op", "record-op", "logs-op"}
    train_inputs = loop_tasks["train-op"]["inputs"]["parameters"]
    for name in ("strategy", "subset_seed", "epochs", "warmup_epochs", "fraction", "seed", "arch"):
        assert train_inputs[name]["componentInputParameter"] == f"{items}-loop-item", name
        assert train_inputs[name]["parameterExpressionSelector"] == f'parseJson(string_value)["{name}"]'
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["cells"]["defaultValue"] == sweep_grid()
    assert (params["strategies"]["defaultValue"], params["subset_seeds"]["defaultValue"]) == (["p"], [0])
    assert params["epochs_policy"]["defaultValue"] == "fixed"


def test_study_grid():
    grid = sweep_grid()
    assert len({c["arch"] for c in grid}) == 5
    small = [c for c in grid if c["fraction"] <= VARIANCE_MAX_FRACTION]
    assert len(small) == 5 * 5 * 3  # 5 models x 5 fractions up to 5 % x 3 seeds
    assert len(grid) == len(small) + 5 * 10


def test_compile_single_pipeline_and_bad_args(tmp_path):
    out = tmp_path / "t2e.yaml"
    assert _cli("pipeline", "compile", "--pipeline", "train_to_edge", "--out", str(out)).returncode == 0
    assert load_compiled(out.read_text())[0]["pipelineInfo"]["name"] == "train-to-edge"
    res = _cli("pipeline", "compile", "--pipeline", "nope", "--out", str(out))
    assert res.returncode == 2


def test_submit_dry_run_shows_the_request(monkeypatch):
    res = _cli(
        "pipeline",
        "submit",
        "--host",
        "https://kfp.example.com/pipeline",
        "--quick",
        "--dry-run",
        "--set",
        "epochs=7",
        "--experiment",
        "exp1",
    )
    assert res.returncode == 0, res.stderr
    planned = json.loads(res.stdout)
    assert planned["host"] == "https://kfp.example.com/pipeline"
    assert planned["experiment"] == "exp1"
    assert planned["arguments"]["epochs"] == 7
    assert planned["arguments"]["formats"] == ["onnx", "onnx-int8"]
    assert planned["service_account"] == "detpipe-pipeline"
    bad = _cli("pipeline", "submit", "--host", "kfp.example.com", "--dry-run")
    assert bad.returncode == 2
    assert "expected an http(s):// URL" in bad.stderr


def test_caching_and_retries_are_explicit_per_step(compiled, tmp_path):
    """Data, subsets, evaluation and export may be reused; training only when asked; deploy and
    edge never. Steps that touch the store or the Kubernetes API retry with backoff."""
    from detpipe.pipelines.compile import compile_pipeline

    spec, _ = load_compiled(compiled["train_to_edge"])
    tasks = spec["root"]["dag"]["tasks"]
    deploy = spec["root"]["dag"]["tasks"]["condition-1"]
    deploy_tasks = spec["components"][deploy["componentRef"]["name"]]["dag"]["tasks"]
    cached = {name: t.get("cachingOptions", {}).get("enableCache", False) for name, t in tasks.items()}
    assert cached["data-op"] and cached["subsets-op"] and cached["evaluate-op"] and cached["export-op"]
    assert not cached["train-op"] and not cached["edge-publish-op"]
    assert not deploy_tasks["deploy-op"].get("cachingOptions", {}).get("enableCache", False)
    for name in ("data-op", "train-op", "publish-op", "edge-publish-op"):
        retry = tasks[name]["retryPolicy"]
        assert retry["maxRetryCount"] == 2 and retry["backoffFactor"] == 2.0, name
    assert deploy_tasks["deploy-op"]["retryPolicy"]["maxRetryCount"] == 2

    settings = PipelineSettings(target="cluster", image="registry.local/detpipe:test", cache_training=True,
                                launch_only_train=True)  # fmt: skip
    spec, _ = load_compiled(compile_pipeline("train_to_edge", settings, tmp_path / "t.yaml").read_text())
    assert spec["root"]["dag"]["tasks"]["train-op"]["cachingOptions"]["enableCache"] is True
    train = spec["deploymentSpec"]["executors"]["exec-train-op"]["container"]
    assert "accelerator" not in train.get("resources", {})  # it only launches and watches the job
    assert "accelerator" in spec["deploymentSpec"]["executors"]["exec-evaluate-op"]["container"]["resources"]
