"""k8s/serving against the code it deploys: CLI arguments, routes, image, port, shutdown timing."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from detpipe.cli.main import get_args_parser
from detpipe.images import SERVE_IMAGE

ROOT = Path(__file__).resolve().parents[2]
SERVING = ROOT / "k8s" / "serving"


def _doc(name: str) -> dict:
    return yaml.safe_load((SERVING / name).read_text())


def _container() -> dict:
    [container] = _doc("serve-deployment.yaml")["spec"]["template"]["spec"]["containers"]
    return container


def _expand(arg: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg)


def test_container_args_parse_with_detpipe_serve():
    env = {
        **_doc("serve-config.yaml")["data"],
        **yaml.safe_load((ROOT / "k8s/base/config.yaml").read_text())["data"],
    }
    container = _container()
    assert {r["configMapRef"]["name"] for r in container["envFrom"]} == {"detpipe-config", "detpipe-serve"}
    args = [_expand(a, env) for a in container["args"]]
    # the image's ENTRYPOINT is `detpipe serve --host 0.0.0.0 --port 8080`
    entry = re.search(r"^ENTRYPOINT (.+)$", (ROOT / "docker/Dockerfile.serve").read_text(), re.M).group(1)
    entrypoint = yaml.safe_load(entry)
    assert entrypoint[:2] == ["detpipe", "serve"]
    ns = get_args_parser().parse_args([*entrypoint[1:], *args])
    assert (ns.host, ns.port) == ("0.0.0.0", 8080)
    assert ns.model == env["MODEL_URI"] and ns.model.startswith("s3://")
    assert ns.format == env["MODEL_FORMAT"]
    assert container["ports"] == [{"name": "http", "containerPort": ns.port}]
    assert f"EXPOSE {ns.port}" in (ROOT / "docker/Dockerfile.serve").read_text()


def test_probes_hit_the_servers_routes(pico_onnx):
    from detpipe.serving.app import create_app
    from detpipe.serving.config import ServerConfig
    from detpipe.serving.dataplane import DataPlane
    from detpipe.serving.model import load_model

    cfg = ServerConfig(model=str(pico_onnx))
    routes = {r.path for r in create_app(DataPlane(load_model(cfg), cfg)).routes}
    container = _container()
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in routes
    annotations = _doc("serve-deployment.yaml")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in routes
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # 503 while draining


def test_shutdown_fits_in_the_grace_period():
    pod = _doc("serve-deployment.yaml")["spec"]["template"]["spec"]
    container = _container()
    graceful = float(next(a.split("=")[1] for a in container["args"] if a.startswith("--graceful-timeout=")))
    pre_stop = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > graceful + pre_stop


def test_credentials_are_mounted_files_never_env_values():
    pod = _doc("serve-deployment.yaml")["spec"]["template"]["spec"]
    container = _container()
    env = {e["name"]: e for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "minio-credentials")
    assert env["DETPIPE_S3_SECRET_DIR"]["value"] == mount["mountPath"] and mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == "minio-credentials")
    assert volume["secret"]["secretName"] == "detpipe-minio"
    assert not any("secretKeyRef" in e.get("valueFrom", {}) for e in container["env"])


def test_image_is_the_one_make_images_builds():
    [image] = yaml.safe_load((SERVING / "kustomization.yaml").read_text())["images"]
    assert _container()["image"] == image["name"]
    assert f"{image['newName']}:{image['newTag']}" == SERVE_IMAGE


def test_service_and_pdb_select_the_serving_pods():
    labels = _doc("serve-deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    for selector in (
        _doc("serve-service.yaml")["spec"]["selector"],
        _doc("serve-pdb.yaml")["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    assert _doc("serve-service.yaml")["spec"]["ports"][0]["targetPort"] == "http"


def _rendered_pod_labels() -> list[dict[str, str]]:
    from detpipe.deploy.config import CanaryConfig
    from detpipe.deploy.render import render

    uri = _doc("serve-config.yaml")["data"]["MODEL_URI"]
    out = []
    for cfg in (CanaryConfig(uri), CanaryConfig(uri, strategy="gateway", stable_model_uri=uri)):
        for d in render(cfg):
            if d["kind"] in ("Rollout", "Deployment"):
                out.append(d["spec"]["template"]["metadata"]["labels"])
    return out


def test_network_policy_admits_only_the_gateway_and_prometheus_to_every_serving_pod():
    policy = _doc("serve-networkpolicy.yaml")
    assert "serve-networkpolicy.yaml" in _doc("kustomization.yaml")["resources"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    pods = [_doc("serve-deployment.yaml")["spec"]["template"]["metadata"]["labels"], *_rendered_pod_labels()]
    for gpu in yaml.safe_load_all((SERVING / "gpu" / "serve-gpu.yaml").read_text()):
        if gpu["kind"] == "Deployment":
            pods.append(gpu["spec"]["template"]["metadata"]["labels"])
    assert len(pods) >= 4 and all(selector.items() <= labels.items() for labels in pods)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]  # one rule: no other source, no other port
    assert rule["ports"] == [{"protocol": "TCP", "port": _container()["ports"][0]["containerPort"]}]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"detpipe.io/ingress": "true"}}},
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        },
    ]  # a namespace AND a pod selector in one peer: Prometheus pods of that namespace only


def test_the_store_ca_bundle_is_mounted_where_the_client_reads_it():
    pod = _doc("serve-deployment.yaml")["spec"]["template"]["spec"]
    container = _container()
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "store-ca")
    volume = next(v for v in pod["volumes"] if v["name"] == "store-ca")
    key = volume["configMap"]["name"], env["DETPIPE_S3_CA_BUNDLE"].removeprefix(mount["mountPath"] + "/")
    assert key == ("detpipe-store-ca", "ca.crt") and mount["readOnly"] is True


def _serving_pods() -> list[tuple[str, dict]]:
    """(where, pod spec) of every serving pod: k8s/serving, its variants, the rendered canaries."""
    from detpipe.deploy.config import CanaryConfig
    from detpipe.deploy.render import render

    pods = [("serve-deployment.yaml", _doc("serve-deployment.yaml")["spec"]["template"]["spec"])]
    for rel in ("gpu/serve-gpu.yaml", "rollout/rollout.yaml"):
        for d in yaml.safe_load_all((SERVING / rel).read_text()):
            if d["kind"] in ("Rollout", "Deployment"):
                pods.append((rel, d["spec"]["template"]["spec"]))
    uri = _doc("serve-config.yaml")["data"]["MODEL_URI"]
    for cfg in (CanaryConfig(uri), CanaryConfig(uri, strategy="gateway", stable_model_uri=uri, gpu=True)):
        for d in render(cfg):
            if d["kind"] in ("Rollout", "Deployment"):
                pods.append((f"render {cfg.strategy} {d['metadata']['name']}", d["spec"]["template"]["spec"]))
    return pods


def test_every_serving_pod_verifies_releases_with_the_public_key_configmap(tmp_path):
    """DETPIPE_RELEASE_KEY names release.pub of the (required) ConfigMap detpipe-release-pub, and
    the server started with that environment takes it as --release-key; no pod enables reload."""
    from detpipe.cli.serve import _config as server_config
    from detpipe.signing import keygen
    from detpipe.signing.keys import PUBLIC_KEY

    pods = _serving_pods()
    assert len(pods) >= 5
    for where, pod in pods:
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        mount = next(m for m in container["volumeMounts"] if m["name"] == "release-pub")
        volume = next(v for v in pod["volumes"] if v["name"] == "release-pub")
        assert mount["readOnly"] is True, where
        assert volume["configMap"]["name"] == "detpipe-release-pub", where
        assert volume["configMap"].get("optional", False) is False, where  # no key: no pod
        items = {i["key"]: i["path"] for i in volume["configMap"]["items"]}
        assert env["DETPIPE_RELEASE_KEY"] == f"{mount['mountPath']}/{items[PUBLIC_KEY]}", where
        # cluster pods never hot-reload: the canary rolls new pods instead
        assert not any(
            a.startswith(("--allow-reload", "--reload-", "--allow-unsigned")) for a in container["args"]
        )
        assert "DETPIPE_RELOAD_TOKEN_FILE" not in env, where
    # the path the pods name, holding a real public key, is what the server verifies with
    keygen(tmp_path / "keys")
    container = _container()
    env = {
        **_doc("serve-config.yaml")["data"],
        **yaml.safe_load((ROOT / "k8s/base/config.yaml").read_text())["data"],
    }
    args = get_args_parser().parse_args(["serve", *(_expand(a, env) for a in container["args"])])
    pod_env = {"DETPIPE_RELEASE_KEY": str(tmp_path / "keys" / PUBLIC_KEY)}
    cfg = server_config(args, pod_env)
    assert cfg.allow_reload is False and cfg.allow_unsigned is False
    assert cfg.release_key == Path(pod_env["DETPIPE_RELEASE_KEY"])


def test_key_templates_hold_no_key_and_are_applied_by_no_kustomization():
    secrets_dir = ROOT / "k8s" / "secrets"
    pub = yaml.safe_load((secrets_dir / "detpipe-release-pub.template.yaml").read_text())
    key = yaml.safe_load((secrets_dir / "detpipe-release-key.template.yaml").read_text())
    assert (pub["kind"], pub["metadata"]["name"], list(pub["data"])) == (
        "ConfigMap",
        "detpipe-release-pub",
        ["release.pub"],
    )
    assert (key["kind"], key["metadata"]["name"], sorted(key["stringData"])) == (
        "Secret",
        "detpipe-release-key",
        ["release.key", "release.pub"],
    )
    for value in [*pub["data"].values(), *key["stringData"].values()]:
        assert value.startswith("<") and value.endswith(">")
    for kustomization in (ROOT / "k8s").rglob("kustomization.yaml"):
        assert ".template.yaml" not in kustomization.read_text(), kustomization
    for path in (ROOT / "k8s").rglob("*.yaml"):
        assert "BEGIN" not in path.read_text(), f"{path}: key material in git"
