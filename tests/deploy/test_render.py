"""Rendered canary objects: upstream CRD schemas, Kubernetes schemas, and what they say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from detpipe.cli.main import get_args_parser, main
from detpipe.deploy import queries
from detpipe.deploy.config import CanaryConfig
from detpipe.deploy.render import ARG_MODEL, ARG_VERSION, render, to_yaml
from detpipe.errors import InvalidInput
from detpipe.images import SERVE_GPU_IMAGE, SERVE_IMAGE

from . import crd_schema

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.30.0"  # as tests/k8s/test_manifests.py
URI = "s3://detpipe/models/yolov8n-coco/0.2.0"
NAME = "detpipe-serve"
STABLE_URI = "s3://detpipe/models/yolov8n-coco/0.1.0"

CONFIGS = {
    "rollout": CanaryConfig(URI),
    "rollout-shadow-gpu": CanaryConfig(URI, min_agreement=0.95, gpu=True, pause="manual"),
    "gateway": CanaryConfig(URI, strategy="gateway"),
    "gateway-stable": CanaryConfig(URI, strategy="gateway", stable_model_uri=STABLE_URI, steps=(5, 25, 100)),
}


def _by_kind(docs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def _pod(template: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x", **template["metadata"]},
        **{"spec": template["spec"]},
    }


@pytest.mark.parametrize("key", CONFIGS)
def test_objects_validate_against_upstream_and_kubernetes_schemas(key: str) -> None:
    docs = render(CONFIGS[key])
    for doc in docs:
        assert doc["metadata"]["namespace"] == "detpipe"
        if crd_schema.is_custom(doc):
            crd_schema.validate(doc)
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        if doc["kind"] == "Rollout":  # the CRD's pod template schema is Argo's copy: check the real one
            kubernetes_validate.validate(_pod(doc["spec"]["template"]), K8S_VERSION, strict=True)


def test_the_schema_check_catches_a_misspelt_field() -> None:
    rollout = _by_kind(render(CONFIGS["rollout"]))["Rollout"][0]
    rollout["spec"]["strategy"]["canary"]["steps"][0] = {"setWieght": 10}
    with pytest.raises(Exception, match="setWieght"):
        crd_schema.validate(rollout)


def test_rollout_steps_weights_pauses_and_analyses() -> None:
    cfg = CONFIGS["rollout"]
    kinds = _by_kind(render(cfg))
    (ro,) = kinds["Rollout"]
    canary = ro["spec"]["strategy"]["canary"]
    args = [{"name": "model", "value": "yolov8n-coco"}, {"name": "version", "value": "0.2.0"}]
    analysis = {
        "analysis": {
            "templates": [
                {"templateName": "detpipe-serve-error-rate"},
                {"templateName": "detpipe-serve-latency-p95-ratio"},
            ],
            "args": args,
        }
    }
    assert canary["steps"] == [
        {"setWeight": 10},
        {"pause": {"duration": "10m"}},
        analysis,
        {"setWeight": 50},
        {"pause": {"duration": "10m"}},
        analysis,
    ]  # past the last step the controller promotes to 100 %
    services = {s["metadata"]["name"]: s for s in kinds["Service"]}
    assert (canary["stableService"], canary["canaryService"]) == (
        "detpipe-serve-stable",
        "detpipe-serve-canary",
    )
    for name in ("detpipe-serve-stable", "detpipe-serve-canary"):
        assert services[name]["spec"]["selector"] == ro["spec"]["selector"]["matchLabels"]
    assert "replicas" not in ro["spec"]  # the HPA's: applying a new canary never scales pods away
    (hpa,) = kinds["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "name": NAME,
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    pod_labels = ro["spec"]["template"]["metadata"]["labels"]
    assert ro["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert services["detpipe-serve"]["spec"]["selector"].items() <= pod_labels.items()
    assert pod_labels["detpipe.io/model-version"] == "0.2.0"
    (container,) = ro["spec"]["template"]["spec"]["containers"]
    assert container["image"] == SERVE_IMAGE and f"--model={URI}" in container["args"]
    assert {t["metadata"]["name"] for t in kinds["AnalysisTemplate"]} == {
        t["templateName"] for t in analysis["analysis"]["templates"]
    }


def test_analysis_templates_carry_the_queries_and_limits_of_the_checks() -> None:
    cfg = CONFIGS["rollout-shadow-gpu"]
    kinds = _by_kind(render(cfg))
    templates = {t["spec"]["metrics"][0]["name"]: t for t in kinds["AnalysisTemplate"]}
    checks = {c.name: c for c in cfg.checks(ARG_MODEL, ARG_VERSION)}
    assert set(templates) == set(checks) == {"error-rate", "latency-p95-ratio", "shadow-agreement"}
    for name, template in templates.items():
        (metric,) = template["spec"]["metrics"]
        check = checks[name]
        assert metric["provider"]["prometheus"] == {
            "address": cfg.prometheus_url,
            "timeout": 30,
            "query": check.query,  # rendered in one place: detpipe.deploy.queries
        }
        assert metric["failureLimit"] == check.failure_limit and metric["count"] == cfg.analysis_count
        assert metric["successCondition"] == check.success_condition
        assert template["spec"]["args"] == [{"name": "model"}, {"name": "version"}]
    assert (
        templates["error-rate"]["spec"]["metrics"][0]["successCondition"]
        == "len(result) > 0 && result[0] <= 0.01"
    )
    assert templates["shadow-agreement"]["spec"]["metrics"][0]["failureCondition"] == (
        "len(result) > 0 && result[0] < 0.95"
    )
    assert 'version="{{args.version}}"' in checks["error-rate"].query
    steps = kinds["Rollout"][0]["spec"]["strategy"]["canary"]["steps"]
    # the shadow's agreement is judged before any traffic moves; manual pauses wait for promote
    assert steps[0]["analysis"]["templates"] == [{"templateName": "detpipe-serve-shadow-agreement"}]
    assert steps[1:3] == [{"setWeight": 10}, {"pause": {}}]
    (container,) = kinds["Rollout"][0]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == SERVE_GPU_IMAGE
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_gateway_route_splits_between_the_track_services() -> None:
    kinds = _by_kind(render(CONFIGS["gateway-stable"]))
    (route,) = kinds["HTTPRoute"]
    assert route["spec"]["parentRefs"] == [{"name": "detpipe-gateway"}]
    (rule,) = route["spec"]["rules"]
    assert rule["backendRefs"] == [
        {"name": "detpipe-serve-stable", "port": 80, "weight": 95},
        {"name": "detpipe-serve-canary", "port": 80, "weight": 5},
    ]
    assert route["metadata"]["annotations"] == {"detpipe.io/steps": "5,25,100", "detpipe.io/model-uri": URI}
    services = {s["metadata"]["name"]: s for s in kinds["Service"]}
    deployments = {d["metadata"]["name"]: d for d in kinds["Deployment"]}
    assert set(deployments) == {"detpipe-serve", "detpipe-serve-canary"}
    for track, dep in (("stable", "detpipe-serve"), ("canary", "detpipe-serve-canary")):
        selector = services[f"detpipe-serve-{track}"]["spec"]["selector"]
        assert selector == deployments[dep]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployments[dep]["spec"]["template"]["metadata"]["labels"].items()
    args = deployments["detpipe-serve"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--model={STABLE_URI}" in args
    # the stable track is k8s/serving's Deployment: same name and selector
    base = yaml.safe_load((ROOT / "k8s/serving/serve-deployment.yaml").read_text())
    assert base["metadata"]["name"] == "detpipe-serve"
    assert base["spec"]["selector"] == deployments["detpipe-serve"]["spec"]["selector"]
    assert "Deployment" not in {
        d["kind"] for d in render(CONFIGS["gateway"]) if d["metadata"]["name"] == "detpipe-serve"
    }


def _gateway_matches(match: dict, path: str) -> bool:
    """Gateway API path matching: Exact, or PathPrefix element-wise ("/v2" is not "/v2x")."""
    kind, value = match["path"]["type"], match["path"]["value"]
    if kind == "Exact":
        return path == value
    assert kind == "PathPrefix"
    return path == value or path.startswith(value.rstrip("/") + "/")


PUBLIC = [
    "/v1/models",
    "/v1/models/yolo",
    "/v1/models/yolo:predict",
    "/v1/models/yolo:detect",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/yolo",
    "/v2/models/yolo/ready",
    "/v2/models/yolo/infer",
    "/v2/models/yolo/versions/3/infer",
]
PRIVATE = [
    "/v2/repository/index",
    "/v2/repository/models/yolo/load",
    "/metrics",
    "/healthz",
    "/readyz",
    "/docs",
    "/openapi.json",
    "/",
    "/v2/modelsx",
    "/v2/health/live/x",
]


def test_the_route_exposes_only_inference_metadata_and_health() -> None:
    """Reload (/v2/repository/*) and /metrics never reach the pods through the Gateway."""
    (route,) = _by_kind(render(CONFIGS["gateway"]))["HTTPRoute"]
    crd_schema.validate(route)
    (rule,) = route["spec"]["rules"]
    for path in PUBLIC:
        assert any(_gateway_matches(m, path) for m in rule["matches"]), path
    for path in PRIVATE:
        assert not any(_gateway_matches(m, path) for m in rule["matches"]), path


def test_the_routes_paths_are_the_servers() -> None:
    """Every public path is a route of serving/app.py (its decorators and INFER_PATHS: no model needed)."""
    from detpipe.serving.app import INFER_PATHS

    source = (ROOT / "serving" / "app.py").read_text()
    routes = set(re.findall(r'@app\.(?:get|post)\("([^"]+)"', source)) | set(INFER_PATHS)
    assert {"/v2/repository/models/{name}/load", "/metrics", "/v2/models/{name}/infer"} <= routes
    samples = {"{name}": "yolo", "{version}": "3"}
    concrete = {re.sub(r"\{\w+\}", lambda m: samples[m.group(0)], r) for r in routes}
    assert set(PUBLIC) <= concrete
    assert {p for p in PRIVATE if p in concrete} == {
        "/v2/repository/index",
        "/v2/repository/models/yolo/load",
        "/metrics",
        "/healthz",
        "/readyz",
    }


def test_pod_template_is_k8s_servings_and_its_args_parse() -> None:
    """The rendered pod and k8s/serving/serve-deployment.yaml differ only in image and release."""
    base = yaml.safe_load((ROOT / "k8s/serving/serve-deployment.yaml").read_text())["spec"]["template"]
    ro = _by_kind(render(CONFIGS["rollout"]))["Rollout"][0]["spec"]["template"]
    (ours,), (theirs,) = ro["spec"]["containers"], base["spec"]["containers"]
    for key in set(ours) | set(theirs):
        if key not in ("image", "args"):
            assert ours.get(key) == theirs.get(key), key
    assert {k: v for k, v in ro["spec"].items() if k != "containers"} == {
        k: v for k, v in base["spec"].items() if k != "containers"
    }
    assert ro["metadata"]["annotations"] == base["metadata"]["annotations"]
    release_args = {"--model=$(MODEL_URI)", "--format=$(MODEL_FORMAT)"}
    assert [a for a in theirs["args"] if a not in release_args] == ours["args"][2:]
    env = {"MAX_BATCH": "1", "MAX_DELAY_MS": "0", "MAX_QUEUE": "64"}
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in ours["args"]]
    ns = get_args_parser().parse_args(["serve", *args])
    assert (ns.model, ns.format, ns.max_batch, ns.graceful_timeout) == (URI, "onnx", 1, 20)


def test_dry_run_prints_every_object_as_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["deploy", "canary", "--model-uri", URI, "--steps", "5,25,100", "--pause", "manual"]
    assert main([*argv, "--shadow", "--min-agreement", "0.95", "--gpu", "--dry-run"]) == 0
    out = capsys.readouterr().out
    cfg = CanaryConfig(URI, steps=(5, 25, 100), pause="manual", min_agreement=0.95, gpu=True)
    assert out == to_yaml(render(cfg))
    assert list(yaml.safe_load_all(out)) == render(cfg)
    assert "secretKeyRef" not in out and "AWS_SECRET" not in out  # credentials stay in the Secret


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model-uri", "s3://detpipe/models/yolov8n-coco"], "pin a version"),
        (["--model-uri", "runs/model.onnx"], "expected a release"),
        (["--model-uri", URI, "--steps", "50,10,100"], "--steps 50,10,100: weights must increase"),
        (["--model-uri", URI, "--steps", "10,50"], "end at 100"),
        (["--model-uri", URI, "--pause", "10 minutes"], "--pause 10 minutes: expected a duration"),
        (
            ["--model-uri", URI, "--name", "Detpipe_Serve"],
            "--name Detpipe_Serve: must be a lowercase DNS label",
        ),
        (["--model-uri", URI, "--analysis-window", "2"], "--analysis-window 2: expected a duration"),
    ],
)
def test_bad_flags_exit_2_with_one_line(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["deploy", "canary", *flags, "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("detpipe deploy: error: ") and message in line


def test_no_cluster_is_one_line_exit_3(tmp_path: Path) -> None:
    env = {"KUBECONFIG": str(tmp_path / "none"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "deploy", "status"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 3, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("detpipe deploy: error: no Kubernetes cluster configured")


def test_release_identity_and_label_values() -> None:
    cfg = CanaryConfig("file:///srv/store/models/yolo12n-thermal/3")
    assert (cfg.model_name, cfg.version) == ("yolo12n-thermal", "3")
    with pytest.raises(InvalidInput, match="invalid version 'v 2'"):  # store.parse_release_uri
        CanaryConfig("s3://detpipe/models/yolo/v 2")
    assert queries.label_value('a"b\\c') == 'a\\"b\\\\c'
