"""Kueue: jobs submitted to a LocalQueue (label ``kueue.x-k8s.io/queue-name``, created suspended),
the watcher's waiting phase with its own ``--queue-timeout``, and a run timeout that counts
only the time admitted; against the operators' CRDs, an in-memory job and, end to end, the
CLI against the loopback Kubernetes API (:mod:`.fake_kube`, whose ``admit_after`` unsuspends
the job as Kueue's admission does) and a moto S3 server."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from store_servers import S3Server

from detpipe.errors import InvalidInput
from detpipe.train import pytorchjob, trainjob
from detpipe.train.config import build_config
from detpipe.train.jobwatch import (
    PYTORCHJOB,
    QUEUE_LABEL,
    TRAINJOB,
    JobKind,
    JobTimeout,
    Phase,
    job_state,
    watch,
)

from .conftest import REPO, cli
from .crd_schema import errors
from .fake_kube import FakeKube, condition, serve

QUEUE = "detpipe-gpu"
CRDS = {
    "pytorchjob": ("kubeflow.org_pytorchjobs.yaml", "v1"),
    "trainjob": ("trainer.kubeflow.org_trainjobs.yaml", "v1alpha1"),
}
RENDER = {"pytorchjob": pytorchjob.render, "trainjob": trainjob.render}
KINDS = {"pytorchjob": PYTORCHJOB, "trainjob": TRAINJOB}

# What the Training Operator writes (pkg/controller.v1/common/job.go, release-1.9): Suspended
# True while spec.runPolicy.suspend, then Suspended False (Resumed) and Running.
PJ_SUSPENDED = [
    condition("Created", reason="PyTorchJobCreated"),
    condition("Suspended", reason="PyTorchJobSuspended"),
]
PJ_RESUMED = [
    condition("Created", reason="PyTorchJobCreated"),
    condition("Suspended", "False", reason="PyTorchJobResumed"),
    condition("Running", reason="PyTorchJobRunning"),
]
PJ_SUCCEEDED = [
    *PJ_RESUMED[:2],
    condition("Running", "False"),
    condition("Succeeded", reason="PyTorchJobSucceeded"),
]


def _cfg() -> Any:
    return build_config(
        "/data/coco/yolo/train2017_5_p.yaml",
        "yolo12n.yaml",
        "runs/yolo12n-5p",
        flags={"epochs": 600, "batch": 256},
        resume="s3://detpipe/train/yolo12n-5p",
    )


def _job(**kw: Any) -> pytorchjob.JobConfig:
    base = {
        "name": "train-yolo12n-5p",
        "image": "img:1",
        "nnodes": 4,
        "nproc_per_node": 4,
        "gpus_per_node": 4,
    }
    return pytorchjob.JobConfig(**{**base, **kw})


def _suspend_flag(manifest: dict[str, Any], kind: JobKind) -> Any:
    node: Any = manifest
    for key in kind.suspend:
        node = node.get(key, {}) if isinstance(node, dict) else {}
    return node if node != {} else None


def _pod_labels(manifest: dict[str, Any]) -> list[dict[str, str]]:
    spec = manifest["spec"]
    if "pytorchReplicaSpecs" in spec:
        return [r["template"]["metadata"]["labels"] for r in spec["pytorchReplicaSpecs"].values()]
    (patch,) = spec["runtimePatches"]
    (rjob,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    return [rjob["template"]["spec"]["template"]["metadata"]["labels"]]


@pytest.mark.parametrize("launcher", ["pytorchjob", "trainjob"])
def test_a_queued_job_is_labelled_and_created_suspended(launcher: str) -> None:
    kind = KINDS[launcher]
    queued = RENDER[launcher](_cfg(), _job(queue=QUEUE))
    assert queued["metadata"]["labels"][QUEUE_LABEL] == QUEUE
    assert _suspend_flag(queued, kind) is True
    assert all(QUEUE_LABEL not in labels for labels in _pod_labels(queued))  # Kueue reads the job's
    assert errors(queued, *CRDS[launcher]) == []
    plain = RENDER[launcher](_cfg(), _job())
    assert QUEUE_LABEL not in plain["metadata"]["labels"] and _suspend_flag(plain, kind) is None
    assert errors(plain, *CRDS[launcher]) == []
    # every job says which run and attempt it is
    labels = queued["metadata"]["labels"]
    assert (labels["detpipe.io/run"], labels["detpipe.io/attempt"]) == ("train-yolo12n-5p", "1")


@pytest.mark.parametrize("queue", ["Detpipe-GPU", "gpu_queue", "-gpu", "q" * 64, ""])
def test_a_queue_name_must_be_a_lowercase_dns_label(queue: str) -> None:
    with pytest.raises(InvalidInput, match="a LocalQueue name is a lowercase DNS label"):
        _job(queue=queue)


def _with(kind: JobKind, conditions: list[dict[str, str]], suspend: bool | None) -> dict[str, Any]:
    job: dict[str, Any] = {"metadata": {"labels": {QUEUE_LABEL: QUEUE}}, "spec": {}, "status": {}}
    if suspend is not None:
        node = job
        for key in kind.suspend[:-1]:
            node = node.setdefault(key, {})
        node[kind.suspend[-1]] = suspend
    job["status"]["conditions"] = conditions
    return job


def test_job_state_of_queued_and_admitted_jobs() -> None:
    queued = job_state(_with(PYTORCHJOB, [], True), PYTORCHJOB)
    assert (queued.phase, queued.reason, queued.waiting) == (Phase.QUEUED, f"queue {QUEUE}", True)
    assert job_state(_with(PYTORCHJOB, PJ_SUSPENDED, True), PYTORCHJOB).phase is Phase.QUEUED
    # admitted (Kueue unsuspended it), the operator not there yet: still waiting
    just_admitted = job_state(_with(PYTORCHJOB, PJ_SUSPENDED, False), PYTORCHJOB)
    assert (just_admitted.phase, just_admitted.waiting) == (Phase.SUSPENDED, True)
    running = job_state(_with(PYTORCHJOB, PJ_RESUMED, False), PYTORCHJOB)
    assert (running.phase, running.waiting) == (Phase.RUNNING, False)
    # a TrainJob: spec.suspend, and Trainer v2's Suspended condition
    assert job_state(_with(TRAINJOB, [condition("Suspended", reason="Suspended")], True), TRAINJOB).waiting
    assert not job_state(
        _with(TRAINJOB, [condition("Suspended", "False", reason="Resumed")], False), TRAINJOB
    ).waiting
    # the suspend flag of the other kind means nothing; a terminal condition wins over suspend
    assert job_state(_with(TRAINJOB, [], True), PYTORCHJOB).phase is Phase.PENDING
    failed = [condition("Failed", reason="DeadlineExceeded")]
    assert job_state(_with(TRAINJOB, failed, True), TRAINJOB).phase is Phase.FAILED


class QueuedJob:
    """A JobApi replaying (suspended, conditions) pairs; the last one repeats."""

    name = "train-q"
    kind = PYTORCHJOB

    def __init__(self, states: Sequence[tuple[bool, list[dict[str, str]]]]) -> None:
        self.states = list(states)
        self.deleted = self.gets = 0

    def get(self) -> dict[str, Any]:
        self.gets += 1
        suspend, conditions = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return _with(PYTORCHJOB, conditions, suspend)

    def delete(self) -> None:
        self.deleted += 1

    def logs(self) -> list[str]:
        return []


QUEUED, RUNNING, DONE = (True, PJ_SUSPENDED), (False, PJ_RESUMED), (False, PJ_SUCCEEDED)


def _watch(api: QueuedJob, **kw: Any) -> float:
    """Watch with a fake clock polling every 10 s; the fake time at the end."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    watch(api, poll_s=10, clock=lambda: now[0], sleep=sleep, emit=lambda _: None, **kw)
    return now[0]


