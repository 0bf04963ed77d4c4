"""``--strategy kserve`` objects: KServe v0.20.0's CRDs, Kubernetes schemas, Knative's limits, the CLI."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest
import yaml

from detpipe.cli.main import get_args_parser, main
from detpipe.deploy import kserve as ks
from detpipe.deploy.config import CanaryConfig
from detpipe.deploy.render import render, to_yaml
from detpipe.images import SERVE_GPU_IMAGE, SERVE_IMAGE

from . import crd_schema

K8S_VERSION = "1.30.0"
URI = "s3://detpipe/models/yolov8n-coco/0.2.0"
CONFIGS = {
    "cpu": CanaryConfig(URI, strategy="kserve"),
    "gpu": CanaryConfig(URI, strategy="kserve", gpu=True, steps=(5, 25, 100), replicas=1, max_replicas=3),
    "http-store": CanaryConfig(
        URI, strategy="kserve", s3_endpoint="http://minio.detpipe.svc:9000", s3_region="eu-west-1"
    ),
}


def _by_kind(cfg: CanaryConfig) -> dict[str, dict]:
    docs = render(cfg)
    assert [d["kind"] for d in docs] == [
        "ServiceAccount",
        "ServingRuntime",
        "InferenceService",
    ]  # apply order
    return {d["kind"]: d for d in docs}


@pytest.mark.parametrize("key", CONFIGS)
def test_objects_validate_against_kserves_crds_and_kubernetes(key: str) -> None:
    for doc in render(CONFIGS[key]):
        assert doc["metadata"]["namespace"] == "detpipe"
        if crd_schema.is_custom(doc):
            crd_schema.validate(doc)  # tests/deploy/crds: kserve/kserve v0.20.0
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    # the runtime's container is a Kubernetes container as well as KServe's copy of one
    sr = _by_kind(CONFIGS[key])["ServingRuntime"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {
        "containers": sr["spec"]["containers"], "volumes": sr["spec"]["volumes"]}}  # fmt: skip
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_the_schema_check_catches_a_misspelt_field() -> None:
    isvc = _by_kind(CONFIGS["cpu"])["InferenceService"]
    isvc["spec"]["predictor"]["canaryTraficPercent"] = isvc["spec"]["predictor"].pop("canaryTrafficPercent")
    with pytest.raises(Exception, match="canaryTraficPercent"):
        crd_schema.validate(isvc)


def test_the_inference_service_names_the_runtime_and_the_release() -> None:
    kinds = _by_kind(CONFIGS["gpu"])
    isvc, sr, sa = kinds["InferenceService"], kinds["ServingRuntime"], kinds["ServiceAccount"]
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert model["runtime"] == sr["metadata"]["name"] == "detpipe"
    (fmt,) = sr["spec"]["supportedModelFormats"]
    assert fmt == {"name": "detpipe", "version": "1", "autoSelect": True, "priority": 1}
    assert model["modelFormat"] == {"name": fmt["name"], "version": fmt["version"]}
    assert model["protocolVersion"] == "v2" and sr["spec"]["protocolVersions"] == ["v1", "v2"]
    # the storage initializer lists objects by prefix: ".../0.2.0" would also take ".../0.2.0-rc.1/*"
    assert model["storageUri"] == URI + "/"
    assert ks.model_uri_of(isvc) == URI
    assert predictor["canaryTrafficPercent"] == 5  # the first step
    assert isvc["metadata"]["annotations"] == {
        "serving.kserve.io/deploymentMode": "Serverless",
        "detpipe.io/steps": "5,25,100",
    }
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 3)
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert predictor["serviceAccountName"] == sa["metadata"]["name"] == "detpipe-serve-storage"
    assert predictor["labels"] == {"detpipe.io/model": "yolov8n-coco", "detpipe.io/model-version": "0.2.0"}
    assert predictor["automountServiceAccountToken"] is False


def test_the_service_account_carries_kserves_s3_annotations_and_no_secret_value() -> None:
    for key, endpoint, https, region in (
        ("cpu", "minio.detpipe.svc.cluster.local:9000", "1", "us-east-1"),
        ("http-store", "minio.detpipe.svc:9000", "0", "eu-west-1"),
    ):
        sa = _by_kind(CONFIGS[key])["ServiceAccount"]
        assert sa["metadata"]["annotations"] == {
            "serving.kserve.io/s3-endpoint": endpoint,
            "serving.kserve.io/s3-usehttps": https,
            "serving.kserve.io/s3-region": region,
        }
        assert sa["secrets"] == [{"name": "detpipe-kserve-s3"}]  # by name: detpipe never holds a key
        assert sa["automountServiceAccountToken"] is False
    text = to_yaml(render(CONFIGS["cpu"]))
    assert "stringData" not in text and "AWS_SECRET" not in text and "secretKeyRef" not in text


def _runtime_args(sr: dict, isvc_name: str, model_dir: str = ks.MODEL_DIR) -> list[str]:
    """The container's arguments as KServe and the kubelet expand them."""
    (container,) = sr["spec"]["containers"]
    env = {"MAX_BATCH": "1", "MAX_DELAY_MS": "0", "MAX_QUEUE": "64"}  # k8s/serving/serve-config.yaml
    args = [a.replace("{{.Name}}", isvc_name).replace(ks.MODEL_DIR, model_dir) for a in container["args"]]
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in args]


