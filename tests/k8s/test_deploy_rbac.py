"""k8s/serving/deploy-rbac.yaml grants what ``detpipe deploy`` calls (derived from the code, not listed)."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import config

from detpipe.deploy import actions
from detpipe.deploy.cluster import KINDS, Kube
from detpipe.deploy.config import CanaryConfig
from detpipe.deploy.render import render

ROOT = Path(__file__).resolve().parents[2]
VERB = {"GET": "get", "PATCH": "patch"}


def _granted() -> set[tuple[str, str, str]]:
    role, binding = yaml.safe_load_all((ROOT / "k8s/serving/deploy-rbac.yaml").read_text())
    base = list(yaml.safe_load_all((ROOT / "k8s/base/rbac.yaml").read_text()))
    accounts = {
        (d["metadata"]["name"], d["metadata"]["namespace"]) for d in base if d["kind"] == "ServiceAccount"
    }
    assert {(s["name"], s["namespace"]) for s in binding["subjects"]} <= accounts
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    return {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def _resource(path: str) -> tuple[str, str]:
    """``/apis/argoproj.io/v1alpha1/namespaces/ns/rollouts/x/status`` -> (argoproj.io, rollouts/status)."""
    parts = path.strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[parts.index("namespaces") + 2 :]
    return group, "/".join([rest[0], *rest[2:]])


def test_role_covers_apply_of_every_rendered_kind() -> None:
    granted = _granted()
    for strategy in ("rollout", "gateway"):
        cfg = CanaryConfig(
            "s3://detpipe/models/m/1", strategy=strategy, stable_model_uri="s3://detpipe/models/m/0"
        )
        for doc in render(cfg):
            prefix, plural = KINDS[doc["kind"]]
            group = "" if prefix == "/api/v1" else prefix.split("/")[2]
            for verb in ("create", "patch"):  # server-side apply creates or patches
                assert (group, plural, verb) in granted, (doc["kind"], verb)


def test_role_covers_every_call_of_promote_rollback_status(tmp_path: Path) -> None:
    """Run each action against the recorded cluster and check each request's verb and resource."""
    from deploy.fake_kube import FakeKube, serve
    from deploy.test_cluster import RO_PATH, ROUTE_PATH, _gateway_cluster, _rollout

    granted = _granted()
    kube = FakeKube()
    with serve(kube, tmp_path / "kubeconfig"):
        client = Kube(config.new_client_from_config(config_file=str(tmp_path / "kubeconfig")))
        kube.objects[RO_PATH] = _rollout("paused-at-step")
        actions.promote_rollout(client, "detpipe", "detpipe-serve")
        actions.abort_rollout(client, "detpipe", "detpipe-serve")
        actions.rollout_status(client, "detpipe", "detpipe-serve")
        _gateway_cluster(kube, 10)
        for _ in range(2):
            actions.promote_gateway(client, "detpipe", "detpipe-serve")
        actions.rollback_gateway(client, "detpipe", "detpipe-serve")
        actions.gateway_status(client, "detpipe", "detpipe-serve")
    assert ROUTE_PATH in kube.objects
    used = {(*_resource(r.path), VERB[r.method]) for r in kube.requests}
    assert ("argoproj.io", "rollouts/status", "patch") in used
    assert used <= granted, used - granted
