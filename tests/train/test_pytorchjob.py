"""The rendered PyTorchJob, checked against the Training Operator's own models and k8s schemas."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubeflow.training import ApiClient, KubeflowOrgV1PyTorchJob

from detpipe.errors import InvalidInput
from detpipe.train.config import build_config
from detpipe.train.pytorchjob import JobConfig, Toleration, default_job_name, render, to_yaml

from .conftest import cli

IMAGE = "registry.example/detpipe-train:1.2.3"
ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.30"


def _cfg(**kw: Any):
    return build_config(
        "/data/coco/yolo/train2017_5_p.yaml",
        "yolo12n.yaml",
        "runs/yolo12n-5p",
        flags={"epochs": 600, "batch": 256, "imgsz": 640},
        resume="s3://detpipe/train/yolo12n-5p",
        **kw,
    )


def _job(**kw: Any) -> JobConfig:
    base = {
        "name": "train-yolo12n-5p",
        "image": IMAGE,
        "nnodes": 4,
        "nproc_per_node": 4,
        "gpus_per_node": 4,
        "node_selector": {"nvidia.com/gpu.product": "H100"},
        "active_deadline_s": 3600,
    }
    return JobConfig(**{**base, **kw})


def _deserialize(manifest: dict) -> KubeflowOrgV1PyTorchJob:
    client = ApiClient()
    return client.deserialize(SimpleNamespace(data=json.dumps(manifest)), "KubeflowOrgV1PyTorchJob")


def test_round_trips_through_the_training_operator_models() -> None:
    manifest = render(_cfg(), _job())
    job = _deserialize(manifest)
    assert isinstance(job, KubeflowOrgV1PyTorchJob)
    # every field survived: nothing was unknown to the operator's schema (those are dropped)
    assert ApiClient().sanitize_for_serialization(job) == manifest
    assert job.spec.nproc_per_node == "4"
    assert job.spec.run_policy.active_deadline_seconds == 3600
    master, worker = job.spec.pytorch_replica_specs["Master"], job.spec.pytorch_replica_specs["Worker"]
    assert (master.replicas, worker.replicas) == (1, 3)
    assert master.restart_policy == worker.restart_policy == "OnFailure"


def test_structure_of_every_pod() -> None:
    manifest = render(_cfg(), _job())
    assert (manifest["apiVersion"], manifest["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    assert manifest["metadata"]["namespace"] == "detpipe"
    for replica in manifest["spec"]["pytorchReplicaSpecs"].values():
        pod = replica["template"]["spec"]
        (container,) = pod["containers"]
        assert container["name"] == "pytorch" and container["image"] == IMAGE
        assert container["command"] == ["torchrun", "-m", "detpipe.train.worker"]
        args = container["args"]
        flags = dict(zip(args[::2], args[1::2], strict=False))
        assert flags["--out"] == "/scratch/run" and flags["--device"] == "cuda"
        assert args[args.index("--resume") + 1] == "s3://detpipe/train/yolo12n-5p"
        assert args[args.index("--batch") + 1] == "256"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
        assert container["resources"]["requests"]["nvidia.com/gpu"] == "4"
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
        assert volumes["datasets"]["persistentVolumeClaim"] == {
            "claimName": "detpipe-datasets",
            "readOnly": True,
        }
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts == {
            "dshm": "/dev/shm",
            "scratch": "/scratch",
            "datasets": "/data",
            "store-ca": "/etc/detpipe/store-ca",
        }
        # the store's CA as k8s/serving's pods get it: optional ConfigMap, DETPIPE_S3_CA_BUNDLE
        assert volumes["store-ca"]["configMap"] == {"name": "detpipe-store-ca", "optional": True}
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["DETPIPE_S3_CA_BUNDLE"] == "/etc/detpipe/store-ca/ca.crt"
        secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
        assert secrets == {
            "AWS_ACCESS_KEY_ID": {"name": "detpipe-minio", "key": "accesskey"},
            "AWS_SECRET_ACCESS_KEY": {"name": "detpipe-minio", "key": "secretkey"},
        }
        assert all("value" not in e for e in container["env"] if e["name"].startswith("AWS_"))
        assert container["envFrom"] == [{"configMapRef": {"name": "detpipe-config"}}]
        assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "H100"}
        assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_pod_templates_are_valid_kubernetes_pods() -> None:
    manifest = render(_cfg(), _job(tolerations=(Toleration.parse("dedicated=train:NoExecute"),)))
    for replica in manifest["spec"]["pytorchReplicaSpecs"].values():
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "x", **replica["template"]["metadata"]},
            "spec": replica["template"]["spec"],
        }
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)  # raises on any unknown/invalid field


def test_the_store_ca_is_where_the_serving_pods_have_it_and_can_be_left_out() -> None:
    serve = yaml.safe_load((ROOT / "k8s/serving/serve-deployment.yaml").read_text())["spec"]["template"][
        "spec"
    ]
    (serve_container,) = serve["containers"]
    serve_env = {e["name"]: e.get("value") for e in serve_container["env"]}
    pod = render(_cfg(), _job())["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DETPIPE_S3_CA_BUNDLE"] == serve_env["DETPIPE_S3_CA_BUNDLE"]
    pod = render(_cfg(), _job(store_ca=None))["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert "store-ca" not in {v["name"] for v in pod["volumes"]}
    assert "DETPIPE_S3_CA_BUNDLE" not in {e["name"] for e in pod["containers"][0]["env"]}


def test_single_node_cpu_job_has_no_workers_or_gpus() -> None:
    cfg = _cfg(device="cpu")
    manifest = render(
        cfg, _job(nnodes=1, nproc_per_node=2, gpus_per_node=0, tolerations=(), node_selector={})
    )
    assert list(manifest["spec"]["pytorchReplicaSpecs"]) == ["Master"]
    pod = manifest["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert "nvidia.com/gpu" not in json.dumps(pod)
    args = pod["containers"][0]["args"]
    assert args[args.index("--device") + 1] == "cpu"
    assert _deserialize(manifest).spec.nproc_per_node == "2"


@pytest.mark.parametrize(
    ("cfg_kw", "job_kw", "message"),
    [
        ({"resume": None}, {}, "--launcher pytorchjob needs --resume s3://BUCKET/PREFIX"),
        ({"resume": "file:///tmp/x"}, {}, "--launcher pytorchjob needs --resume s3://BUCKET/PREFIX"),
        ({}, {"name": "Train_Job"}, "--job-name Train_Job: must be a lowercase DNS label"),
        ({}, {"data_mount": "/datasets"}, "pods see datasets under /datasets"),
    ],
)
def test_refused(cfg_kw: dict, job_kw: dict, message: str) -> None:
    cfg = _cfg()
    if "resume" in cfg_kw:
        from dataclasses import replace

        cfg = replace(cfg, resume=cfg_kw["resume"])
    with pytest.raises(InvalidInput) as e:
        render(cfg, _job(**job_kw))
    assert message in str(e.value)


def test_toleration_parsing() -> None:
    assert Toleration.parse("nvidia.com/gpu:NoSchedule").to_k8s() == {
        "key": "nvidia.com/gpu",
        "operator": "Exists",
        "effect": "NoSchedule",
    }
    assert Toleration.parse("team=vision:NoExecute").to_k8s() == {
        "key": "team",
        "operator": "Equal",
        "effect": "NoExecute",
        "value": "vision",
    }
    with pytest.raises(InvalidInput):
        Toleration.parse("x:Sometimes")


def test_default_job_name_is_stable_and_valid() -> None:
    name = default_job_name(_cfg())
    assert name == default_job_name(_cfg()) and name.startswith("train-yolo12n-") and len(name) == 22
    JobConfig(name=name, image=IMAGE)  # a valid name


def test_cli_dry_run_prints_the_manifest(tmp_path: Path) -> None:
    done = cli(
        "train",
        "--data",
        "/data/coco/yolo/train2017_5_p.yaml",
        "--model",
        "yolo12n.yaml",
        "--out",
        str(tmp_path / "run"),
        "--epochs",
        "600",
        "--batch",
        "256",
        "--imgsz",
        "640",
        "--launcher",
        "pytorchjob",
        "--nnodes",
        "4",
        "--nproc-per-node",
        "4",
        "--image",
        IMAGE,
        "--job-name",
        "train-yolo12n-5p",
        "--node-selector",
        "nvidia.com/gpu.product=H100",
        "--timeout",
        "3600",
        "--resume",
        "s3://detpipe/train/yolo12n-5p",
        "--dry-run",
    )
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout) == render(_cfg(), _job())
    assert not (tmp_path / "run").exists()
    assert to_yaml(render(_cfg(), _job())) == done.stdout


def test_job_config_from_cli_flags_defaults_to_the_train_image() -> None:
    from detpipe.cli.main import get_args_parser
    from detpipe.images import TRAIN_IMAGE

    argv = [
        "train",
        "--data",
        "/data/d.yaml",
        "--model",
        "yolo12n.yaml",
        "--out",
        "o",
        "--launcher",
        "pytorchjob",
        "--nnodes",
        "2",
        "--nproc-per-node",
        "8",
        "--resume",
        "s3://b/run",
    ]
    args = get_args_parser().parse_args(argv)
    from detpipe.train.config import config_from_args

    cfg = config_from_args(args)
    job = JobConfig.from_args(args, cfg)
    assert (job.image, job.nnodes, job.nproc_per_node, job.gpus_per_node) == (TRAIN_IMAGE, 2, 8, 8)
    assert job.tolerations == (Toleration("nvidia.com/gpu"),) and job.name == default_job_name(cfg)
    cpu_args = get_args_parser().parse_args([*argv, "--device", "cpu", "--node-selector", "pool=cpu"])
    cpu = JobConfig.from_args(cpu_args, config_from_args(cpu_args))
    assert (cpu.gpus_per_node, cpu.tolerations, dict(cpu.node_selector)) == (0, (), {"pool": "cpu"})
