"""The edge rollout controller's CronJob (k8s/edge/controller): schemas and the kustomize build,
the schedule's guards, its command line through the real CLI parser (and the header's overlay
patch), the signing keys (read-only files, never root.pem), no secret value in the manifest,
Pod Security `restricted`, and the container's command and environment run for real against a
moto S3 server, as the pod would run them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from store_servers import ACCESS_KEY, SECRET_KEY
from test_manifests import K8S, K8S_VERSION, _kustomize, pod_security_violations

from detpipe.cli.main import get_args_parser
from detpipe.deploy.objects import STORE_CA_CONFIGMAP, STORE_CA_DIR
from detpipe.images import TRAIN_IMAGE
from detpipe.pipelines.settings import PipelineSettings

CONTROLLER = K8S / "edge" / "controller"
MANIFEST = CONTROLLER / "rollout-cronjob.yaml"
ONLINE_KEYS = {"targets.pem", "snapshot.pem", "timestamp.pem", "root.json"}


def _docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def _cronjob() -> dict[str, Any]:
    (cj,) = [d for d in _docs() if d["kind"] == "CronJob"]
    return cj


def _pod() -> dict[str, Any]:
    return _cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _container() -> dict[str, Any]:
    (c,) = _pod()["containers"]
    return c


def _mount(name: str) -> dict[str, Any]:
    (m,) = [m for m in _container()["volumeMounts"] if m["name"] == name]
    return m


def _volume(name: str) -> dict[str, Any]:
    (v,) = [v for v in _pod()["volumes"] if v["name"] == name]
    return v


def _parse(args: list[str], keys_dir: Path) -> Any:
    """``args`` through the real CLI parser; the keys mount (absent here) replaced by ``keys_dir``."""
    mount = _mount("edge-keys")["mountPath"]
    assert f"--keys={mount}" in args
    return get_args_parser().parse_args([a.replace(mount, str(keys_dir)) for a in args])


def _interval_s() -> int:
    m = re.fullmatch(r"\*/(\d+) \* \* \* \*", _cronjob()["spec"]["schedule"])
    assert m, "every N minutes"
    return int(m.group(1)) * 60


def test_the_manifests_match_the_schemas_and_build_into_namespace_detpipe() -> None:
    for doc in _docs():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    docs = _kustomize(CONTROLLER)
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    # next to the publisher's Secrets, not among the devices (detpipe-edge holds no Secret)
    assert {(d["kind"], d["metadata"]["namespace"]) for d in docs} == {
        ("ServiceAccount", "detpipe"),
        ("CronJob", "detpipe"),
    }
    (cj,) = [d for d in docs if d["kind"] == "CronJob"]
    (container,) = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == TRAIN_IMAGE  # the image every pipeline step runs in
    (image,) = yaml.safe_load((CONTROLLER / "kustomization.yaml").read_text())["images"]
    assert f"{image['newName']}:{image['newTag']}" == TRAIN_IMAGE
    edge = yaml.safe_load((K8S / "edge" / "kustomization.yaml").read_text())["resources"]
    assert not any("controller" in r or "rollout" in r for r in edge)


def test_one_cycle_per_schedule_and_a_failed_cycle_waits_for_the_next() -> None:
    spec = _cronjob()["spec"]
    job = spec["jobTemplate"]["spec"]
    interval = _interval_s()
    assert spec["concurrencyPolicy"] == "Forbid"
    assert 0 < spec["startingDeadlineSeconds"] < interval  # a missed start is skipped, not queued
    assert job["backoffLimit"] == 0  # exit 4 (aborted) or 5 (store) stays a failed Job
    assert 0 < job["activeDeadlineSeconds"] < interval  # a hung cycle ends before the next one
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    assert job["template"]["spec"]["restartPolicy"] == "Never"


def test_the_command_line_parses_with_the_cli(tmp_path: Path) -> None:
    container = _container()
    assert container["command"] == ["detpipe"]  # docker/Dockerfile.train's entry point
    assert 'ENTRYPOINT ["detpipe"]' in (K8S.parent / "docker" / "Dockerfile.train").read_text()
    ns = _parse(container["args"], tmp_path)
    assert (ns.command, ns.edge_command, ns.action) == ("edge", "rollout", None)
    assert ns.once and ns.interval is None  # one cycle per Job
    assert ns.json is None  # the root filesystem is read-only
    assert ns.store.startswith("s3://") and ns.keys == tmp_path
    assert ns.steps[-1] == 100 and ns.version and ns.device_class
    # the lease outlives a run (activeDeadlineSeconds) and is gone by the next schedule
    deadline = timedelta(seconds=_cronjob()["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"])
    assert deadline <= ns.lock_ttl <= timedelta(seconds=_interval_s())


def test_the_headers_overlay_patch_builds_and_parses(tmp_path: Path) -> None:
    """The kustomize patch the header shows for setting a rollout is one that works."""
    lines = MANIFEST.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#   resources:"))
    block = []
    for line in lines[start:]:
        if not line.startswith("#   "):
            break
        block.append(line[4:])
    overlay = yaml.safe_load("\n".join(block))
    assert overlay["resources"] == ["../../edge/controller"]  # an overlay in k8s/overlays/NAME
    (tmp_path / "edge").symlink_to(K8S / "edge")  # k8s/ as seen from such an overlay
    root = tmp_path / "overlays" / "orin-rollout"
    root.mkdir(parents=True)
    (root / "kustomization.yaml").write_text(
        yaml.safe_dump({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", **overlay})
    )
    (cj,) = [d for d in _kustomize(root) if d["kind"] == "CronJob"]
    (container,) = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    ns = _parse(container["args"], tmp_path)
    assert (ns.version, ns.steps, ns.min_reports, ns.once) == ("0.2.0", (5, 25, 100), 10, True)


def test_the_keys_are_the_online_keys_mounted_read_only_never_root_pem() -> None:
    settings = PipelineSettings()
    secret = _volume("edge-keys")["secret"]
    assert secret["secretName"] == settings.edge_keys_secret == "detpipe-edge-keys"
    assert {i["key"] for i in secret["items"]} == {i["path"] for i in secret["items"]} == ONLINE_KEYS
    assert secret["defaultMode"] & 0o007 == 0  # no access for others
    mount = _mount("edge-keys")
    assert mount["readOnly"] is True and mount["mountPath"] == settings.edge_keys_mount
    assert "root.pem" not in json.dumps(_docs())  # only comments name it
    secrets = [v for v in _pod()["volumes"] if "secret" in v or "projected" in v]
    assert secrets == [_volume("edge-keys")]  # the one Secret volume


def test_no_secret_value_is_in_the_manifest() -> None:
    settings = PipelineSettings()
    assert all(d["kind"] != "Secret" for d in _docs())
    assert "-----BEGIN" not in MANIFEST.read_text()
    container = _container()
    refs = {}
    for e in container["env"]:
        if "valueFrom" in e:
            ref = e["valueFrom"]["secretKeyRef"]
            refs[e["name"]] = (ref["name"], ref["key"])
        else:  # a literal: a path or a setting, never a credential
            assert not re.search(r"KEY_ID|SECRET|TOKEN|PASSWORD", e["name"]), e
    assert refs == {
        "AWS_ACCESS_KEY_ID": (settings.minio_secret, "accesskey"),
        "AWS_SECRET_ACCESS_KEY": (settings.minio_secret, "secretkey"),
    }
    assert container["envFrom"] == [{"configMapRef": {"name": settings.config_map}}]


def test_the_store_ca_is_the_optional_configmap() -> None:
    ca = _volume("store-ca")["configMap"]
    assert ca == {"name": STORE_CA_CONFIGMAP, "optional": True}
    assert _mount("store-ca") == {"name": "store-ca", "mountPath": STORE_CA_DIR, "readOnly": True}
    env = {e["name"]: e.get("value") for e in _container()["env"]}
    assert env["DETPIPE_S3_CA_BUNDLE"] == f"{STORE_CA_DIR}/ca.crt"


def test_the_pod_meets_restricted_with_no_service_account_token() -> None:
    pod, container = _pod(), _container()
    assert pod_security_violations(pod, "restricted") == []
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True and ctx["capabilities"]["drop"] == ["ALL"]
    (sa,) = [d for d in _docs() if d["kind"] == "ServiceAccount"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert sa["automountServiceAccountToken"] is False and pod["automountServiceAccountToken"] is False
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]


def _pod_env(endpoint: str) -> dict[str, str]:
    """The container's environment, its Secret and ConfigMap references resolved against test
    stand-ins: ``detpipe-minio`` holds the moto keys, ``detpipe-config`` points at the server."""
    settings = PipelineSettings()
    secrets = {settings.minio_secret: {"accesskey": ACCESS_KEY, "secretkey": SECRET_KEY}}
    config_maps = {settings.config_map: {"DETPIPE_S3_ENDPOINT": endpoint, "DETPIPE_S3_SECURE": "false"}}
    container = _container()
    env: dict[str, str] = {}
    for source in container["envFrom"]:
        env.update(config_maps[source["configMapRef"]["name"]])
    for e in container["env"]:
        if "valueFrom" in e:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            env[e["name"]] = e["value"]
    return env


def test_the_pods_command_and_environment_run_a_cycle_against_s3(tmp_path: Path, s3) -> None:
    """The args as they are, but for --store (a bucket of this test's own on the session's moto
    server) and --keys (a fleet's keys here): one cycle starts the rollout, the next holds."""
    from detpipe.edge.controller import read_state
    from detpipe.edge.keys import keygen
    from detpipe.edge.publish import PublishConfig, publish_version
    from detpipe.store import S3Config, open_store

    container = _container()
    keys = tmp_path / "ota-keys"
    keygen(keys)
    cfg = _parse(container["args"], keys)
    uri = f"s3://detpipe-rollout-cronjob/{tmp_path.name}"
    args = [f"--store={uri}" if a.startswith("--store=") else a for a in container["args"]]
    store = open_store(uri, s3=S3Config.from_env(s3.env), create_bucket=True)
    (tmp_path / "model.onnx").write_bytes(b"an onnx model's bytes")
    publish_version(
        store,
        PublishConfig(cfg.device_class, cfg.version, tmp_path / "model.onnx", "onnx", keys, rollout_pct=0),
    )
    detpipe = Path(sys.executable).parent / container["command"][0]  # the console script
    env = {"PATH": str(Path(sys.executable).parent), **_pod_env(f"http://{s3.endpoint}")}
    cmd = [str(detpipe), *(a.replace(_mount("edge-keys")["mountPath"], str(keys)) for a in args)]
    outs = [subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env) for _ in range(2)]
    for done in outs:
        assert done.returncode == 0, done.stderr
    assert "start" in outs[0].stdout and "hold" in outs[1].stdout, [o.stdout for o in outs]
    doc = read_state(store, cfg.device_class, cfg.version)
    assert (doc["status"], doc["pct"], doc["steps"]) == ("progressing", cfg.steps[0], list(cfg.steps))
    assert (doc["min_reports"], doc["bake_s"]) == (cfg.min_reports, int(cfg.bake.total_seconds()))
