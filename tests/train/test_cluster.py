"""Cluster jobs: both launchers' manifests against the operators' CRD schemas, the TrainJob's
status, the RBAC they need, and the launch/watch/download path of ``detpipe train --launcher
trainjob`` and of the pipeline's train step (``nnodes > 1``) against a loopback Kubernetes API
(:mod:`.fake_kube`, through the real kubernetes client) and a moto S3 server."""

from __future__ import annotations

import json
import signal
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from store_servers import S3Server

from detpipe.errors import InvalidInput, Unavailable
from detpipe.train import cluster, pytorchjob, trainjob
from detpipe.train.config import build_config
from detpipe.train.jobwatch import PYTORCHJOB, TRAINJOB, Phase, job_state

from .conftest import REPO, child_env, cli, cli_popen
from .crd_schema import CRDS, errors
from .fake_kube import FakeKube, condition, serve

PYTORCHJOB_CRD = ("kubeflow.org_pytorchjobs.yaml", "v1")
TRAINJOB_CRD = ("trainer.kubeflow.org_trainjobs.yaml", "v1alpha1")
IMAGE = "registry.example/detpipe-train:1.2.3"

# TrainJob conditions as Kubeflow Trainer v2.3 writes them (pkg/apis/trainer/v1alpha1/trainjob_types.go)
TJ_RUNNING = {"conditions": [], "jobsStatus": [{"name": "node", "active": 2, "ready": 2, "succeeded": 0}]}
TJ_COMPLETE = [condition("Complete", reason="JobsCompleted", message="jobs completed")]
TJ_FAILED = [condition("Failed", reason="FailedJobs", message="node-0 exited 1")]


def _cfg(device: str = "auto", **kw: Any):
    return build_config(
        "/data/coco/yolo/train2017_5_p.yaml",
        "yolo12n.yaml",
        "runs/yolo12n-5p",
        flags={"epochs": 600, "batch": 256, "imgsz": 640},
        device=device,
        **{"resume": "s3://detpipe/train/yolo12n-5p", **kw},
    )


def _job(**kw: Any) -> pytorchjob.JobConfig:
    base = {
        "name": "train-yolo12n-5p",
        "image": IMAGE,
        "nnodes": 4,
        "nproc_per_node": 4,
        "gpus_per_node": 4,
        "node_selector": {"nvidia.com/gpu.product": "H100"},
        "active_deadline_s": 3600,
    }
    return pytorchjob.JobConfig(**{**base, **kw})