def test_time_in_the_queue_does_not_count_against_the_run_timeout(caplog: pytest.LogCaptureFixture) -> None:
    api = QueuedJob([QUEUED] * 10 + [RUNNING, RUNNING, DONE])  # 100 s queued, 20 s running
    with caplog.at_level(logging.INFO, logger="detpipe.train.jobwatch"):
        end = _watch(api, timeout_s=30, queue_timeout_s=3600)
    assert end == 120 and api.deleted == 0
    messages = [r.getMessage() for r in caplog.records]
    assert f"PyTorchJob train-q: Queued (queue {QUEUE})" in messages
    assert "PyTorchJob train-q: admitted after 100 s waiting" in messages
    assert "PyTorchJob train-q: Running (PyTorchJobRunning)" in messages


def test_queue_timeout_deletes_a_job_never_admitted() -> None:
    api = QueuedJob([QUEUED])
    with pytest.raises(JobTimeout) as e:
        _watch(api, timeout_s=30, queue_timeout_s=50)
    assert (
        str(e.value)
        == f"PyTorchJob train-q waited 50 s (queue {QUEUE}) without being admitted and was deleted"
    )
    assert (api.deleted, api.gets) == (1, 6)  # polls at 0, 10, ..., 50
    # no queue timeout: it waits on (here until the run is given up another way)
    patient = QueuedJob([QUEUED] * 30 + [DONE])
    assert _watch(patient, timeout_s=30, queue_timeout_s=None) == 300 and patient.deleted == 0


