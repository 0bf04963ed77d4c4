"""apply / promote / rollback / status against recorded API objects, through the real kubernetes client.

The Rollout statuses are what the Argo Rollouts v1.9 controller writes at each point of a
canary (phase, message, step index, pause conditions, analysis run status); each is checked
against the vendored CRD, so a status the controller could not write fails here.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import config

from detpipe.cli.main import main
from detpipe.deploy import actions
from detpipe.deploy.cluster import ClusterError, Kube, object_path
from detpipe.deploy.config import CanaryConfig
from detpipe.deploy.render import render
from detpipe.errors import NotFound

from . import crd_schema
from .fake_kube import FakeKube, serve

URI = "s3://detpipe/models/yolov8n-coco/0.2.0"
NS, NAME = "detpipe", "detpipe-serve"
RO_PATH = object_path("Rollout", NS, NAME)
ROUTE_PATH = object_path("HTTPRoute", NS, NAME)
CANARY_DEP = object_path("Deployment", NS, f"{NAME}-canary")
STABLE_DEP = object_path("Deployment", NS, NAME)
T0 = "2026-12-01T20:00:00Z"
_COMMON = {
    "observedGeneration": "2",
    "stableRS": "6c9b7f5d8",
    "currentPodHash": "7d4f8c9b6",
    "replicas": 3,
    "updatedReplicas": 1,
    "readyReplicas": 3,
    "availableReplicas": 3,
    "selector": "app.kubernetes.io/name=detpipe-serve,detpipe.io/strategy=rollout",
}
# Rollout.status as the controller records it (argo-rollouts v1.9, pkg/apis/rollouts/v1alpha1/types.go).
STATUSES = {
    "paused-at-step": {
        **_COMMON,
        "phase": "Paused",
        "message": "CanaryPauseStep",
        "currentStepIndex": 1,
        "controllerPause": True,
        "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": T0}],
        "canary": {},
    },
    "analysing": {
        **_COMMON,
        "phase": "Progressing",
        "message": "more replicas need to be updated",
        "currentStepIndex": 2,
        "canary": {
            "currentStepAnalysisRunStatus": {"name": "detpipe-serve-7d4f8c9b6-2-2", "status": "Running"}
        },
    },
    "inconclusive": {
        **_COMMON,
        "phase": "Paused",
        "message": "InconclusiveAnalysisRun",
        "currentStepIndex": 2,
        "controllerPause": True,
        "pauseConditions": [{"reason": "InconclusiveAnalysisRun", "startTime": T0}],
        "canary": {
            "currentStepAnalysisRunStatus": {"name": "detpipe-serve-7d4f8c9b6-2-2", "status": "Inconclusive"}
        },
    },
    "aborted": {
        **_COMMON,
        "phase": "Degraded",
        "message": "RolloutAborted: Rollout aborted update to revision 2: "
        'Metric "error-rate" assessed Failed due to failed (2) > failureLimit (1)',
        "abort": True,
        "abortedAt": T0,
        "currentStepIndex": 0,
        "canary": {
            "currentStepAnalysisRunStatus": {
                "name": "detpipe-serve-7d4f8c9b6-2-2",
                "status": "Failed",
                "message": 'Metric "error-rate" assessed Failed due to failed (2) > failureLimit (1)',
            }
        },
    },
    "healthy": {
        **_COMMON,
        "phase": "Healthy",
        "stableRS": "7d4f8c9b6",
        "currentStepIndex": 6,
        "updatedReplicas": 3,
        "canary": {},
    },
}


def _rollout(status: str, *, paused: bool = False) -> dict:
    (ro,) = [d for d in render(CanaryConfig(URI)) if d["kind"] == "Rollout"]
    ro = copy.deepcopy(ro)
    ro["metadata"].update(uid="4b1c2d3e-0000-4000-8000-000000000001", generation=2, resourceVersion="81234")
    ro["spec"]["paused"] = paused
    ro["status"] = STATUSES[status]
    return ro


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[FakeKube, Kube, Path]]:
    kubeconfig = tmp_path / "kubeconfig"
    with serve(FakeKube(), kubeconfig) as kube:
        yield kube, Kube(config.new_client_from_config(config_file=str(kubeconfig))), kubeconfig


@pytest.mark.parametrize("status", STATUSES)
def test_recorded_statuses_are_valid_rollouts(status: str) -> None:
    crd_schema.validate(_rollout(status))


def _cli(kubeconfig: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``detpipe deploy ARGS --kubeconfig FILE`` in this process: (exit code, stdout, stderr)."""
    code = main(["deploy", *args, "--kubeconfig", str(kubeconfig)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_canary_server_side_applies_every_object_and_is_idempotent(cluster, capsys) -> None:
    kube, _, kubeconfig = cluster
    for _ in range(2):
        code, stdout, stderr = _cli(kubeconfig, capsys, "canary", "--model-uri", URI, "--shadow")
        assert code == 0, stderr
    docs = render(CanaryConfig(URI, min_agreement=0.9))
    patches = kube.patches()
    assert len(patches) == 2 * len(docs)
    for (path, content_type, body), doc in zip(patches, docs * 2, strict=True):
        assert path == object_path(doc["kind"], NS, doc["metadata"]["name"])
        assert content_type == "application/apply-patch+yaml"
        assert body == doc
    assert all(r.query == {"fieldManager": "detpipe", "force": "true"} for r in kube.requests)
    (rollout,) = [d for d in docs if d["kind"] == "Rollout"]
    assert kube.objects[RO_PATH] == rollout  # the second apply changed nothing
    assert stdout.splitlines()[-1] == "canary yolov8n-coco 0.2.0: rollout, steps 10,50,100"


@pytest.mark.parametrize(
    ("status", "paused", "expected"),
    [
        # promote.go getPatches, default branch, case by case
        ("paused-at-step", False, [("/status", {"status": {"pauseConditions": None}})]),
        (
            "paused-at-step",
            True,
            [("/status", {"status": {"pauseConditions": None}}), ("", {"spec": {"paused": False}})],
        ),
        ("analysing", False, [("/status", {"status": {"pauseConditions": None, "currentStepIndex": 3}})]),
        (
            "inconclusive",
            False,
            [
                (
                    "/status",
                    {"status": {"pauseConditions": None, "controllerPause": False, "currentStepIndex": 3}},
                )
            ],
        ),
    ],
)
def test_promote_sends_the_patches_of_kubectl_argo_rollouts(cluster, status, paused, expected) -> None:
    kube, client, _ = cluster
    kube.objects[RO_PATH] = _rollout(status, paused=paused)
    actions.promote_rollout(client, NS, NAME)
    assert kube.patches() == [(RO_PATH + sub, "application/merge-patch+json", body) for sub, body in expected]


def test_promote_without_status_subresource_sends_the_unified_patch(cluster) -> None:
    kube, client, _ = cluster
    kube.no_status_subresource = True
    kube.objects[RO_PATH] = _rollout("analysing")
    actions.promote_rollout(client, NS, NAME)
    unified = {"spec": {"paused": False}, "status": {"pauseConditions": None, "currentStepIndex": 3}}
    assert [(p, b) for p, _, b in kube.patches()] == [
        (RO_PATH + "/status", {"status": {"pauseConditions": None, "currentStepIndex": 3}}),
        (RO_PATH, unified),
    ]


def test_rollback_aborts_and_status_reports_it(cluster, capsys) -> None:
    kube, _, kubeconfig = cluster
    kube.objects[RO_PATH] = _rollout("analysing")
    code, stdout, stderr = _cli(kubeconfig, capsys, "rollback", "--json")
    assert code == 0, stderr
    assert kube.patches() == [
        (RO_PATH + "/status", "application/merge-patch+json", {"status": {"abort": True}})
    ]
    status = json.loads(stdout)
    assert (status["phase"], status["canary_weight"], status["canary_version"]) == ("Aborted", 0, "0.2.0")
    assert status["model_uri"] == URI


@pytest.mark.parametrize(
    ("status", "phase", "weight", "step"),
    [
        ("paused-at-step", "Paused", 10, "1/6"),
        ("analysing", "Progressing", 10, "2/6"),
        ("inconclusive", "Paused", 10, "2/6"),
        ("aborted", "Aborted", 0, "0/6"),
        ("healthy", "Healthy", 100, "6/6"),
    ],
)
def test_rollout_status(cluster, status, phase, weight, step) -> None:
    kube, client, _ = cluster
    kube.objects[RO_PATH] = _rollout(status)
    got = actions.rollout_status(client, NS, NAME)
    assert (got.phase, got.canary_weight, got.step) == (phase, weight, step)
    assert got.message == STATUSES[status].get("message", "")
    assert not kube.patches()


def _gateway_cluster(kube: FakeKube, canary_weight: int) -> None:
    cfg = CanaryConfig(URI, strategy="gateway", steps=(10, 50, 100))
    for doc in render(cfg):
        kube.objects[object_path(doc["kind"], NS, doc["metadata"]["name"])] = copy.deepcopy(doc)
    route = kube.objects[ROUTE_PATH]["spec"]["rules"][0]["backendRefs"]
    route[0]["weight"], route[1]["weight"] = 100 - canary_weight, canary_weight
    kube.objects[CANARY_DEP]["status"] = {"replicas": 2, "readyReplicas": 2}
    # k8s/serving's stable Deployment, running the previous release
    stable = CanaryConfig("s3://detpipe/models/yolov8n-coco/0.1.0", strategy="gateway", stable_model_uri=URI)
    (dep,) = [d for d in render(stable) if d["kind"] == "Deployment" and d["metadata"]["name"] == NAME]
    kube.objects[STABLE_DEP] = dep


def _weights(kube: FakeKube) -> list[int]:
    return [r["weight"] for r in kube.objects[ROUTE_PATH]["spec"]["rules"][0]["backendRefs"]]


def test_gateway_promote_walks_the_steps_then_makes_the_canary_stable(cluster) -> None:
    kube, client, _ = cluster
    _gateway_cluster(kube, 10)
    assert actions.gateway_status(client, NS, NAME).phase == "Paused"
    assert actions.promote_gateway(client, NS, NAME) == 50
    assert _weights(kube) == [50, 50]
    assert kube.patches()[-1][:2] == (ROUTE_PATH, "application/merge-patch+json")
    assert actions.promote_gateway(client, NS, NAME) == 0  # past 50 comes 100: full promotion
    stable = kube.objects[STABLE_DEP]["spec"]["template"]
    assert f"--model={URI}" in stable["spec"]["containers"][0]["args"]
    assert stable["metadata"]["labels"]["detpipe.io/model-version"] == "0.2.0"
    assert (
        stable["metadata"]["labels"]["detpipe.io/track"] == "stable"
    )  # still selected by the stable Service
    assert _weights(kube) == [100, 0]
    assert kube.objects[CANARY_DEP]["spec"]["replicas"] == 0
    kinds = [(p, t) for p, t, _ in kube.patches()[1:]]
    assert kinds == [
        (STABLE_DEP, "application/strategic-merge-patch+json"),
        (ROUTE_PATH, "application/merge-patch+json"),
        (CANARY_DEP, "application/merge-patch+json"),
    ]
    assert actions.gateway_status(client, NS, NAME).phase == "Stable"


def test_gateway_rollback(cluster, capsys) -> None:
    kube, _, kubeconfig = cluster
    _gateway_cluster(kube, 50)
    code, stdout, stderr = _cli(kubeconfig, capsys, "rollback", "--strategy", "gateway")
    assert code == 0, stderr
    assert _weights(kube) == [100, 0] and kube.objects[CANARY_DEP]["spec"]["replicas"] == 0
    assert "canary weight   0%" in stdout and "phase           Stable" in stdout


def test_api_errors_are_one_line(cluster, capsys) -> None:
    kube, client, kubeconfig = cluster
    kube.fail[RO_PATH] = (
        403,
        "Forbidden",
        'rollouts.argoproj.io "detpipe-serve" is forbidden: User "ci" cannot get',
    )
    with pytest.raises(ClusterError, match=r"403 Forbidden: rollouts\.argoproj\.io"):
        actions.rollout_status(client, NS, NAME)
    code, _, stderr = _cli(kubeconfig, capsys, "promote")
    assert code == 1
    (line,) = stderr.splitlines()
    assert line.startswith(
        "detpipe deploy: error: GET /apis/argoproj.io/v1alpha1/namespaces/detpipe/rollouts/"
    )
    with pytest.raises(NotFound):
        actions.gateway_status(client, NS, NAME)


def test_a_cluster_without_argo_rollouts_is_told_what_to_install(cluster, capsys) -> None:
    kube, _, kubeconfig = cluster
    missing = (404, "NotFound", "the server could not find the requested resource")
    for doc in render(CanaryConfig(URI)):
        if doc["apiVersion"].startswith("argoproj.io/"):
            kube.fail[object_path(doc["kind"], NS, doc["metadata"]["name"])] = missing
    code, _, stderr = _cli(kubeconfig, capsys, "canary", "--model-uri", URI)
    assert code == 3
    assert stderr.splitlines() == [
        "detpipe deploy: error: the cluster has no argoproj.io/v1alpha1 AnalysisTemplate API: "
        "install Argo Rollouts, or use --strategy gateway"
    ]