SHAPES = {
    "4x4-gpu": ({}, {}),
    "1-node-cpu": (
        {"device": "cpu"},
        {"nnodes": 1, "nproc_per_node": 2, "gpus_per_node": 0, "tolerations": ()},
    ),
    "no-pvc-no-deadline": ({}, {"data_pvc": None, "active_deadline_s": None, "cpu": None, "memory": None}),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_pytorchjob_matches_the_training_operator_crd(shape: str) -> None:
    cfg_kw, job_kw = SHAPES[shape]
    assert errors(pytorchjob.render(_cfg(**cfg_kw), _job(**job_kw)), *PYTORCHJOB_CRD) == []


@pytest.mark.parametrize("shape", SHAPES)
def test_trainjob_matches_the_trainer_crd(shape: str) -> None:
    cfg_kw, job_kw = SHAPES[shape]
    assert errors(trainjob.render(_cfg(**cfg_kw), _job(**job_kw)), *TRAINJOB_CRD) == []


def test_the_schemas_catch_what_the_api_server_would_drop_or_refuse() -> None:
    pj = pytorchjob.render(_cfg(), _job())
    pj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["resource"] = {}
    pj["spec"]["runPolicy"]["backoffLimit"] = "10"
    assert errors(pj, *PYTORCHJOB_CRD) == [
        "spec/pytorchReplicaSpecs/Master/template/spec/containers/0: "
        "Additional properties are not allowed ('resource' was unexpected)",
        "spec/runPolicy/backoffLimit: '10' is not of type 'integer'",
    ]
    tj = trainjob.render(_cfg(), _job())
    tj["spec"]["trainer"]["numNodes"] = "4"
    del tj["spec"]["runtimeRef"]["name"]
    assert errors(tj, *TRAINJOB_CRD) == [
        "spec/runtimeRef: 'name' is a required property",
        "spec/trainer/numNodes: '4' is not of type 'integer'",
    ]


def test_trainjob_shape() -> None:
    tj = trainjob.render(_cfg(), _job())
    assert (tj["apiVersion"], tj["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    spec = tj["spec"]
    assert spec["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "torch-distributed",
    }
    trainer = spec["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (4, 4)
    assert trainer["command"] == ["torchrun", "-m", "detpipe.train.worker"]
    flags = dict(zip(trainer["args"][::2], trainer["args"][1::2], strict=False))
    assert flags["--out"] == "/scratch/run" and flags["--device"] == "cuda"
    assert flags["--resume"] == "s3://detpipe/train/yolo12n-5p"
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "4"
    env = {e["name"]: e for e in trainer["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "detpipe-minio", "key": "secretkey"}
    }
    assert env["DETPIPE_S3_ENDPOINT"]["valueFrom"]["configMapKeyRef"]["name"] == "detpipe-config"
    # refs only, but for two paths: the cache directory and the store's CA bundle
    assert all(
        "value" not in e or e["name"] in ("XDG_CACHE_HOME", "DETPIPE_S3_CA_BUNDLE") for e in trainer["env"]
    )
    assert spec["activeDeadlineSeconds"] == 3600
    (patch,) = spec["runtimePatches"]
    (rjob,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = rjob["template"]["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "H100"}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["spec"]["containers"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {
        "/dev/shm",
        "/scratch",
        "/data",
        "/etc/detpipe/store-ca",
    }
    # the store's CA: the optional ConfigMap, mounted where the trainer's env points
    ca_mount = next(m for m in container["volumeMounts"] if m["name"] == "store-ca")
    ca_volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "store-ca")
    assert ca_volume["configMap"] == {"name": "detpipe-store-ca", "optional": True}
    assert env["DETPIPE_S3_CA_BUNDLE"]["value"] == f"{ca_mount['mountPath']}/ca.crt"
    assert ca_mount["readOnly"] is True
    # the patch must name what the torch-distributed runtime really has, or it patches nothing
    runtime = yaml.safe_load((CRDS / "torch_distributed.yaml").read_text())
    (node,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert rjob["name"] == node["name"]
    assert (
        container["name"]
        == TRAINJOB.container
        == node["template"]["spec"]["template"]["spec"]["containers"][0]["name"]
    )
    assert runtime["metadata"]["name"] == trainjob.RUNTIME


def test_trainjob_needs_an_s3_mirror_and_data_on_the_pvc() -> None:
    with pytest.raises(InvalidInput, match="--launcher trainjob needs --resume s3://"):
        trainjob.render(_cfg(resume=None), _job())
    with pytest.raises(InvalidInput, match="pods see datasets under /data"):
        trainjob.render(build_config("/tmp/d.yaml", "yolo12n.yaml", "o", resume="s3://b/p"), _job())


def test_trainjob_status() -> None:
    assert job_state({}, TRAINJOB).phase is Phase.PENDING
    assert job_state({"status": TJ_RUNNING}, TRAINJOB).phase is Phase.RUNNING
    suspended = job_state({"status": {"conditions": [condition("Suspended", reason="Suspended")]}}, TRAINJOB)
    assert suspended.phase is Phase.SUSPENDED
    assert job_state({"status": {"conditions": TJ_COMPLETE}}, TRAINJOB).phase is Phase.SUCCEEDED
    failed = job_state({"status": {"conditions": TJ_FAILED}}, TRAINJOB)
    assert (failed.phase, failed.message) == (Phase.FAILED, "node-0 exited 1")
    # "Complete" means nothing to a PyTorchJob, and "Succeeded" nothing to a TrainJob
    assert job_state({"status": {"conditions": TJ_COMPLETE}}, PYTORCHJOB).phase is Phase.PENDING
    assert job_state({"status": {"conditions": [condition("Succeeded")]}}, TRAINJOB).phase is Phase.PENDING


def test_rbac_grants_what_the_launchers_call() -> None:
    docs = list(yaml.safe_load_all((REPO / "k8s" / "base" / "rbac.yaml").read_text()))
    (role,) = [d for d in docs if d["kind"] == "Role"]
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    for kind in (PYTORCHJOB, TRAINJOB):
        for verb in ("create", "get", "delete"):
            assert (kind.group, kind.plural, verb) in granted, (kind.kind, verb)
    assert ("", "pods", "list") in granted and ("", "pods/log", "get") in granted
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    assert binding["subjects"][0]["name"] == "detpipe-pipeline"  # the runs' service account


def test_step_job_and_mirror_checks() -> None:
    with pytest.raises(InvalidInput, match="launcher 'mpijob'"):
        cluster.StepJob(launcher="mpijob", nnodes=2, nproc_per_node=1, job_store="s3://b", timeout_s=10)
    with pytest.raises(InvalidInput, match="give s3://"):
        cluster.mirror_uri("/tmp/store", "train-x")
    with pytest.raises(InvalidInput, match="job_store '/tmp/store'"):
        cluster.StepJob(launcher="trainjob", nnodes=2, nproc_per_node=1, job_store="/tmp/store", timeout_s=10)
    assert cluster.mirror_uri("s3://detpipe/", "train-x") == "s3://detpipe/train-jobs/train-x"
    step = cluster.StepJob(
        launcher="trainjob", nnodes=2, nproc_per_node=4, job_store="s3://b", timeout_s=10,
        tolerations=("nvidia.com/gpu:NoSchedule",), namespace="ml",
    )  # fmt: skip
    gpu = step.job_config(_cfg(), "train-x")
    assert (gpu.gpus_per_node, gpu.namespace, gpu.tolerations[0].key) == (4, "ml", "nvidia.com/gpu")
    cpu = step.job_config(_cfg(device="cpu"), "train-x")
    assert (cpu.gpus_per_node, cpu.tolerations) == (0, ())


def test_step_without_a_cluster_fails_before_staging(tmp_path: Path) -> None:
    step = cluster.StepJob(
        launcher="trainjob", nnodes=2, nproc_per_node=1, job_store="s3://b", timeout_s=10,
        data_mount=str(tmp_path / "pvc"),
    )  # fmt: skip

    def no_cluster(namespace: str, name: str, kind: Any) -> Any:
        raise Unavailable("no Kubernetes cluster configured (in-cluster or kubeconfig): none")

    cfg = build_config("train2017_100_p.yaml", "yolov8n.yaml", str(tmp_path / "model"), flags={"batch": 8})
    with pytest.raises(Unavailable, match="no Kubernetes cluster"):
        cluster.train_step(step, cfg, tmp_path / "coco", None, api_factory=no_cluster)
    assert not (tmp_path / "pvc").exists()
    with pytest.raises(InvalidInput, match=r"batch 8 .* over 3 processes"):
        cluster.train_step(replace(step, nproc_per_node=3, nnodes=1), cfg, tmp_path / "coco", None)


def _coco(tmp_path: Path, images: int = 8) -> Path:
    from detpipe.data.synth import SynthConfig, synthesize

    synthesize(SynthConfig(out=tmp_path / "coco", images=images, val_images=4, classes=2, imgsz=64, seed=0))
    return tmp_path / "coco"


def _subsets(tmp_path: Path, coco: Path) -> Path:
    subsets = tmp_path / "subsets"
    subsets.mkdir()
    names = sorted(p.name for p in (coco / "images" / "train2017").iterdir())
    (subsets / "train2017_100_p.txt").write_text("".join(f"./images/train2017/{n}\n" for n in names))
    (subsets / "summary.json").write_text('{"seed": 0}')  # a subsets output names its draw's seed
    return subsets


def test_stage_dataset_copies_or_links(tmp_path: Path) -> None:
    coco = _coco(tmp_path, images=4)
    subsets = _subsets(tmp_path, coco)
    mount = tmp_path / "pvc"
    # a synthetic set in the step's artifact: copied onto the PVC, the YAML points there
    yolo = cluster.stage_dataset(coco, subsets, mount / "jobs" / "a", mount)
    data = yaml.safe_load((yolo / "train2017_100_p.yaml").read_text())
    assert Path(data["path"]).resolve().is_relative_to(mount.resolve())
    images = (yolo / "images" / "train2017").resolve()
    assert images == (mount / "jobs" / "a" / "coco" / "images" / "train2017").resolve()
    assert len(list(images.iterdir())) == 4
    # a COCO root already on the PVC (coco_root): linked, not copied
    (mount / "coco").parent.mkdir(parents=True, exist_ok=True)
    (coco).rename(mount / "coco")
    linked = tmp_path / "artifact"
    linked.mkdir()
    for sub in ("images", "annotations"):
        (linked / sub).symlink_to(mount / "coco" / sub, target_is_directory=True)
    yolo = cluster.stage_dataset(linked, subsets, mount / "jobs" / "b", mount)
    assert (yolo / "images" / "train2017").resolve() == (mount / "coco" / "images" / "train2017").resolve()
    assert not (mount / "jobs" / "b" / "coco").exists()
    with pytest.raises(InvalidInput, match="must lie on the dataset mount"):
        cluster.stage_dataset(linked, subsets, tmp_path / "elsewhere", mount)


# -- end to end: the CLI with --launcher trainjob ----------------------------------------------

JOB = "train-yolo12n-tj"


def _trainjob_args(tmp_path: Path, uri: str, *extra: str) -> list[str]:
    return [
        "train", "--data", "/data/yolo/train2017_5_p.yaml", "--model", "yolo12n.yaml",
        "--out", str(tmp_path / "run"), "--epochs", "2", "--batch", "16", "--launcher", "trainjob",
        "--nnodes", "2", "--nproc-per-node", "2", "--image", "img:1", "--job-name", JOB,
        "--resume", uri, "--poll", "1", *extra,
    ]  # fmt: skip


def test_cli_trainjob_submits_follows_and_fetches(tmp_path: Path, s3: S3Server) -> None:
    uri = "s3://detpipe-test/train/tj-ok"
    mirror = s3.store(uri)
    summary = {"model": "yolo12n", "best_map5095": 0.25, "best_epoch": 2, "last_epoch": 2}
    mirror.put_bytes("train_summary.json", json.dumps(summary).encode())
    mirror.put_bytes("weights/best.pt", b"weights")
    kube = FakeKube(
        [[], TJ_RUNNING, TJ_COMPLETE], logs=[["epoch 1/2 ..."], ["epoch 2/2 ...", "training finished"]]
    )
    with serve(kube, tmp_path / "kubeconfig"):
        done = cli(*_trainjob_args(tmp_path, uri), env={**s3.env, "KUBECONFIG": str(tmp_path / "kubeconfig")})
    assert done.returncode == 0, done.stderr[-3000:]
    # the run's jobs first (none: attempt 1), then the job
    jobs = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/detpipe/trainjobs"
    assert kube.requests[:2] == [f"GET {jobs}?labelSelector=detpipe.io%2Frun%3D{JOB}", f"POST {jobs}"]
    (manifest,) = kube.created
    assert errors(manifest, *TRAINJOB_CRD) == []
    assert manifest["spec"]["trainer"]["numNodes"] == 2
    assert any(
        r.startswith("GET /apis/trainer.kubeflow.org/v1alpha1/namespaces/detpipe/trainjobs/")
        for r in kube.requests
    )
    assert kube.selectors[0] == TRAINJOB.node0_selector.format(name=JOB)
    assert any("/log?" in r and "container=node" in r for r in kube.requests)
    assert "training finished" in done.stderr
    assert json.loads(done.stdout) == summary
    assert (tmp_path / "run" / "weights" / "best.pt").read_bytes() == b"weights"
    assert kube.deleted == []


def test_cli_trainjob_failure_and_dry_run(tmp_path: Path, s3: S3Server) -> None:
    kube = FakeKube([TJ_FAILED])
    with serve(kube, tmp_path / "kubeconfig"):
        done = cli(
            *_trainjob_args(tmp_path, "s3://detpipe-test/train/tj-fail"),
            env={**s3.env, "KUBECONFIG": str(tmp_path / "kubeconfig")},
        )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"detpipe train: error: TrainJob {JOB} failed: FailedJobs: node-0 exited 1"
    )
    dry = cli(*_trainjob_args(tmp_path, "s3://detpipe-test/train/tj-dry", "--dry-run"))
    assert dry.returncode == 0, dry.stderr
    assert errors(yaml.safe_load(dry.stdout), *TRAINJOB_CRD) == []
    bad = cli(*_trainjob_args(tmp_path, "/tmp/not-s3", "--dry-run"))
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "detpipe train: error: --launcher trainjob needs --resume s3://BUCKET/PREFIX: the run is "
        "mirrored there, pods continue from it after a restart, and the outputs are fetched from it"
    ]


# -- end to end: the pipeline's train step with nnodes > 1 --------------------------------------

STEP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from kfp.dsl import Dataset, Metrics, Model
    from detpipe.components.train import train_op
    a = json.loads(sys.argv[1])
    model, metrics = Model(uri=a["model"]), Metrics(uri=a["metrics"])
    train_op.python_func(
        dataset=Dataset(uri=a["dataset"]), subsets=Dataset(uri=a["subsets"]), model=model,
        metrics=metrics, arch="yolov8n.yaml", fraction=100.0, strategy="p", epochs=2, imgsz=64,
        batch=8, seed=0, device="cpu", workers=0, nproc_per_node=2, nnodes=2,
        launcher=a["launcher"], job_store="s3://detpipe-test/pipeline", job_timeout_s=a["timeout"],
        job_image="img:1", job_namespace="ml", job_data_pvc="detpipe-datasets",
        job_data_mount=a["mount"], queue_name=a.get("queue_name", ""),
        queue_timeout_s=a.get("queue_timeout_s", 86400),
    )
    print(json.dumps({"metadata": model.metadata, "metrics": metrics.metadata}))
    """
)


def _step(tmp_path: Path, launcher: str, timeout: int = 600) -> tuple[list[str], Path]:
    coco = _coco(tmp_path)
    args = {
        "dataset": str(coco),
        "subsets": str(_subsets(tmp_path, coco)),
        "model": str(tmp_path / "model"),
        "metrics": str(tmp_path / "metrics"),
        "mount": str(tmp_path / "pvc"),
        "launcher": launcher,
        "timeout": timeout,
    }
    (tmp_path / "pvc").mkdir()
    return [sys.executable, "-c", STEP_SCRIPT, json.dumps(args)], tmp_path / "pvc"


def _pods(s3: S3Server, seen: dict[str, Any]):
    """What the job's pods would do on submit: read the staged data, write the run's mirror."""

    def on_create(manifest: dict[str, Any]) -> None:
        spec = manifest["spec"]
        args = spec["trainer"]["args"] if "trainer" in spec else (
            spec["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["args"]
        )  # fmt: skip
        flags = dict(zip(args[::2], args[1::2], strict=False))
        data = yaml.safe_load(Path(flags["--data"]).read_text())
        seen["data"], seen["train_images"] = (
            flags["--data"],
            len(Path(data["path"], data["train"]).read_text().split()),
        )
        seen["resume"] = flags["--resume"]
        mirror = s3.store(flags["--resume"])
        summary = {"model": "yolov8n", "fraction": 100.0, "strategy": "p", "seed": 0, "best_map5095": 0.31,
                   "best_map50": 0.5, "best_epoch": 2, "last_epoch": 2}  # fmt: skip
        mirror.put_bytes("weights/best.pt", b"best")
        mirror.put_bytes("results.csv", b"epoch\n1\n2\n")
        mirror.put_bytes("train_summary.json", json.dumps(summary).encode())

    return on_create


@pytest.mark.parametrize("launcher", ["pytorchjob", "trainjob"])
def test_pipeline_step_runs_the_job_and_fills_its_model(tmp_path: Path, s3: S3Server, launcher: str) -> None:
    import subprocess

    cmd, mount = _step(tmp_path, launcher)
    seen: dict[str, Any] = {}
    succeeded = (
        TJ_COMPLETE if launcher == "trainjob" else [condition("Succeeded", reason="PyTorchJobSucceeded")]
    )
    kube = FakeKube([succeeded], logs=[["epoch 2/2 done"]], on_create=_pods(s3, seen))
    with serve(kube, tmp_path / "kubeconfig"):
        env = child_env({**s3.env, "KUBECONFIG": str(tmp_path / "kubeconfig")})
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    kind = TRAINJOB if launcher == "trainjob" else PYTORCHJOB
    assert kube.requests[1] == f"POST /apis/{kind.api_version}/namespaces/ml/{kind.plural}"
    (manifest,) = kube.created
    crd = TRAINJOB_CRD if launcher == "trainjob" else PYTORCHJOB_CRD
    assert errors(manifest, *crd) == []
    name = manifest["metadata"]["name"]
    # the pods read the dataset staged on the PVC, and mirror to the job's own prefix
    assert seen["data"] == str(mount / "jobs" / name / "yolo" / "train2017_100_p.yaml")
    assert seen["train_images"] == 8
    assert seen["resume"] == f"s3://detpipe-test/pipeline/train-jobs/{name}"
    assert not (mount / "jobs" / name).exists()  # staging removed when the step ends
    # the job's outputs are the step's Output[Model]
    model = tmp_path / "model"
    assert (model / "weights" / "best.pt").read_bytes() == b"best"
    assert json.loads((model / "train_summary.json").read_text())["best_map5095"] == 0.31
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["metadata"]["nodes"] == 2 and out["metadata"]["launcher"] == launcher
    assert out["metrics"]["best_map5095"] == 0.31
    assert "epoch 2/2 done" in done.stderr
    assert kube.deleted == []


def test_pipeline_step_cancel_deletes_the_job(tmp_path: Path, s3: S3Server) -> None:
    import subprocess

    cmd, mount = _step(tmp_path, "trainjob")
    kube = FakeKube([[], TJ_RUNNING])
    with serve(kube, tmp_path / "kubeconfig"):
        env = child_env({**s3.env, "KUBECONFIG": str(tmp_path / "kubeconfig")})
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 120
        while kube.gets < 1 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # what Kubeflow sends a cancelled step
        _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, err[-2000:]
    (manifest,) = kube.created
    assert kube.deleted == [manifest["metadata"]["name"]]
    assert not (mount / "jobs" / manifest["metadata"]["name"]).exists()


def test_cli_cancel_of_a_trainjob_deletes_it(tmp_path: Path, s3: S3Server) -> None:
    kube = FakeKube([[], []])
    env = {**s3.env, "KUBECONFIG": str(tmp_path / "kubeconfig")}
    with serve(kube, tmp_path / "kubeconfig"):
        proc = cli_popen(*_trainjob_args(tmp_path, "s3://detpipe-test/train/tj-cancel"), env=env)
        deadline = time.monotonic() + 60
        while kube.gets < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err[-2000:]
    assert kube.deleted == [JOB]
    job_path = f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/detpipe/trainjobs/{JOB}"
    deletes = [r for r in kube.requests if r.startswith("DELETE")]
    assert deletes == [f"DELETE {job_path}?propagationPolicy=Foreground"], kube.requests