def test_a_preempted_job_waits_afresh_and_keeps_the_time_it_ran() -> None:
    # running 0-30 s, preempted (suspended again) 30-70 s, running again from 70 s
    shape = [RUNNING] * 3 + [QUEUED] * 4 + [RUNNING] * 10
    api = QueuedJob(shape)
    with pytest.raises(JobTimeout, match="timed out after 45 s"):
        _watch(api, timeout_s=45, queue_timeout_s=50)
    assert api.gets == 10  # t = 90: 30 s before the preemption + 20 s after it >= 45
    impatient = QueuedJob(shape)
    with pytest.raises(JobTimeout, match="waited 30 s"):
        _watch(impatient, timeout_s=45, queue_timeout_s=30)
    assert impatient.gets == 7  # t = 60: the second wait began at 30 s


# -- end to end: the CLI, the kubernetes client, the loopback API, S3 ---------------------------

JOB = "train-yolo12n-kq"


def _args(tmp_path: Path, launcher: str, uri: str, *extra: str) -> list[str]:
    return [
        "train", "--data", "/data/yolo/train2017_5_p.yaml", "--model", "yolo12n.yaml",
        "--out", str(tmp_path / "run"), "--epochs", "2", "--batch", "16", "--launcher", launcher,
        "--nnodes", "2", "--nproc-per-node", "2", "--image", "img:1", "--job-name", JOB,
        "--resume", uri, "--poll", "1", "--queue", QUEUE, *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("launcher", ["pytorchjob", "trainjob"])
def test_cli_queued_job_waits_for_admission_then_runs(tmp_path: Path, s3: S3Server, launcher: str) -> None:
    uri = f"s3://detpipe-test/train/kq-{launcher}"
    summary = {"model": "yolo12n", "best_map5095": 0.2, "best_epoch": 2, "last_epoch": 2}
    s3.store(uri).put_bytes("train_summary.json", json.dumps(summary).encode())
    if launcher == "pytorchjob":
        waiting, done = PJ_SUSPENDED, PJ_SUCCEEDED
    else:
        waiting = [condition("Suspended", reason="Suspended")]
        done = [
            condition("Suspended", "False", reason="Resumed"),
            condition("Complete", reason="JobsCompleted"),
        ]
    # queued for 4 polls (about 4 s, twice --timeout), admitted at the 5th, which finds it done
    kube = FakeKube([waiting] * 4 + [done], admit_after=4)
    with serve(kube, tmp_path / "kubeconfig"):
        done_run = cli(
            *_args(tmp_path, launcher, uri, "--timeout", "2"),
            env={**s3.env, "KUBECONFIG": str(tmp_path / "kubeconfig")},
        )
    assert done_run.returncode == 0, done_run.stderr[-3000:]
    (manifest,) = kube.created
    assert manifest["metadata"]["labels"][QUEUE_LABEL] == QUEUE
    assert _suspend_flag(manifest, KINDS[launcher]) is True
    assert errors(manifest, *CRDS[launcher]) == []
    kind = KINDS[launcher].kind
    assert f"{kind} {JOB}: Queued (queue {QUEUE})" in done_run.stderr
    assert f"{kind} {JOB}: admitted after" in done_run.stderr
    assert json.loads(done_run.stdout) == summary and kube.deleted == []


def test_cli_queue_timeout_deletes_the_job_and_exits_1(tmp_path: Path, s3: S3Server) -> None:
    kube = FakeKube([PJ_SUSPENDED])
    with serve(kube, tmp_path / "kubeconfig"):
        done = cli(
            *_args(tmp_path, "pytorchjob", "s3://detpipe-test/train/kq-never", "--queue-timeout", "2"),
            env={**s3.env, "KUBECONFIG": str(tmp_path / "kubeconfig")},
        )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"detpipe train: error: PyTorchJob {JOB} waited 2 s (queue {QUEUE}) without being admitted "
        "and was deleted"
    )
    assert kube.deleted == [JOB]


