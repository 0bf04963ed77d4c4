"""The canary's health checks: PromQL over detpipe's own server metrics, with the limit each must meet.

One :class:`Check` per question an analysis asks (Argo Rollouts' advice: one AnalysisTemplate
per question). The queries are rendered here and nowhere else: the AnalysisTemplates
(:mod:`detpipe.deploy.objects`) take them with Argo placeholders for model and version
(``{{args.model}}``), ``detpipe deploy status --prometheus URL`` and the tests take them with
real values::

    for check in checks("yolov8n-coco", "0.2.0", window="2m"):
        print(check.name, check.query, check.limit)

Series read (the server's metrics contract, serving/metrics.py):

* ``detpipe_http_requests_total{route,method,code,model,version}``
* ``detpipe_http_request_duration_seconds_bucket{route,method,model,version,le}``
* ``detpipe_shadow_class_agreements_total`` / ``detpipe_shadow_matched_boxes_total``
  ``{version,shadow_version}``: the class agreement of a candidate run as ``--shadow``.

Only inference routes count (:data:`INFERENCE_ROUTES`); probes and ``/metrics`` scrapes
would dilute an error rate. "Stable" in the latency comparison is every other version of the
same model, so no stable version has to be known when the canary is rendered. A :class:`Scope`
narrows the same queries to some pods' series (``detpipe deploy canary --strategy kserve
--auto``: the canary revision's pods, and the stable revision's for the comparison).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Route templates of the server's inference endpoints (KServe v1 and the Open Inference Protocol).
INFERENCE_ROUTES = (
    "/v1/models/{name}:predict",
    "/v1/models/{name}:detect",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
)
REQUESTS = "detpipe_http_requests_total"
LATENCY_BUCKETS = "detpipe_http_request_duration_seconds_bucket"
SHADOW_AGREEMENTS = "detpipe_shadow_class_agreements_total"
SHADOW_MATCHED = "detpipe_shadow_matched_boxes_total"

# Default limits. 1 % errors is the usual SLO-style canary gate (Argo Rollouts' examples judge
# success rate >= 0.95-0.99); 1.25x stable's p95 leaves room for a cold canary's first minutes;
# 0.9 class agreement on matched boxes is where two COCO-trained detectors of one family differ
# by retraining noise only (an assumption to tune per model, hence a flag).
MAX_ERROR_RATE = 0.01
MAX_LATENCY_RATIO = 1.25
MIN_AGREEMENT = 0.9


@dataclass(frozen=True)
class Check:
    """One analysis question: a PromQL query whose first sample must meet ``limit``.

    Attributes:
        name: metric name in the AnalysisRun (and AnalysisTemplate ``detpipe-<name>``).
        query: the PromQL expression (an instant vector of one sample when there is traffic).
        limit: the bound the value is held to.
        at_most: True: value <= limit passes; False: value >= limit passes.
        failure_limit: failed measurements tolerated before the analysis fails (Argo ``failureLimit``).
    """

    name: str
    query: str
    limit: float
    at_most: bool
    failure_limit: int = 1

    def passes(self, value: float) -> bool | None:
        """The verdict on one measured value; ``None`` (inconclusive) for NaN: no traffic to judge."""
        if math.isnan(value):
            return None
        return value <= self.limit if self.at_most else value >= self.limit

    @property
    def success_condition(self) -> str:
        """Argo Rollouts' ``successCondition`` (expr language); an empty result is inconclusive."""
        op = "<=" if self.at_most else ">="
        return f"len(result) > 0 && result[0] {op} {self.limit:g}"

    @property
    def failure_condition(self) -> str:
        """``failureCondition``: the negation, so NaN and no data are neither (inconclusive)."""
        op = ">" if self.at_most else "<"
        return f"len(result) > 0 && result[0] {op} {self.limit:g}"


