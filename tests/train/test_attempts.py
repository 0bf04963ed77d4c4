"""Retry-safe launches: a launch adopts its run's live job, or after a failed one starts the next
attempt under its own name, never failing on the name. Through the CLI and the pipeline's
train step (run twice with the same inputs, as a Kubeflow retry does) against the loopback
Kubernetes API (:mod:`.fake_kube`) and a moto S3 server."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from store_servers import S3Server

from detpipe.train import pytorchjob
from detpipe.train.attempts import DIGEST_ANNOTATION, attempt_name, spec_digest
from detpipe.train.jobwatch import ATTEMPT_LABEL, RUN_LABEL

from .conftest import REPO, child_env, cli
from .crd_schema import errors
from .fake_kube import FakeKube, condition, serve
from .test_cluster import _pods, _step

PYTORCHJOB_CRD = ("kubeflow.org_pytorchjobs.yaml", "v1")
JOB = "train-yolo12n-re"
RUNNING = [condition("Created"), condition("Running", reason="PyTorchJobRunning")]
SUCCEEDED = [
    condition("Created"),
    condition("Running", "False"),
    condition("Succeeded", reason="PyTorchJobSucceeded"),
]
FAILED = [
    condition("Created"),
    condition("Failed", reason="BackoffLimitExceeded", message="master-0 exited 1"),
]


def test_attempt_names_stay_within_the_name_limit() -> None:
    assert attempt_name(JOB, 1) == JOB
    assert attempt_name(JOB, 2) == f"{JOB}-a2"
    long = "train-" + "x" * 33 + "y"  # 40 characters, the limit
    assert attempt_name(long, 12) == long[:36] + "-a12" and len(attempt_name(long, 12)) == pytorchjob.MAX_NAME
    assert attempt_name("train-abc-" + "d" * 27 + "-e", 10) == "train-abc-" + "d" * 26 + "-a10"  # no "--"


def _args(tmp_path: Path, uri: str, *extra: str) -> list[str]:
    return [
        "train", "--data", "/data/yolo/train2017_5_p.yaml", "--model", "yolo12n.yaml",
        "--out", str(tmp_path / "run"), "--epochs", "2", "--batch", "16", "--launcher", "pytorchjob",
        "--nnodes", "2", "--nproc-per-node", "2", "--image", "img:1", "--job-name", JOB,
        "--resume", uri, "--poll", "1", *extra,
    ]  # fmt: skip


def _digest(tmp_path: Path, uri: str, *extra: str) -> str:
    """The spec digest of what the CLI would create (its dry run renders the same spec)."""
    dry = cli(*_args(tmp_path, uri, *extra, "--dry-run"))
    assert dry.returncode == 0, dry.stderr
    return spec_digest(yaml.safe_load(dry.stdout))


def _held(
    name: str, attempt: int, conditions: list[dict[str, str]], digest: str, **meta: Any
) -> dict[str, Any]:
    """A job the cluster holds, as an earlier launch of run JOB left it."""
    labels = {RUN_LABEL: JOB, ATTEMPT_LABEL: str(attempt)}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {
            "name": name,
            "namespace": "detpipe",
            "labels": labels,
            "annotations": {DIGEST_ANNOTATION: digest},
            **meta,
        },
        "spec": {},
        "status": {"conditions": conditions},
    }


def _run(kube: FakeKube, tmp_path: Path, s3: S3Server, uri: str) -> subprocess.CompletedProcess:
    with serve(kube, tmp_path / "kubeconfig"):
        return cli(*_args(tmp_path, uri), env={**s3.env, "KUBECONFIG": str(tmp_path / "kubeconfig")})


def _outputs(s3: S3Server, uri: str) -> dict[str, Any]:
    summary = {"model": "yolo12n", "best_map5095": 0.3, "best_epoch": 2, "last_epoch": 2}
    s3.store(uri).put_bytes("train_summary.json", json.dumps(summary).encode())
    return summary


def test_after_a_failed_attempt_the_next_one_gets_its_own_name(tmp_path: Path, s3: S3Server) -> None:
    uri = "s3://detpipe-test/train/re-next"
    summary = _outputs(s3, uri)
    digest = _digest(tmp_path, uri)
    # attempt 2 failed with other settings: over all the same, so attempt 3 follows
    kube = FakeKube(
        [RUNNING, SUCCEEDED],
        existing=[_held(JOB, 1, FAILED, digest), _held(f"{JOB}-a2", 2, FAILED, "0" * 16)],
    )
    done = _run(kube, tmp_path, s3, uri)
    assert done.returncode == 0, done.stderr[-3000:]
    (manifest,) = kube.created
    assert manifest["metadata"]["name"] == f"{JOB}-a3"
    labels = manifest["metadata"]["labels"]
    assert (labels[RUN_LABEL], labels[ATTEMPT_LABEL]) == (JOB, "3")
    assert manifest["metadata"]["annotations"] == {DIGEST_ANNOTATION: digest}
    assert errors(manifest, *PYTORCHJOB_CRD) == []
    args = manifest["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--resume") + 1] == uri  # it continues from the run's mirror
    assert f"attempt 3 of run {JOB}: PyTorchJob {JOB}-a3" in done.stderr
    assert json.loads(done.stdout) == summary and kube.deleted == []


def test_a_live_job_of_the_run_is_adopted_not_created_again(tmp_path: Path, s3: S3Server) -> None:
    uri = "s3://detpipe-test/train/re-adopt"
    summary = _outputs(s3, uri)
    digest = _digest(tmp_path, uri)
    live = f"{JOB}-a2"
    kube = FakeKube(
        [RUNNING, SUCCEEDED],
        logs=[["epoch 2/2 ..."]],
        existing=[_held(JOB, 1, FAILED, digest), _held(live, 2, RUNNING, digest)],
        replay=live,
    )
    done = _run(kube, tmp_path, s3, uri)
    assert done.returncode == 0, done.stderr[-3000:]
    assert kube.created == [] and not any(r.startswith("POST") for r in kube.requests)
    assert any(
        r.startswith(f"GET /apis/kubeflow.org/v1/namespaces/detpipe/pytorchjobs/{live}")
        for r in kube.requests
    )
    assert f"adopting PyTorchJob {live} (attempt 2 of run {JOB})" in done.stderr
    assert "epoch 2/2 ..." in done.stderr and json.loads(done.stdout) == summary


def test_a_job_being_deleted_is_not_adopted(tmp_path: Path, s3: S3Server) -> None:
    uri = "s3://detpipe-test/train/re-deleting"
    _outputs(s3, uri)
    digest = _digest(tmp_path, uri)
    leaving = _held(JOB, 1, RUNNING, digest, deletionTimestamp="2026-01-01T00:00:00Z")  # a timed-out attempt
    kube = FakeKube([SUCCEEDED], existing=[leaving])
    done = _run(kube, tmp_path, s3, uri)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [m["metadata"]["name"] for m in kube.created] == [f"{JOB}-a2"]


def test_the_name_held_otherwise_is_refused_with_one_line(tmp_path: Path, s3: S3Server) -> None:
    uri = "s3://detpipe-test/train/re-taken"
    # live with other settings (same --job-name, other flags): neither adopted nor replaced
    kube = FakeKube([RUNNING], existing=[_held(JOB, 1, RUNNING, "0" * 16)])
    done = _run(kube, tmp_path, s3, uri)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"detpipe train: error: PyTorchJob {JOB} (run {JOB}, attempt 1) is still there with other settings: "
        "wait for it, delete it, or pick another --job-name"
    )
    assert kube.created == [] and kube.deleted == []
    # a job of that name from elsewhere (no run label): the API's 409, as before
    foreign = {
        "metadata": {"name": JOB, "namespace": "detpipe"},
        "spec": {},
        "status": {"conditions": RUNNING},
    }
    kube = FakeKube([RUNNING], existing=[foreign])
    done = _run(kube, tmp_path, s3, uri)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"detpipe train: error: PyTorchJob detpipe/{JOB} exists: pick another --job-name"
    )
    assert kube.deleted == []


# -- the pipeline's train step, retried by Kubeflow with the same inputs ---------------------------


def _run_step(cmd: list[str], kube: FakeKube, tmp_path: Path, s3: S3Server) -> subprocess.CompletedProcess:
    env = child_env({**s3.env, "KUBECONFIG": str(tmp_path / "kubeconfig")})
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)


def test_a_retried_step_after_a_failed_job_starts_the_next_attempt(tmp_path: Path, s3: S3Server) -> None:
    cmd, mount = _step(tmp_path, "pytorchjob")
    seen: dict[str, Any] = {}
    kube = FakeKube([FAILED], on_create=_pods(s3, seen))
    with serve(kube, tmp_path / "kubeconfig"):
        first = _run_step(cmd, kube, tmp_path, s3)
        assert first.returncode == 1, first.stderr[-3000:]
        assert "failed: BackoffLimitExceeded: master-0 exited 1" in first.stderr
        kube.statuses = [SUCCEEDED]
        retry = _run_step(cmd, kube, tmp_path, s3)  # what set_retry runs: the same step again
    assert retry.returncode == 0, retry.stderr[-3000:]
    one, two = (m["metadata"] for m in kube.created)
    assert two["name"] == attempt_name(one["name"], 2)
    assert (two["labels"][RUN_LABEL], two["labels"][ATTEMPT_LABEL]) == (one["name"], "2")
    assert seen["resume"].endswith(f"/train-jobs/{one['name']}")  # attempt 2 resumes from the run's mirror
    assert seen["data"] == str(mount / "jobs" / one["name"] / "yolo" / "train2017_100_p.yaml")
    assert not (mount / "jobs" / one["name"]).exists()
    assert json.loads(retry.stdout.strip().splitlines()[-1])["metrics"]["best_map5095"] == 0.31


def test_a_retried_step_adopts_the_job_its_killed_predecessor_left(tmp_path: Path, s3: S3Server) -> None:
    cmd, mount = _step(tmp_path, "trainjob")
    seen: dict[str, Any] = {}
    kube = FakeKube(
        [{"conditions": [], "jobsStatus": [{"name": "node", "active": 2}]}], on_create=_pods(s3, seen)
    )
    with serve(kube, tmp_path / "kubeconfig"):
        env = child_env({**s3.env, "KUBECONFIG": str(tmp_path / "kubeconfig")})
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 120
        while kube.gets < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # the step's pod is lost: nothing deletes the job
        proc.communicate(timeout=30)
        (manifest,) = kube.created
        stage = mount / "jobs" / manifest["metadata"]["name"]
        assert (stage / "yolo").is_dir()  # left for the job, which still reads it
        (stage / "yolo" / "kept").write_text("the adopted job's staging is reused, not rebuilt")
        marks: list[bool] = []
        kube.statuses = [[condition("Complete", reason="JobsCompleted")]]
        original = kube._job

        def get_and_look(name: str) -> dict[str, Any]:
            marks.append((stage / "yolo" / "kept").exists())
            return original(name)

        kube._job = get_and_look  # type: ignore[method-assign]
        retry = _run_step(cmd, kube, tmp_path, s3)
    assert retry.returncode == 0, retry.stderr[-3000:]
    assert len(kube.created) == 1  # adopted: no second job
    assert marks == [True]  # while the adopted job was followed, its staging was the old one
    assert not stage.exists()  # removed once the step ended
    assert json.loads(retry.stdout.strip().splitlines()[-1])["metadata"]["nodes"] == 2


def test_the_step_passes_its_queue_to_the_job(tmp_path: Path, s3: S3Server) -> None:
    queue = "detpipe-gpu"
    cmd, _ = _step(tmp_path, "trainjob")
    cmd[-1] = json.dumps({**json.loads(cmd[-1]), "queue_name": queue, "queue_timeout_s": 0})
    kube = FakeKube([[condition("Complete", reason="JobsCompleted")]], on_create=_pods(s3, {}))
    with serve(kube, tmp_path / "kubeconfig"):
        done = _run_step(cmd, kube, tmp_path, s3)
    assert done.returncode == 0, done.stderr[-3000:]
    (manifest,) = kube.created
    assert manifest["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == queue
    assert manifest["spec"]["suspend"] is True