def test_cli_queue_flags_are_checked(tmp_path: Path) -> None:
    dry = cli(*_args(tmp_path, "trainjob", "s3://b/p", "--dry-run"))
    assert dry.returncode == 0, dry.stderr
    manifest = yaml.safe_load(dry.stdout)
    assert manifest["spec"]["suspend"] is True and manifest["metadata"]["labels"][QUEUE_LABEL] == QUEUE
    bad = cli(*_args(tmp_path, "trainjob", "s3://b/p", "--dry-run"), "--queue", "GPU")  # the last one counts
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "detpipe train: error: --queue GPU: a LocalQueue name is a lowercase DNS label of at most 63 "
        "characters"
    ]
    local = cli(
        "train", "--data", "d.yaml", "--model", "yolo12n.yaml", "--out", str(tmp_path / "o"), "--queue", QUEUE
    )
    assert local.returncode == 2
    assert local.stderr.strip().splitlines() == [
        "detpipe train: error: --queue needs --launcher pytorchjob or trainjob (Kueue queues cluster jobs)"
    ]
    negative = cli(*_args(tmp_path, "trainjob", "s3://b/p", "--queue-timeout", "-1", "--dry-run"))
    assert negative.returncode == 2 and "--queue-timeout" in negative.stderr


# -- k8s/kueue: the queue the jobs name, against Kueue's own CRDs -------------------------------

KUEUE = REPO / "k8s" / "kueue"
KUEUE_CRDS = {
    "ResourceFlavor": "kueue.x-k8s.io_resourceflavors.yaml",
    "ClusterQueue": "kueue.x-k8s.io_clusterqueues.yaml",
    "LocalQueue": "kueue.x-k8s.io_localqueues.yaml",
}
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _kueue_objects() -> dict[str, dict[str, Any]]:
    kustomization = yaml.safe_load((KUEUE / "kustomization.yaml").read_text())
    docs = [d for f in kustomization["resources"] for d in yaml.safe_load_all((KUEUE / f).read_text()) if d]
    assert sorted(f.name for f in KUEUE.glob("*.yaml") if f.name != "kustomization.yaml") == sorted(
        kustomization["resources"]
    )
    objects = {d["kind"]: d for d in docs}
    assert len(objects) == len(docs) == 3
    return objects


def _quantity(text: str | int) -> float:
    text = str(text)
    for unit, factor in _UNITS.items():
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


