"""The objects of a KServe canary (``detpipe deploy canary --strategy kserve``), one function each.

KServe runs the inference server as a ServingRuntime and moves traffic itself: in Serverless
mode each change of an InferenceService's predictor is a new Knative revision, and
``canaryTrafficPercent`` splits traffic between it and the last revision that was rolled out
to 100 % (KServe ``pkg/controller/v1beta1/inferenceservice/reconcilers/knative/ksvc_reconciler.go``).
In apply order:

* ServiceAccount ``<name>-storage``: what KServe's storage initializer downloads the release
  with. It names the credentials Secret (``--s3-secret``, keys ``AWS_ACCESS_KEY_ID`` /
  ``AWS_SECRET_ACCESS_KEY``, KServe's default ``s3AccessKeyIDName``/``s3SecretAccessKeyName``) and
  carries KServe's S3 annotations; detpipe never reads or writes the Secret. KServe v0.20 reads
  these annotations from the ServiceAccount only next to an IRSA role annotation and otherwise
  from the Secret it names (``pkg/credentials/service_account_credentials.go``), so the Secret
  carries the same ones (template in k8s/serving/kserve/secrets/).
* ServingRuntime :data:`RUNTIME`: the serve image on :data:`MODEL_DIR`, where the storage
  initializer copies the release's objects, served under the InferenceService's name
  (``{{.Name}}``, filled in by KServe) on port 8080; KServe v1 and v2 protocols; model format
  :data:`MODEL_FORMAT`, auto-selected. The release is verified against ``detpipe-release-pub``
  as on every serving pod (``DETPIPE_RELEASE_KEY``).
* InferenceService ``<name>``: Serverless mode (annotation), predictor on that runtime with
  ``storageUri`` = the release (with a trailing ``/``: the storage initializer lists objects by
  prefix, and ``.../1`` would also match ``.../10/...``), ``protocolVersion: v2``, replicas,
  resources, and ``canaryTrafficPercent`` = the first step (:func:`inference_service`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from detpipe.deploy import objects as o
from detpipe.errors import InvalidInput

if TYPE_CHECKING:
    from detpipe.deploy.config import CanaryConfig

KSERVE_V1ALPHA1 = "serving.kserve.io/v1alpha1"  # ServingRuntime
KSERVE_V1BETA1 = "serving.kserve.io/v1beta1"  # InferenceService
RUNTIME = "detpipe"
MODEL_FORMAT = "detpipe"
MODEL_FORMAT_VERSION = "1"
MODEL_DIR = "/mnt/models"  # KServe's storage initializer fills it (constants.DefaultModelLocalMountPath)
CONTAINER = "kserve-container"  # the container KServe merges the predictor's model spec into
PROTOCOL = "v2"
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
SERVERLESS = "Serverless"  # KServe >= 0.20 also says "Knative" and reads "Serverless" as it
STANDARD_MODES = ("Standard", "RawDeployment")  # no canaryTrafficPercent there
S3_ENDPOINT = "serving.kserve.io/s3-endpoint"
S3_USEHTTPS = "serving.kserve.io/s3-usehttps"
S3_REGION = "serving.kserve.io/s3-region"
# The model server reads the release from the read-only MODEL_DIR and copies the file it serves
# into its cache (checked against the manifest); these are its writable volumes and its key.
_VOLUMES = ("release-pub", "model-cache", "tmp")
_ENV = ("DETPIPE_RELEASE_KEY", "XDG_CACHE_HOME")
# The port opens once the model is loaded and warmed up: Knative has no startupProbe, so the
# first liveness probe waits as long as k8s/serving's startup budget (60 x 5 s).
LIVENESS_DELAY_S = 300
_SECRET_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")
_REGION_RE = re.compile(r"^[a-z0-9][-a-z0-9]{0,62}\Z")

Obj = dict[str, Any]


def service_account_name(name: str) -> str:
    """The ServiceAccount the predictor (and its storage initializer) runs as."""
    return f"{name}-storage"


def storage_uri(model_uri: str) -> str:
    """The release URI as ``storageUri``: with one trailing ``/`` (the objects below it only)."""
    return model_uri.rstrip("/") + "/"


def parse_s3_endpoint(text: str) -> tuple[str, bool]:
    """``https://minio.detpipe.svc:9000`` -> (``minio.detpipe.svc:9000``, True).

    Raises:
        InvalidInput: no ``http://`` / ``https://`` scheme, no host, or a path.
    """
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise InvalidInput(f"--s3-endpoint {text}: expected https://HOST[:PORT] or http://HOST[:PORT]")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidInput(f"--s3-endpoint {text}: expected https://HOST[:PORT] or http://HOST[:PORT]")
    return parts.netloc, parts.scheme == "https"


def check_config(cfg: CanaryConfig) -> None:
    """What ``--strategy kserve`` needs beyond every canary's checks.

    Raises:
        InvalidInput: a release outside S3, ``--shadow``, or a malformed S3 setting.
    """
    from detpipe.deploy.config import duration_seconds

    if not cfg.model_uri.startswith("s3://"):
        raise InvalidInput(
            f"--model-uri {cfg.model_uri}: --strategy kserve takes an s3:// release "
            "(KServe's storage initializer downloads it)"
        )
    if cfg.min_agreement is not None:
        raise InvalidInput("--shadow: the KServe runtime runs no shadow model; drop --shadow")
    parse_s3_endpoint(cfg.s3_endpoint)
    if not _SECRET_RE.match(cfg.s3_secret):
        raise InvalidInput(f"--s3-secret {cfg.s3_secret}: not a Secret name")
    if not _REGION_RE.match(cfg.s3_region):
        raise InvalidInput(f"--s3-region {cfg.s3_region}: not a region name")
    duration_seconds(cfg.ready_timeout)


def labels(cfg: CanaryConfig) -> dict[str, str]:
    """The labels every object of the canary carries."""
    return {"app.kubernetes.io/name": cfg.name, "app.kubernetes.io/component": "inference"}


def service_account(cfg: CanaryConfig) -> Obj:
    """The storage initializer's account: KServe's S3 annotations, the Secret by name, no token."""
    endpoint, https = parse_s3_endpoint(cfg.s3_endpoint)
    annotations = {S3_ENDPOINT: endpoint, S3_USEHTTPS: "1" if https else "0", S3_REGION: cfg.s3_region}
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": o.metadata(service_account_name(cfg.name), cfg.namespace, labels(cfg), **annotations),
        "secrets": [{"name": cfg.s3_secret}],
        "automountServiceAccountToken": False,
    }


def runtime_container(image: str, model_format: str, *, gpu: bool = False) -> Obj:
    """``detpipe serve`` on :data:`MODEL_DIR` under the InferenceService's name, in Knative's terms.

    The arguments, environment, volumes and limits are k8s/serving's pod's
    (:func:`detpipe.deploy.objects.serve_container`), less what Knative refuses (lifecycle hooks,
    startup probes, named ports other than ``http1``) and the store's credentials, which only
    the storage initializer needs.
    """
    serve = o.serve_container(image, MODEL_DIR, model_format, gpu=gpu)
    model_arg, *rest = serve["args"]
    context = {
        **serve["securityContext"],
        "runAsNonRoot": True,  # the pod's own securityContext needs a Knative feature flag
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": serve["imagePullPolicy"],
        "args": [model_arg, "--name={{.Name}}", *rest],
        "ports": [{"containerPort": o.PORT, "protocol": "TCP"}],
        "envFrom": [e for e in serve["envFrom"] if e["configMapRef"]["name"] == "detpipe-serve"],
        "env": [e for e in serve["env"] if e["name"] in _ENV],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": o.PORT},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": o.PORT},  # Knative: the container port only
            "initialDelaySeconds": LIVENESS_DELAY_S,
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "securityContext": context,
        "volumeMounts": [m for m in serve["volumeMounts"] if m["name"] in _VOLUMES],
    }


def serving_runtime(cfg: CanaryConfig) -> Obj:
    """ServingRuntime :data:`RUNTIME`: the serve image for model format :data:`MODEL_FORMAT`."""
    container = runtime_container(cfg.image, cfg.model_format, gpu=cfg.gpu)
    pod = o.pod_template({}, o.serve_container(cfg.image, MODEL_DIR, cfg.model_format, gpu=cfg.gpu))
    return {
        "apiVersion": KSERVE_V1ALPHA1,
        "kind": "ServingRuntime",
        "metadata": o.metadata(RUNTIME, cfg.namespace, labels(cfg)),
        "spec": {
            # added to every predictor pod: Prometheus scrapes the server itself
            "annotations": {
                **pod["metadata"]["annotations"],
                "prometheus.kserve.io/port": str(o.PORT),
                "prometheus.kserve.io/path": "/metrics",
            },
            "supportedModelFormats": [
                {"name": MODEL_FORMAT, "version": MODEL_FORMAT_VERSION, "autoSelect": True, "priority": 1}
            ],
            "protocolVersions": ["v1", "v2"],
            "containers": [container],
            "volumes": [v for v in pod["spec"]["volumes"] if v["name"] in _VOLUMES],
        },
    }


def inference_service(cfg: CanaryConfig, canary_percent: int | None) -> Obj:
    """The InferenceService: the release on :data:`RUNTIME`, ``canary_percent`` of the traffic.

    ``canary_percent`` ``None`` leaves ``canaryTrafficPercent`` out (all traffic to the newest
    ready revision: a finished rollout).
    """
    predictor: Obj = {
        "serviceAccountName": service_account_name(cfg.name),
        "automountServiceAccountToken": False,
        "minReplicas": cfg.replicas,
        "maxReplicas": cfg.max_replicas,
        "labels": {"detpipe.io/model": cfg.model_name, o.VERSION_LABEL: cfg.version},
        "model": {
            "modelFormat": {"name": MODEL_FORMAT, "version": MODEL_FORMAT_VERSION},
            "runtime": RUNTIME,
            "protocolVersion": PROTOCOL,
            "storageUri": storage_uri(cfg.model_uri),
            "resources": o.serve_container(cfg.image, MODEL_DIR, cfg.model_format, gpu=cfg.gpu)["resources"],
        },
    }
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    annotations = {DEPLOYMENT_MODE: SERVERLESS, o.STEPS_ANNOTATION: ",".join(map(str, cfg.steps))}
    return {
        "apiVersion": KSERVE_V1BETA1,
        "kind": "InferenceService",
        "metadata": o.metadata(cfg.name, cfg.namespace, labels(cfg), **annotations),
        "spec": {"predictor": predictor},
    }


def render_kserve(cfg: CanaryConfig, canary_percent: int | None = -1) -> list[Obj]:
    """ServiceAccount, ServingRuntime, InferenceService, in apply order.

    ``canary_percent`` -1 (the default) is the first step; see :func:`inference_service`.
    """
    percent = cfg.steps[0] if canary_percent == -1 else canary_percent
    return [service_account(cfg), serving_runtime(cfg), inference_service(cfg, percent)]


def model_uri_of(isvc: Mapping[str, Any]) -> str:
    """The release an InferenceService serves (its ``storageUri`` without the trailing ``/``)."""
    model = ((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}
    return str(model.get("storageUri") or "").rstrip("/")