def test_the_runtime_serves_the_storage_initializers_directory_under_the_services_name() -> None:
    for key, image, batch in (("cpu", SERVE_IMAGE, 1), ("gpu", SERVE_GPU_IMAGE, 8)):
        sr = _by_kind(CONFIGS[key])["ServingRuntime"]
        (container,) = sr["spec"]["containers"]
        assert container["name"] == "kserve-container" and container["image"] == image
        ns = get_args_parser().parse_args(["serve", *_runtime_args(sr, "detpipe-serve")])
        assert (ns.model, ns.name, ns.format, ns.max_batch, ns.port) == (
            "/mnt/models", "detpipe-serve", "onnx", batch, 8080)  # fmt: skip
        assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env == {"DETPIPE_RELEASE_KEY": "/etc/detpipe/release-pub/release.pub",
                       "XDG_CACHE_HOME": "/var/cache/detpipe"}  # fmt: skip
        volumes = {v["name"]: v for v in sr["spec"]["volumes"]}
        assert {m["name"] for m in container["volumeMounts"]} == set(volumes)
        assert volumes["release-pub"]["configMap"]["name"] == "detpipe-release-pub"
        assert sr["spec"]["annotations"]["prometheus.io/scrape"] == "true"


def test_the_runtime_container_stays_within_what_knative_serving_accepts() -> None:
    """Knative's ContainerMask (pkg/apis/serving/fieldmask.go) drops lifecycle hooks and
    startup probes; probes may only name the container's own port; ports are unnamed or http1/h2c."""
    allowed = {
        "name", "args", "command", "env", "workingDir", "envFrom", "image", "imagePullPolicy",
        "livenessProbe", "ports", "readinessProbe", "resources", "securityContext",
        "terminationMessagePath", "terminationMessagePolicy", "volumeMounts",
    }  # fmt: skip
    (container,) = _by_kind(CONFIGS["cpu"])["ServingRuntime"]["spec"]["containers"]
    assert set(container) <= allowed
    (port,) = container["ports"]
    assert port.get("name", "http1") in ("http1", "h2c")
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == port["containerPort"]
    ctx = container["securityContext"]
    assert ctx["runAsNonRoot"] and ctx["readOnlyRootFilesystem"] and not ctx["allowPrivilegeEscalation"]
    assert ctx["capabilities"] == {"drop": ["ALL"]}


def test_dry_run_prints_the_objects(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["deploy", "canary", "--model-uri", URI, "--strategy", "kserve", "--steps", "5,25,100"]
    assert main([*argv, "--gpu", "--replicas", "1", "--max-replicas", "3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out == to_yaml(render(CONFIGS["gpu"]))
    assert list(yaml.safe_load_all(out)) == render(CONFIGS["gpu"])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model-uri", "file:///srv/store/models/m/1"], "--strategy kserve takes an s3:// release"),
        (["--model-uri", URI, "--shadow"], "--shadow: the KServe runtime runs no shadow model"),
        (["--model-uri", URI, "--s3-endpoint", "minio:9000"], "--s3-endpoint minio:9000: expected https://"),
        (["--model-uri", URI, "--s3-secret", "Bad_Name"], "--s3-secret Bad_Name: not a Secret name"),
        (["--model-uri", URI, "--ready-timeout", "5"], "5: expected a duration"),
        (["--model-uri", URI, "--auto"], "--auto applies and judges the canary: drop --dry-run"),
    ],
)
def test_bad_flags_exit_2_with_one_line(flags, message, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", "canary", "--strategy", "kserve", *flags, "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("detpipe deploy: error: ") and message in line


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "--auto: only with --strategy kserve (with --strategy rollout, Argo Rollouts runs"),
        (["--strategy", "kserve", "--pause", "manual"], "--auto needs a --pause duration"),
    ],
)
def test_auto_is_refused_before_any_cluster_is_touched(flags, message, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))  # a cluster call would exit 3, not 2
    assert main(["deploy", "canary", "--model-uri", URI, "--auto", *flags]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert message in line


def test_the_other_strategies_render_as_before() -> None:
    """The new flags have defaults that leave rollout and gateway objects untouched."""
    for strategy in ("rollout", "gateway"):
        kinds = {d["kind"] for d in render(CanaryConfig(URI, strategy=strategy))}
        assert not kinds & {"ServingRuntime", "InferenceService", "ServiceAccount"}


def test_the_auto_checks_are_the_analysis_templates_narrowed_to_the_revisions_pods() -> None:
    """--auto's queries are queries.checks' with the revisions' pod matchers added, nothing else."""
    from detpipe.deploy.kserve_auto import kserve_checks
    from detpipe.deploy.queries import checks

    canary, stable = "detpipe-serve-predictor-00002", "detpipe-serve-predictor-00001"
    scoped = {c.name: c for c in kserve_checks("detpipe-serve", "detpipe", "0.2.0", canary, stable)}
    plain = {c.name: c for c in checks("detpipe-serve", "0.2.0")}
    assert scoped.keys() == plain.keys() == {"error-rate", "latency-p95-ratio"}
    on_canary = ',namespace="detpipe",pod=~"detpipe\\\\-serve\\\\-predictor\\\\-00002\\\\-deployment\\\\-.*"'
    on_stable = on_canary.replace("00002", "00001")
    assert scoped["error-rate"].query.count(on_canary) == 2  # the 5xx and the total
    assert scoped["error-rate"].query.replace(on_canary, "") == plain["error-rate"].query
    ratio = scoped["latency-p95-ratio"].query
    assert ratio.count(on_canary) == ratio.count(on_stable) == 1
    assert ratio.replace(on_canary, "").replace(on_stable, "") == plain["latency-p95-ratio"].query
    for name, check in scoped.items():
        assert (check.limit, check.at_most, check.failure_limit) == (
            plain[name].limit, plain[name].at_most, plain[name].failure_limit)  # fmt: skip