@pytest.mark.parametrize("kind", KUEUE_CRDS)
def test_kueue_manifests_match_kueues_crds(kind: str) -> None:
    obj = _kueue_objects()[kind]
    assert obj["apiVersion"] == "kueue.x-k8s.io/v1beta2"
    assert errors(obj, KUEUE_CRDS[kind], "v1beta2") == []
    # the same objects as v1beta1 for Kueue 0.13/0.14 (before v1beta2)
    assert errors({**obj, "apiVersion": "kueue.x-k8s.io/v1beta1"}, KUEUE_CRDS[kind], "v1beta1") == []


def test_the_schemas_refuse_what_kueue_would_refuse() -> None:
    cq = copy.deepcopy(_kueue_objects()["ClusterQueue"])
    first = cq["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]
    first["nominalquota"] = first.pop("nominalQuota")
    cq["spec"]["cohort"] = "research"  # v1beta1's name; v1beta2 says cohortName
    assert errors(cq, KUEUE_CRDS["ClusterQueue"], "v1beta2") == [
        "spec/resourceGroups/0/flavors/0/resources/0: 'nominalQuota' is a required property",
        "spec/resourceGroups/0/flavors/0/resources/0: Additional properties are not allowed "
        "('nominalquota' was unexpected)",
        "spec: Additional properties are not allowed ('cohort' was unexpected)",
    ]


@pytest.mark.parametrize("launcher", ["pytorchjob", "trainjob"])
def test_the_studys_4x4_job_fits_the_cluster_queue_once(launcher: str) -> None:
    objects = _kueue_objects()
    local, cluster, flavor = objects["LocalQueue"], objects["ClusterQueue"], objects["ResourceFlavor"]
    assert local["metadata"] == {"name": QUEUE, "namespace": "detpipe"}  # what --queue names in the docs
    assert local["spec"]["clusterQueue"] == cluster["metadata"]["name"]
    assert cluster["spec"]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "detpipe"}
    (group,) = cluster["spec"]["resourceGroups"]
    (quota,) = group["flavors"]
    assert quota["name"] == flavor["metadata"]["name"]
    # Kueue's webhook (pkg/webhooks/clusterqueue_webhook.go): the quotas name the covered resources
    # in their order (the CRD's CEL rules, which jsonschema does not run, check the count)
    assert [r["name"] for r in quota["resources"]] == group["coveredResources"]
    nominal = {r["name"]: _quantity(r["nominalQuota"]) for r in quota["resources"]}
    # what the launcher's default 4 x 4 job requests, summed over its pods
    job = pytorchjob.JobConfig(name="train-x", image="img:1", nnodes=4, nproc_per_node=4, gpus_per_node=4)
    manifest = RENDER[launcher](_cfg(), replace(job, queue=QUEUE))
    if launcher == "pytorchjob":
        pods = [
            (r["replicas"], r["template"]["spec"]["containers"][0]["resources"]["requests"])
            for r in manifest["spec"]["pytorchReplicaSpecs"].values()
        ]
        tolerations = manifest["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["tolerations"]
    else:
        pods = [
            (
                manifest["spec"]["trainer"]["numNodes"],
                manifest["spec"]["trainer"]["resourcesPerNode"]["requests"],
            )
        ]
        (patch,) = manifest["spec"]["runtimePatches"]
        (rjob,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
        tolerations = rjob["template"]["spec"]["template"]["spec"]["tolerations"]
    wanted: dict[str, float] = {}
    for count, requests in pods:
        for name, value in requests.items():
            wanted[name] = wanted.get(name, 0.0) + count * _quantity(value)
    assert set(wanted) <= set(group["coveredResources"])  # else Kueue never admits it
    assert all(wanted[r] <= nominal[r] for r in wanted), (wanted, nominal)
    assert wanted["nvidia.com/gpu"] == nominal["nvidia.com/gpu"] == 16  # one such job at a time
    # the flavor's taint is tolerated by the pods (Kueue checks it before admitting)
    for taint in flavor["spec"]["nodeTaints"]:
        assert any(t["key"] == taint["key"] and t["effect"] == taint["effect"] for t in tolerations)
