"""One function per Kubernetes object of a canary, each a plain dict from typed arguments.

The pod template is k8s/serving/serve-deployment.yaml's (tests/deploy hold the two to each
other): probes on ``/readyz``/``/healthz``, Prometheus scrape annotations, MinIO credentials
as mounted files, the store's CA bundle (ConfigMap ``detpipe-store-ca``), read-only root,
non-root user, a 5 s preStop before a 20 s graceful drain. Releases are verified against the
pipeline's public signing key, the ConfigMap ``detpipe-release-pub`` (``DETPIPE_RELEASE_KEY``;
no pod starts without it). Reload stays off (no ``--allow-reload``): a new release is a new pod.
The HTTPRoute routes only the inference paths (:data:`PUBLIC_PATHS`); k8s/serving's
NetworkPolicy admits the Gateway and Prometheus only.
The release is a literal ``--model=`` argument, so a new release is a new pod template: a new
ReplicaSet for Argo Rollouts, a new Deployment revision for the Gateway API canary.

Custom resources follow their projects' published CRDs (vendored in tests/deploy/crds):
``argoproj.io/v1alpha1`` Rollout and AnalysisTemplate (Argo Rollouts v1.9), and
``gateway.networking.k8s.io/v1`` HTTPRoute (Gateway API v1.6, standard channel).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from detpipe.deploy.queries import Check

ARGO = "argoproj.io/v1alpha1"
GATEWAY = "gateway.networking.k8s.io/v1"
GPU_RESOURCE = "nvidia.com/gpu"
PORT = 8080  # docker/Dockerfile.serve's ENTRYPOINT port
SERVICE_PORT = 80
GRACEFUL_S = 20
PRE_STOP_S = 5
# Annotations the CLI reads back from the cluster (promote/rollback/status of a Gateway canary).
STEPS_ANNOTATION = "detpipe.io/steps"
MODEL_URI_ANNOTATION = "detpipe.io/model-uri"
VERSION_LABEL = "detpipe.io/model-version"
TRACK_LABEL = "detpipe.io/track"
STRATEGY_LABEL = "detpipe.io/strategy"
# The CA that signs the store's TLS certificate (public: a ConfigMap, key ca.crt).
STORE_CA_CONFIGMAP = "detpipe-store-ca"
STORE_CA_DIR = "/etc/detpipe/store-ca"
# The public half of the release signing key (`detpipe release keygen`), which `detpipe serve`
# verifies every release's manifest.sig with; public, so a ConfigMap (key release.pub).
RELEASE_PUB_CONFIGMAP = "detpipe-release-pub"
RELEASE_PUB_KEY = "release.pub"  # detpipe.signing.keys.PUBLIC_KEY
RELEASE_PUB_DIR = "/etc/detpipe/release-pub"
# What the HTTPRoute exposes (Gateway API core matches, segment-wise prefixes): inference and
# model metadata of both protocols and the v2 health endpoints. Not /v2/repository/* (reload),
# /metrics (Prometheus scrapes the pods directly), /healthz and /readyz (the kubelet's), /docs.
PUBLIC_PATHS: tuple[tuple[str, str], ...] = (
    ("PathPrefix", "/v1/models"),  # /v1/models/{name}[:predict|:detect]
    ("PathPrefix", "/v2/models"),  # /v2/models/{name}[/versions/{v}][/ready|/infer]
    ("Exact", "/v2"),
    ("Exact", "/v2/health/live"),
    ("Exact", "/v2/health/ready"),
)

Obj = dict[str, Any]


def metadata(name: str, namespace: str, labels: Mapping[str, str], **annotations: str) -> Obj:
    """``metadata`` with detpipe's part-of label added."""
    meta: Obj = {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/part-of": "detpipe", **labels},
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


# Batching on a GPU: up to 8 images per model call, waiting at most 2 ms to fill a batch
# (docs/BENCHMARKS.md "Serving": on CPU batching does not pay, so CPU pods take the ConfigMap's 1).
GPU_BATCHING = ("--max-batch=8", "--max-delay-ms=2")


def serve_container(image: str, model_uri: str, model_format: str, *, gpu: bool = False) -> Obj:
    """The ``serve`` container: ``detpipe serve`` on ``model_uri``.

    The release must be signed with the key in :data:`RELEASE_PUB_CONFIGMAP`
    (``DETPIPE_RELEASE_KEY``). No ``--allow-reload``: the canary rolls new pods instead, so
    the model-load route answers 403 whoever reaches it. CPU pods batch as the ``detpipe-serve``
    ConfigMap says; GPU pods as :data:`GPU_BATCHING`, with one ``nvidia.com/gpu`` and room for
    the CUDA context and TensorRT's workspace.
    """
    resources: Obj = {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    batching = ("--max-batch=$(MAX_BATCH)", "--max-delay-ms=$(MAX_DELAY_MS)")
    if gpu:
        resources = {
            "requests": {"cpu": "2", "memory": "4Gi", GPU_RESOURCE: "1"},
            "limits": {"memory": "8Gi", GPU_RESOURCE: "1"},
        }
        batching = GPU_BATCHING
    return {
        "name": "serve",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": [
            f"--model={model_uri}",
            f"--format={model_format}",
            *batching,
            "--max-queue=$(MAX_QUEUE)",
            "--threads=2",
            f"--graceful-timeout={GRACEFUL_S}",
        ],
        "ports": [{"name": "http", "containerPort": PORT}],
        "envFrom": [
            {"configMapRef": {"name": "detpipe-config"}},  # DETPIPE_S3_ENDPOINT, DETPIPE_S3_SECURE
            {"configMapRef": {"name": "detpipe-serve"}},  # MAX_BATCH, MAX_DELAY_MS, MAX_QUEUE
        ],
        "env": [
            {"name": "DETPIPE_S3_SECRET_DIR", "value": "/var/run/secrets/detpipe/minio"},
            {"name": "DETPIPE_S3_CA_BUNDLE", "value": f"{STORE_CA_DIR}/ca.crt"},  # read for HTTPS only
            {"name": "DETPIPE_RELEASE_KEY", "value": f"{RELEASE_PUB_DIR}/{RELEASE_PUB_KEY}"},
            {"name": "XDG_CACHE_HOME", "value": "/var/cache/detpipe"},
        ],
        "startupProbe": _probe("/readyz", 5, 60),
        "readinessProbe": _probe("/readyz", 5, 2),
        "livenessProbe": _probe("/healthz", 10, 3),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_S)]}}},
        "resources": resources,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "minio-credentials", "mountPath": "/var/run/secrets/detpipe/minio", "readOnly": True},
            {"name": "store-ca", "mountPath": STORE_CA_DIR, "readOnly": True},
            {"name": "release-pub", "mountPath": RELEASE_PUB_DIR, "readOnly": True},
            {"name": "model-cache", "mountPath": "/var/cache/detpipe"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def _probe(path: str, period_s: int, failures: int) -> Obj:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period_s,
        "failureThreshold": failures,
    }


