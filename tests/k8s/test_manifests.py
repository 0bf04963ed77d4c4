"""Static checks of everything under k8s/: Kubernetes schemas, kustomize wiring, security."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "k8s"
K8S_VERSION = "1.30.0"  # the oldest Kubernetes the manifests must apply to
CRD_GROUPS = ("kubeflow.org/", "argoproj.io/", "serving.kserve.io/", "gateway.networking.k8s.io/")


def _manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_matches_kubernetes_schema(path):
    docs = _docs(path)
    assert docs, f"{path} holds no objects"
    for doc in docs:
        if doc["apiVersion"].startswith(CRD_GROUPS):
            continue  # custom resources are checked against their projects' models elsewhere
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    "kustomization", sorted(K8S.rglob("kustomization.yaml")), ids=lambda p: str(p.parent.relative_to(K8S))
)
def test_kustomization_references_exist(kustomization):
    spec = yaml.safe_load(kustomization.read_text())
    assert spec["kind"] == "Kustomization"
    refs = list(spec.get("resources", [])) + [p["path"] for p in spec.get("patches", [])]
    assert refs
    for ref in refs:
        target = kustomization.parent / ref
        assert target.is_file() or (target / "kustomization.yaml").is_file(), f"{kustomization}: {ref}"


def _pod_specs(doc: dict) -> list[dict]:
    kind = doc.get("kind")
    if kind == "Pod":
        return [doc["spec"]]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        return [doc["spec"]["template"]["spec"]]
    if kind == "CronJob":
        return [doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    return []


@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_workloads_run_as_non_root(path):
    for doc in _docs(path):
        for pod in _pod_specs(doc):
            pod_ctx = pod.get("securityContext", {})
            for c in pod.get("initContainers", []) + pod["containers"]:
                ctx = {**pod_ctx, **c.get("securityContext", {})}
                assert ctx.get("runAsNonRoot") is True or ctx.get("runAsUser", 0) != 0, (
                    f"{path}: container {c['name']} may run as root"
                )
                assert ctx.get("allowPrivilegeEscalation") is False, f"{path}: {c['name']}"


def test_secrets_are_templates_without_keys():
    for path in _manifest_files():
        for doc in _docs(path):
            if doc["kind"] != "Secret":
                continue
            assert path.parent.name == "secrets", f"{path}: real Secrets do not belong in git"
            values = {**doc.get("stringData", {}), **doc.get("data", {})}
            assert values and all(v.startswith("<") and v.endswith(">") for v in values.values()), path
