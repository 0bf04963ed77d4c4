"""What a canary rollout is made of: the release, the image, the steps and the limits.

:class:`CanaryConfig` is built by ``detpipe deploy canary`` and by the pipeline's deploy
component, and validates itself::

    cfg = CanaryConfig(model_uri="s3://detpipe/models/yolov8n-coco/0.2.0", steps=(10, 50, 100))
    cfg.model_name, cfg.version      # ("yolov8n-coco", "0.2.0"): the series the analysis reads
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from detpipe.deploy import queries
from detpipe.errors import InvalidInput

STRATEGIES = ("rollout", "gateway", "kserve")
FORMATS = ("onnx", "onnx-int8", "engine")
MANUAL = "manual"  # --pause manual: wait for `detpipe deploy promote` at every step
# Go duration strings as Argo Rollouts' pause.duration and Prometheus' ranges accept them.
_DURATION_RE = re.compile(r"^([1-9][0-9]*)(s|m|h)\Z")
# Kubernetes object names (DNS-1035 labels); the longest derived name adds "-canary" (7) and
# Argo Rollouts appends a pod-template hash (up to 11) to ReplicaSets: stay at 40.
_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?\Z")
MAX_NAME = 40
# Label values: at most 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends.
_LABEL_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?\Z")


def default_image(gpu: bool = False) -> str:
    """The serving image (:mod:`detpipe.images`, the one place images are named)."""
    from detpipe.images import SERVE_GPU_IMAGE, SERVE_IMAGE

    return SERVE_GPU_IMAGE if gpu else SERVE_IMAGE


def parse_steps(text: str) -> tuple[int, ...]:
    """``"10,50,100"`` -> ``(10, 50, 100)``: increasing canary weights in percent, ending at 100.

    Raises:
        InvalidInput: not integers, not increasing within 1..100, or not ending at 100.
    """
    try:
        steps = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise InvalidInput(f"--steps {text}: expected comma-separated percentages, e.g. 10,50,100") from None
    if any(not 0 < s <= 100 for s in steps) or list(steps) != sorted(set(steps)) or steps[-1] != 100:
        raise InvalidInput(f"--steps {text}: weights must increase within 1..100 and end at 100")
    return steps


def parse_pause(text: str) -> str:
    """``"10m"``, ``"30s"``, ``"1h"`` or ``"manual"`` (wait for ``deploy promote``).

    Raises:
        InvalidInput: anything else.
    """
    if text == MANUAL or _DURATION_RE.match(text):
        return text
    raise InvalidInput(f"--pause {text}: expected a duration like 30s, 10m, 1h, or 'manual'")


def duration_seconds(text: str) -> int:
    """``"30s"`` -> 30, ``"10m"`` -> 600, ``"1h"`` -> 3600 (the durations :func:`parse_pause` takes).

    Raises:
        InvalidInput: not such a duration.
    """
    match = _DURATION_RE.match(text)
    if not match:
        raise InvalidInput(f"{text}: expected a duration like 30s, 10m, 1h")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


def release_identity(model_uri: str) -> tuple[str, str]:
    """(model name, version) of a pinned release URI ``<store>/models/<name>/<version>``.

    These are the ``model``/``version`` labels the server puts on its metrics for that
    release, so the analysis can be rendered without reading the store.

    Raises:
        InvalidInput: a model file or an unpinned ``.../models/<name>`` (pods each resolving
            "the newest" could run different versions under one canary); a name or version
            that :func:`detpipe.store.manifest.parse_release_uri` refuses.
    """
    from detpipe.store.manifest import NotARelease, parse_release_uri

    try:
        _, name, version = parse_release_uri(model_uri)
    except NotARelease:
        raise InvalidInput(
            f"--model-uri {model_uri}: expected a release, <store>/models/NAME/VERSION "
            "(pods fetch it from the store and verify it against its manifest)"
        ) from None
    except InvalidInput as e:
        raise InvalidInput(f"--model-uri {model_uri}: {e}") from None
    if version is None:
        raise InvalidInput(
            f"--model-uri {model_uri}: pin a version (.../models/{name}/VERSION): "
            "every pod of a canary must run the same release"
        )
    return name, version


@dataclass(frozen=True)
class CanaryConfig:
    """A canary rollout of one release of the inference server.

    Attributes:
        model_uri: the release to roll out (``s3://BUCKET/models/NAME/VERSION``).
        image: serving image (default: :data:`detpipe.images.SERVE_IMAGE`, or the GPU one).
        steps: canary weights in percent; the last (100) is full promotion.
        pause: how long each step holds before its analysis, or ``"manual"``.
        strategy: ``rollout`` (Argo Rollouts), ``gateway`` (Gateway API HTTPRoute weights) or
            ``kserve`` (a KServe InferenceService's ``canaryTrafficPercent``, Serverless mode).
        namespace: namespace of every object.
        name: name of the Rollout / Deployments and prefix of the Services.
        model_format: which file of the release the pods serve.
        replicas: serving pods (the canary's share of them follows the weight under Argo); under
            Argo the HPA's minimum, which scales the Rollout up to ``max_replicas`` on CPU.
        max_replicas: the HPA's maximum (strategy rollout, and k8s/serving/gpu).
        gpu: GPU pods (``nvidia.com/gpu: 1`` each, the GPU serving image).
        prometheus_url: where the AnalysisRuns query Prometheus.
        analysis_window: PromQL rate window of every check.
        analysis_interval: time between measurements of an analysis.
        analysis_count: measurements per analysis step.
        max_error_rate, max_latency_ratio: limits of the error-rate and latency checks.
        min_agreement: limit of the shadow-agreement check; ``None``: no shadow ran, no such check.
        gateway: the Gateway the HTTPRoute attaches to (strategy gateway).
        stable_model_uri: the release the stable Deployment runs (strategy gateway; ``None``:
            leave the stable Deployment as it is, k8s/serving's ``detpipe-serve``).
        s3_endpoint: the store as KServe's storage initializer reaches it (strategy kserve):
            ``https://HOST:PORT`` or ``http://HOST:PORT``.
        s3_region: the store's region (strategy kserve; MinIO's default ``us-east-1``).
        s3_secret: the Secret with the store's credentials that the InferenceService's
            ServiceAccount names (strategy kserve; never read nor written by detpipe).
        ready_timeout: how long ``--auto`` waits for a step's traffic to reach the canary
            revision before rolling back (strategy kserve).
    """

    model_uri: str
    image: str = ""
    steps: tuple[int, ...] = (10, 50, 100)
    pause: str = "10m"
    strategy: str = "rollout"
    namespace: str = "detpipe"
    name: str = "detpipe-serve"
    model_format: str = "onnx"
    replicas: int = 2
    max_replicas: int = 6
    gpu: bool = False
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    analysis_window: str = "2m"
    analysis_interval: str = "1m"
    analysis_count: int = 3
    max_error_rate: float = queries.MAX_ERROR_RATE
    max_latency_ratio: float = queries.MAX_LATENCY_RATIO
    min_agreement: float | None = None
    gateway: str = "detpipe-gateway"
    stable_model_uri: str | None = None
    s3_endpoint: str = "https://minio.detpipe.svc.cluster.local:9000"
    s3_region: str = "us-east-1"
    s3_secret: str = "detpipe-kserve-s3"
    ready_timeout: str = "10m"
    model_name: str = field(init=False)
    version: str = field(init=False)

    def __post_init__(self) -> None:
        name, version = release_identity(self.model_uri)
        for what, value in (("model name", name), ("version", version)):
            if not _LABEL_RE.match(value):
                raise InvalidInput(
                    f"--model-uri {self.model_uri}: {what} {value!r} is not a valid label value"
                )
        object.__setattr__(self, "model_name", name)
        object.__setattr__(self, "version", version)
        if not self.image:
            object.__setattr__(self, "image", default_image(self.gpu))
        if self.stable_model_uri is not None:
            release_identity(self.stable_model_uri)
        if self.strategy not in STRATEGIES:
            raise InvalidInput(f"--strategy {self.strategy}: expected one of {', '.join(STRATEGIES)}")
        if self.model_format not in FORMATS:
            raise InvalidInput(f"--format {self.model_format}: expected one of {', '.join(FORMATS)}")
        if len(self.name) > MAX_NAME or not _NAME_RE.match(self.name):
            raise InvalidInput(
                f"--name {self.name}: must be a lowercase DNS label of at most {MAX_NAME} characters"
            )
        if not _NAME_RE.match(self.namespace):
            raise InvalidInput(f"--namespace {self.namespace}: must be a lowercase DNS label")
        parse_steps(",".join(map(str, self.steps)))
        parse_pause(self.pause)
        for flag, value in (
            ("--analysis-window", self.analysis_window),
            ("--analysis-interval", self.analysis_interval),
        ):
            if not _DURATION_RE.match(value):
                raise InvalidInput(f"{flag} {value}: expected a duration like 30s, 2m")
        if self.replicas < 1 or self.analysis_count < 1:
            raise InvalidInput("--replicas and --analysis-count must be >= 1")
        if self.max_replicas < self.replicas:
            raise InvalidInput(f"--max-replicas {self.max_replicas}: below --replicas {self.replicas}")
        if not 0 <= self.max_error_rate <= 1 or self.max_latency_ratio <= 0:
            raise InvalidInput("--max-error-rate must be within 0..1 and --max-latency-ratio positive")
        if self.min_agreement is not None and not 0 <= self.min_agreement <= 1:
            raise InvalidInput("--min-agreement must be within 0..1")
        if self.strategy == "kserve":
            from detpipe.deploy.kserve import check_config

            check_config(self)

    def checks(self, model: str, version: str, scope: queries.Scope | None = None) -> list[queries.Check]:
        """The analysis checks with these limits, for ``model``/``version`` (values or placeholders)."""
        return queries.checks(
            model,
            version,
            window=self.analysis_window,
            max_error_rate=self.max_error_rate,
            max_latency_ratio=self.max_latency_ratio,
            min_agreement=self.min_agreement,
            scope=scope,
        )
