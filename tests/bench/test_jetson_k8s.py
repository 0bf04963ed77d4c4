"""Static checks of the Jetson benchmark Job (k8s/jetson/) and docker/Dockerfile.jetson."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from detpipe.cli.main import get_args_parser

ROOT = Path(__file__).resolve().parents[2]
JETSON = ROOT / "k8s" / "jetson"
DOCKERFILE = ROOT / "docker" / "Dockerfile.jetson"
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())  # oldest supported, newest shipped


def _docs() -> dict[str, dict]:
    out = {}
    for path in sorted(JETSON.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            out[doc["kind"]] = doc
    return out


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_match_kubernetes_schema(version):
    docs = _docs()
    assert set(docs) == {"Job", "ConfigMap", "PersistentVolumeClaim"}
    for doc in docs.values():
        kubernetes_validate.validate(doc, version, strict=True)


def test_kustomization_lists_every_manifest():
    spec = yaml.safe_load((JETSON / "kustomization.yaml").read_text())
    listed = set(spec["resources"])
    assert listed == {p.name for p in JETSON.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert spec["namespace"] == "detpipe"


def _pod() -> dict:
    return _docs()["Job"]["spec"]["template"]["spec"]


def test_job_targets_jetson_nodes_with_the_nvidia_runtime():
    pod = _pod()
    assert pod["nodeSelector"]["kubernetes.io/arch"] == "arm64"
    assert pod["nodeSelector"]["detpipe.io/jetson"] == "true"
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["restartPolicy"] == "Never"
    for c in pod["initContainers"] + pod["containers"]:
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_job_is_non_root_and_locked_down():
    pod = _pod()
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    for c in pod["initContainers"] + pod["containers"]:
        ctx = c["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False and ctx["readOnlyRootFilesystem"] is True
        assert ctx["capabilities"]["drop"] == ["ALL"]
    host_paths = [v for v in pod["volumes"] if "hostPath" in v]
    mounts = {m["name"]: m for c in pod["containers"] for m in c["volumeMounts"]}
    assert all(mounts[v["name"]]["readOnly"] for v in host_paths)  # board tools only, read-only


def _expand(args: list[str], env: dict[str, str]) -> list[str]:
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in args]


def test_engine_is_built_on_the_device_before_the_benchmark(monkeypatch):
    monkeypatch.setattr("detpipe.cli.export.existing_file", Path)  # the files live on the device volume
    docs = _docs()
    env = {**docs["ConfigMap"]["data"], "NODE_NAME": "orin-01"}
    pod = _pod()
    (build,) = pod["initContainers"]
    (bench,) = pod["containers"]
    parser = get_args_parser()
    export = parser.parse_args(_expand(build["args"], env))  # the real CLI accepts the Job's arguments
    assert export.command == "export" and export.formats == ["engine-fp16"]
    assert str(export.out) == "/results/orin-01/export"
    assert export.imgsz == (640, 640) and export.calib.name == "train2017_5_p.txt"
    timed = parser.parse_args(_expand(bench["args"], env))
    assert timed.command == "bench"
    assert [str(m) for m in timed.model] == [str(export.out)]  # times the engine just built
    assert (
        str(timed.out) == "/results/orin-01/bench.json" and timed.iters == 500 and timed.warmup_seconds == 10
    )
    assert build["command"] == bench["command"] == ["detpipe"]
    assert build["image"] == bench["image"]


def test_dockerfile_uses_pinned_l4t_base():  # hadolint, non-root, no secrets: tests/docker
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG L4T_JETPACK=r36\.\d+\.\d+$", text, flags=re.MULTILINE)
    assert all(
        f.startswith("nvcr.io/nvidia/l4t-jetpack:${L4T_JETPACK}")
        for f in re.findall(r"^FROM (\S+)", text, re.M)
    )
    assert '"./[jetson]"' in text  # installs detpipe with its pins (pyproject.toml) and the jetson extra
    assert '"cuda-python==12.6.2.post1"' in (ROOT / "pyproject.toml").read_text()