def pod_template(labels: Mapping[str, str], container: Obj, *, gpu: bool = False) -> Obj:
    """A serving pod template around ``container``."""
    spec: Obj = {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": GRACEFUL_S + PRE_STOP_S + 5,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "minio-credentials", "secret": {"secretName": "detpipe-minio", "defaultMode": 0o440}},
            # optional: plain-HTTP development stores have none (the client then never reads it)
            {"name": "store-ca", "configMap": {"name": STORE_CA_CONFIGMAP, "optional": True}},
            # not optional: without the key a release is refused, so the pod waits for the ConfigMap
            {
                "name": "release-pub",
                "configMap": {
                    "name": RELEASE_PUB_CONFIGMAP,
                    "items": [{"key": RELEASE_PUB_KEY, "path": RELEASE_PUB_KEY}],
                },
            },
            {"name": "model-cache", "emptyDir": {"sizeLimit": "2Gi"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        ],
    }
    if gpu:
        spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(PORT),
        "prometheus.io/path": "/metrics",
    }
    return {"metadata": {"labels": dict(labels), "annotations": annotations}, "spec": spec}


def service(name: str, namespace: str, selector: Mapping[str, str], labels: Mapping[str, str]) -> Obj:
    """A ClusterIP Service on port 80 -> the pods' ``http`` port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, namespace, labels),
        "spec": {
            "selector": dict(selector),
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}],
        },
    }


def deployment(
    name: str,
    namespace: str,
    replicas: int,
    selector: Mapping[str, str],
    template: Obj,
    labels: Mapping[str, str],
) -> Obj:
    """A surge-first Deployment (a new pod is ready before an old one goes)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, namespace, labels),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": dict(selector)},
            "template": template,
        },
    }