def label_value(text: str) -> str:
    """A PromQL string literal's content (backslash and quote escaped); Argo placeholders pass through."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def routes_regex(routes: tuple[str, ...] = INFERENCE_ROUTES) -> str:
    """A ``route=~`` regex matching exactly these templates, escaped for a PromQL string."""
    return label_value("|".join(re.escape(r) for r in routes))


@dataclass(frozen=True)
class Scope:
    """Label matchers added to a check's series selectors (PromQL, comma-separated; "" adds none).

    Attributes:
        canary: matchers of the canary's series, e.g. ``namespace="detpipe",pod=~"rev-2-.*"``.
        stable: matchers of the series the canary's latency is compared with.
    """

    canary: str = ""
    stable: str = ""


def _selector(model: str, version: str, *, same_version: bool = True, extra: str = "") -> str:
    op = "=" if same_version else "!="
    sel = f'model="{label_value(model)}",version{op}"{label_value(version)}",route=~"{routes_regex()}"'
    return f"{sel},{extra}" if extra else sel


def error_rate(model: str, version: str, window: str = "2m", *, scope: Scope | None = None) -> str:
    """Share of the version's inference requests answered 5xx over ``window``."""
    sel = _selector(model, version, extra=scope.canary if scope else "")
    # no 5xx series yet counts as 0 errors; no requests at all leaves the result empty (inconclusive)
    return (
        f'(sum(rate({REQUESTS}{{{sel},code=~"5.."}}[{window}])) or vector(0)) '
        f"/ sum(rate({REQUESTS}{{{sel}}}[{window}]))"
    )


def p95_latency(
    model: str, version: str, window: str = "2m", *, same_version: bool = True, extra: str = ""
) -> str:
    """95th percentile inference latency (seconds) of the version, or of every other version."""
    sel = _selector(model, version, same_version=same_version, extra=extra)
    return f"histogram_quantile(0.95, sum by (le) (rate({LATENCY_BUCKETS}{{{sel}}}[{window}])))"


def latency_ratio(model: str, version: str, window: str = "2m", *, scope: Scope | None = None) -> str:
    """The version's p95 latency divided by the p95 of the model's other (stable) versions."""
    scope = scope or Scope()
    canary = p95_latency(model, version, window, extra=scope.canary)
    return f"{canary} / {p95_latency(model, version, window, same_version=False, extra=scope.stable)}"


def shadow_agreement(version: str, window: str = "2m") -> str:
    """Class agreement on matched boxes of ``version`` run as a shadow beside the live model."""
    sel = f'shadow_version="{label_value(version)}"'
    return (
        f"sum(rate({SHADOW_AGREEMENTS}{{{sel}}}[{window}])) / sum(rate({SHADOW_MATCHED}{{{sel}}}[{window}]))"
    )


def checks(
    model: str,
    version: str,
    *,
    window: str = "2m",
    max_error_rate: float = MAX_ERROR_RATE,
    max_latency_ratio: float = MAX_LATENCY_RATIO,
    min_agreement: float | None = None,
    scope: Scope | None = None,
) -> list[Check]:
    """The canary's checks: error rate, latency against stable, and shadow agreement when given.

    Args:
        model: served model name (the ``model`` label; the release name).
        version: the canary's model version (the manifest's, or ``sha-<12 hex>`` for a file).
        window: PromQL range of the rates (a few scrape intervals at least).
        max_error_rate: highest 5xx share that passes.
        max_latency_ratio: highest canary/stable p95 ratio that passes.
        min_agreement: lowest shadow class agreement that passes; ``None``: no shadow ran.
        scope: matchers narrowing the error rate and latency to the canary's (and stable's) pods.
    """
    ratio = latency_ratio(model, version, window, scope=scope)
    out = [
        Check("error-rate", error_rate(model, version, window, scope=scope), max_error_rate, at_most=True),
        Check("latency-p95-ratio", ratio, max_latency_ratio, True, 2),
    ]
    if min_agreement is not None:
        out.append(Check("shadow-agreement", shadow_agreement(version, window), min_agreement, at_most=False))
    return out
