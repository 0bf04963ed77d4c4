"""Static checks of everything under k8s/: Kubernetes schemas, kustomize wiring, security."""

from __future__ import annotations

import shutil
import subprocess
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
    refs = list(spec.get("resources", [])) + [p["path"] for p in spec.get("patches", []) if "path" in p]
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


def _kustomize(directory: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: the kustomize build is checked where it is")
    done = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _object(docs: list[dict], kind: str, name: str) -> dict:
    (obj,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return obj


@pytest.mark.parametrize(("overlay", "tls"), [("bundled", True), ("cluster", True), ("local", False)])
def test_the_store_is_reached_over_tls_except_in_local_development(overlay: str, tls: bool) -> None:
    docs = _kustomize(K8S / "overlays" / overlay)
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    config = _object(docs, "ConfigMap", "detpipe-config")["data"]
    assert config["DETPIPE_S3_SECURE"] == ("true" if tls else "false")
    if overlay == "cluster":
        return  # its own MinIO
    [minio] = _object(docs, "Deployment", "minio")["spec"]["template"]["spec"]["containers"]
    schemes = {minio[p]["httpGet"]["scheme"] for p in ("readinessProbe", "livenessProbe")}
    certs = {m["mountPath"] for m in minio.get("volumeMounts", [])} & {"/etc/minio/certs"}
    assert (schemes, bool(certs), "--certs-dir" in minio["args"]) == (
        ({"HTTPS"}, True, True) if tls else ({"HTTP"}, False, False)
    )


def test_minio_reads_the_tls_secret_as_its_certs_dir() -> None:
    docs = _docs(K8S / "minio" / "minio.yaml")
    pod = _object(docs, "Deployment", "minio")["spec"]["template"]["spec"]
    [minio] = pod["containers"]
    certs_dir = minio["args"][minio["args"].index("--certs-dir") + 1]
    mount = next(m for m in minio["volumeMounts"] if m["mountPath"] == certs_dir)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    sources = {next(iter(s)): s[next(iter(s))] for s in volume["projected"]["sources"]}
    # MinIO's file names; the Secret's are those of a kubernetes.io/tls Secret (cert-manager's)
    assert {i["key"]: i["path"] for i in sources["secret"]["items"]} == {
        "tls.crt": "public.crt",
        "tls.key": "private.key",
    }
    assert sources["configMap"] == {
        "name": "detpipe-store-ca",
        "items": [{"key": "ca.crt", "path": "CAs/ca.crt"}],
    }
    assert mount["readOnly"] is True


def test_no_edge_device_mounts_the_root_credentials() -> None:
    """The edge pods hold their node's own keys (detpipe edge enroll), never the Secret detpipe-minio."""
    for path in sorted((K8S / "edge").glob("*.yaml")):
        for doc in _docs(path):
            for pod in _pod_specs(doc):
                for volume in pod.get("volumes", []):
                    assert volume.get("secret", {}).get("secretName") != "detpipe-minio", path
                    for source in volume.get("projected", {}).get("sources", []):
                        assert source.get("secret", {}).get("name") != "detpipe-minio", path
                for c in pod["containers"]:
                    for e in c.get("env", []) + c.get("envFrom", []):
                        ref = e.get("valueFrom", {}).get("secretKeyRef") or e.get("secretRef") or {}
                        assert ref.get("name") != "detpipe-minio", path


def test_the_edge_server_listens_on_loopback_only_and_holds_no_keys() -> None:
    from detpipe.cli.main import get_args_parser

    (ds,) = _docs(K8S / "edge" / "edge-agent-daemonset.yaml")
    pod = ds["spec"]["template"]["spec"]
    assert not pod.get("hostNetwork")  # 127.0.0.1 is the pod's own loopback
    agent, serve = (next(c for c in pod["containers"] if c["name"] == n) for n in ("agent", "serve"))
    env = _docs(K8S / "edge" / "edge-config.yaml")[0]["data"]
    args = [a.replace("$(MODEL_FILE)", env["MODEL_FILE"]) for a in serve["args"]]
    served = get_args_parser().parse_args(args)
    assert served.host == "127.0.0.1" and "ports" not in serve
    for probe in ("readinessProbe", "livenessProbe"):
        assert f"http://127.0.0.1:{served.port}/" in serve[probe]["exec"]["command"][-1]
    assert "minio-credentials" not in {m["name"] for m in serve["volumeMounts"]}
    assert "minio-credentials" in {m["name"] for m in agent["volumeMounts"]}
    assert env["DETPIPE_S3_ENDPOINT"].startswith("https://")