def hpa(
    name: str,
    namespace: str,
    target: Mapping[str, str],
    min_replicas: int,
    max_replicas: int,
    labels: Mapping[str, str],
) -> Obj:
    """A CPU HorizontalPodAutoscaler of ``target`` (``{"apiVersion", "kind", "name"}``).

    70 % of the CPU request adds pods; scale-down waits 5 minutes, so a lull between canary
    steps does not drain warm pods (as k8s/serving/serve-hpa.yaml).
    """
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(name, namespace, labels),
        "spec": {
            "scaleTargetRef": dict(target),
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def analysis_step(templates: Sequence[str], args: Mapping[str, str]) -> Obj:
    """A canary ``analysis`` step running ``templates`` with ``args``."""
    return {
        "analysis": {
            "templates": [{"templateName": t} for t in templates],
            "args": [{"name": k, "value": v} for k, v in args.items()],
        }
    }


def canary_steps(
    weights: Sequence[int],
    pause: str,
    templates: Sequence[str],
    args: Mapping[str, str],
    *,
    pre_templates: Sequence[str] = (),
) -> list[Obj]:
    """setWeight / pause / analysis for every weight below 100; reaching the end promotes fully.

    ``pre_templates`` run once before any traffic moves (the shadow agreement of the candidate,
    measured while it ran as a shadow of the stable pods). ``pause`` ``"manual"`` holds each
    step until ``detpipe deploy promote``.
    """
    steps = [analysis_step(pre_templates, args)] if pre_templates else []
    for weight in weights:
        if weight >= 100:
            break
        steps.append({"setWeight": weight})
        steps.append({"pause": {} if pause == "manual" else {"duration": pause}})
        steps.append(analysis_step(templates, args))
    return steps


def rollout(
    name: str,
    namespace: str,
    replicas: int | None,
    selector: Mapping[str, str],
    template: Obj,
    steps: list[Obj],
    labels: Mapping[str, str],
) -> Obj:
    """An Argo Rollouts canary over ``<name>-stable`` / ``<name>-canary`` Services.

    Without a traffic router the weight is a replica ratio; a failed analysis aborts the
    rollout, which scales the canary down and leaves all traffic on stable. ``replicas``
    ``None`` leaves the count to an HPA: re-applying never resets what it chose.
    """
    return {
        "apiVersion": ARGO,
        "kind": "Rollout",
        "metadata": metadata(name, namespace, labels),
        "spec": {
            **({"replicas": replicas} if replicas is not None else {}),
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": dict(selector)},
            "template": template,
            "strategy": {
                "canary": {
                    "stableService": f"{name}-stable",
                    "canaryService": f"{name}-canary",
                    "maxSurge": 1,
                    "maxUnavailable": 0,
                    "stableMetadata": {"labels": {TRACK_LABEL: "stable"}},
                    "canaryMetadata": {"labels": {TRACK_LABEL: "canary"}},
                    "steps": steps,
                }
            },
        },
    }


def analysis_template(
    name: str,
    namespace: str,
    check: Check,
    prometheus_url: str,
    *,
    interval: str,
    count: int,
    labels: Mapping[str, str],
) -> Obj:
    """One AnalysisTemplate for one check: its Prometheus query, limits next to it.

    ``check`` is rendered with ``{{args.model}}`` / ``{{args.version}}`` placeholders, which
    the Rollout's analysis steps fill in.
    """
    return {
        "apiVersion": ARGO,
        "kind": "AnalysisTemplate",
        "metadata": metadata(name, namespace, labels),
        "spec": {
            "args": [{"name": "model"}, {"name": "version"}],
            "metrics": [
                {
                    "name": check.name,
                    "interval": interval,
                    "count": count,
                    "failureLimit": check.failure_limit,
                    "successCondition": check.success_condition,
                    "failureCondition": check.failure_condition,
                    "provider": {
                        "prometheus": {"address": prometheus_url, "timeout": 30, "query": check.query}
                    },
                }
            ],
        },
    }


def http_route(
    name: str,
    namespace: str,
    gateway: str,
    stable_weight: int,
    canary_weight: int,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> Obj:
    """An HTTPRoute splitting the :data:`PUBLIC_PATHS` between ``<name>-stable`` and ``<name>-canary``.

    Any other path (model reload, metrics) gets the Gateway's 404: it never reaches a pod.
    """
    return {
        "apiVersion": GATEWAY,
        "kind": "HTTPRoute",
        "metadata": metadata(name, namespace, labels, **annotations),
        "spec": {
            "parentRefs": [{"name": gateway}],
            "rules": [
                {
                    "matches": [{"path": {"type": kind, "value": value}} for kind, value in PUBLIC_PATHS],
                    "backendRefs": backend_refs(name, stable_weight, canary_weight),
                }
            ],
        },
    }


def backend_refs(name: str, stable_weight: int, canary_weight: int) -> list[Obj]:
    """The two weighted backends of the HTTPRoute (what promote and rollback move)."""
    return [
        {"name": f"{name}-stable", "port": SERVICE_PORT, "weight": stable_weight},
        {"name": f"{name}-canary", "port": SERVICE_PORT, "weight": canary_weight},
    ]
