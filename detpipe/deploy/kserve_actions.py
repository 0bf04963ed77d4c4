"""Apply, promote, roll back and read a KServe canary (Serverless mode's ``canaryTrafficPercent``).

KServe is the controller: every change of the predictor is a new revision, and
``spec.predictor.canaryTrafficPercent`` sends that share to the newest revision and the rest
to the last one rolled out to 100 % (``status.components.predictor.latestRolledoutRevision``).
``promote`` moves the percentage to the next of the InferenceService's ``detpipe.io/steps`` and
past the last one below 100 removes it (all traffic to the newest revision, which KServe then
records as rolled out). ``rollback`` sets it to 0: KServe's rollback to the last revision that
was fully rolled out. The status is KServe's: the predictor's revisions, its traffic
(Knative's traffic targets) and the conditions.

Standard (raw deployment) mode has no such split: KServe reads ``canaryTrafficPercent`` in its
Knative reconciler only, so promote, rollback and ``--auto`` refuse an InferenceService in
that mode.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from detpipe.deploy import kserve as ks
from detpipe.deploy import objects as o
from detpipe.deploy.actions import CanaryStatus
from detpipe.deploy.cluster import Kube
from detpipe.deploy.config import CanaryConfig
from detpipe.errors import InvalidInput, NotFound

log = logging.getLogger(__name__)

KIND = "InferenceService"
# Conditions that turn False when the newest revision cannot become ready (Knative's
# ConfigurationsReady of the predictor, and KServe's aggregate of it).
FAILURE_CONDITIONS = ("PredictorConfigurationReady", "LatestDeploymentReady")


@dataclass(frozen=True)
class Revisions:
    """The predictor's revisions and traffic as KServe reports them.

    Attributes:
        canary: the newest revision (``latestCreatedRevision``), "" before KServe reported one.
        stable: the revision last rolled out to 100 % (``latestRolledoutRevision``).
        ready: the newest revision is ready (``latestReadyRevision`` is it).
        canary_percent: traffic reaching the newest revision now.
        spec_percent: ``canaryTrafficPercent`` (None: not set).
        failed: why the newest revision cannot become ready ("" when it can).
    """

    canary: str
    stable: str
    ready: bool
    canary_percent: int
    spec_percent: int | None
    failed: str = ""

    @property
    def rolled_out(self) -> bool:
        """The newest revision is the one rolled out (nothing is being canaried)."""
        return bool(self.canary) and self.canary == self.stable


@dataclass(frozen=True)
class Applied:
    """What ``apply_canary`` found and did.

    Attributes:
        docs: the objects applied.
        existed: the InferenceService was there before.
        previous: its newest revision before the apply ("" when it had none).
        changed: the apply changed the predictor or its runtime: KServe makes a new revision.
    """

    docs: list[dict[str, Any]]
    existed: bool
    previous: str
    changed: bool


def _predictor(isvc: dict[str, Any]) -> dict[str, Any]:
    return ((isvc.get("spec") or {}).get("predictor")) or {}


def deployment_mode(isvc: dict[str, Any]) -> str:
    """``status.deploymentMode``, else the annotation, else ``Serverless``."""
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    return (
        (isvc.get("status") or {}).get("deploymentMode")
        or annotations.get(ks.DEPLOYMENT_MODE)
        or ks.SERVERLESS
    )


def require_serverless(isvc: dict[str, Any]) -> None:
    """Refuse an InferenceService in Standard (raw deployment) mode: KServe splits no traffic there.

    Raises:
        InvalidInput: it is in Standard / RawDeployment mode.
    """
    mode = deployment_mode(isvc)
    if mode in ks.STANDARD_MODES:
        name = (isvc.get("metadata") or {}).get("name", "")
        raise InvalidInput(
            f"InferenceService {name} runs in {mode} mode: KServe reads canaryTrafficPercent in "
            "Serverless mode only; use --strategy rollout or gateway on that cluster"
        )


def conditions(isvc: dict[str, Any]) -> list[dict[str, Any]]:
    """``status.conditions`` (type, status, reason, message)."""
    return list((isvc.get("status") or {}).get("conditions") or [])


def revisions(isvc: dict[str, Any]) -> Revisions:
    """The predictor's revisions and where its traffic goes (``status.components.predictor``)."""
    comp = ((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}
    canary = comp.get("latestCreatedRevision") or ""
    ready = bool(canary) and comp.get("latestReadyRevision") == canary
    percent = sum(
        int(t.get("percent") or 0) for t in comp.get("traffic") or [] if t.get("revisionName") == canary
    )
    failed = ""
    if canary and not ready:
        by_type = {c.get("type"): c for c in conditions(isvc)}
        for kind in FAILURE_CONDITIONS:  # the predictor's own condition first
            cond = by_type.get(kind) or {}
            if cond.get("status") == "False":
                failed = ": ".join(x for x in (kind, cond.get("reason"), cond.get("message")) if x)
                break
    spec = _predictor(isvc).get("canaryTrafficPercent")
    return Revisions(
        canary=canary,
        stable=comp.get("latestRolledoutRevision") or "",
        ready=ready,
        canary_percent=percent,
        spec_percent=None if spec is None else int(spec),
        failed=failed,
    )


def _steps(isvc: dict[str, Any]) -> list[int]:
    text = ((isvc.get("metadata") or {}).get("annotations") or {}).get(o.STEPS_ANNOTATION, "100")
    return [int(s) for s in text.split(",")]


def set_percent(kube: Kube, ns: str, name: str, percent: int | None) -> None:
    """Merge-patch ``canaryTrafficPercent`` (None removes it: all traffic to the newest revision)."""
    kube.patch(KIND, ns, name, {"spec": {"predictor": {"canaryTrafficPercent": percent}}})
    shown = "removed" if percent is None else f"{percent}%"
    log.info("InferenceService %s/%s: canaryTrafficPercent %s", ns, name, shown)


def current_percent(cfg: CanaryConfig, isvc: dict[str, Any] | None) -> int | None:
    """The ``canaryTrafficPercent`` a (re-)apply of ``cfg`` keeps.

    A new release starts at the first step; the release the InferenceService already serves
    keeps its percentage (or its absence), so re-running a canary neither restarts it nor,
    after promotion, splits traffic again.
    """
    if isvc is None or ks.model_uri_of(isvc) != cfg.model_uri.rstrip("/"):
        return cfg.steps[0]
    return _predictor(isvc).get("canaryTrafficPercent")


def apply_canary(kube: Kube, cfg: CanaryConfig) -> Applied:
    """Server-side apply of the canary's objects, keeping a running canary's percentage.

    Raises:
        InvalidInput: the InferenceService exists in Standard mode.
        Unavailable: no KServe API on the cluster.
        ClusterError: the API server refused an object.
    """
    before = _get(kube, KIND, cfg.namespace, cfg.name)
    if before is not None:
        require_serverless(before)
    runtime_before = _get(kube, "ServingRuntime", cfg.namespace, ks.RUNTIME)
    docs = ks.render_kserve(cfg, current_percent(cfg, before))
    after = {doc["kind"]: kube.apply(doc) for doc in docs}
    changed = (
        before is None
        or ks.model_uri_of(before) != cfg.model_uri.rstrip("/")
        or _generation(before) != _generation(after.get(KIND))
        or _generation(runtime_before) != _generation(after.get("ServingRuntime"))
    )
    log.info("KServe canary %s %s applied (%d objects)", cfg.model_name, cfg.version, len(docs))
    previous = revisions(before).canary if before else ""
    return Applied(docs=docs, existed=before is not None, previous=previous, changed=changed)


def _get(kube: Kube, kind: str, ns: str, name: str) -> dict[str, Any] | None:
    try:
        return kube.get(kind, ns, name)
    except NotFound:
        return None


def _generation(obj: dict[str, Any] | None) -> Any:
    """``metadata.generation``: the API server bumps it on every change of the spec."""
    return ((obj or {}).get("metadata") or {}).get("generation")


def promote_kserve(kube: Kube, ns: str, name: str) -> int:
    """The next step's ``canaryTrafficPercent``; past the last one below 100, remove it.

    Returns:
        The canary's share now asked for (100 once removed).
    """
    isvc = kube.get(KIND, ns, name)
    require_serverless(isvc)
    percent = _predictor(isvc).get("canaryTrafficPercent")
    if percent is None:
        return 100  # nothing to promote: all traffic goes to the newest revision already
    nxt = next((s for s in _steps(isvc) if s > int(percent)), 100)
    set_percent(kube, ns, name, nxt if nxt < 100 else None)
    return nxt


def rollback_kserve(kube: Kube, ns: str, name: str) -> None:
    """``canaryTrafficPercent: 0``: all traffic back to the last fully rolled-out revision."""
    require_serverless(kube.get(KIND, ns, name))
    set_percent(kube, ns, name, 0)


def _phase(isvc: dict[str, Any], revs: Revisions) -> str:
    if deployment_mode(isvc) in ks.STANDARD_MODES:
        ready = next((c for c in conditions(isvc) if c.get("type") == "Ready"), {})
        return "Healthy" if ready.get("status") == "True" else "Progressing"
    if not revs.canary:
        return "Progressing"  # KServe has not reported a revision yet
    if revs.rolled_out or not revs.stable:
        return "Healthy" if revs.ready else "Progressing"
    if revs.spec_percent == 0:
        return "Aborted"
    if revs.failed:
        return "Degraded"
    if not revs.ready or revs.spec_percent is None:
        return "Progressing"  # the canary starting, or promoted and KServe moving traffic to it
    return "Paused"  # at a step: waiting for promote (or --auto's analysis)


def kserve_status(kube: Kube, ns: str, name: str) -> CanaryStatus:
    """Phase, traffic, revisions and conditions of the InferenceService, as KServe reports them."""
    isvc = kube.get(KIND, ns, name)
    revs = revisions(isvc)
    steps = _steps(isvc)
    comp = ((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}
    mode = deployment_mode(isvc)
    traffic = [
        {k: t[k] for k in ("revisionName", "percent", "latestRevision", "tag") if k in t}
        for t in comp.get("traffic") or []
    ]
    parts = [f"{t.get('revisionName', '?')} {t.get('percent', 0)}%" for t in traffic]
    message = revs.failed or (f"traffic: {', '.join(parts)}" if parts else "no traffic reported yet")
    if mode in ks.STANDARD_MODES:
        message = f"{mode} mode: KServe splits no canary traffic there"
    return CanaryStatus(
        strategy="kserve",
        name=name,
        phase=_phase(isvc, revs),
        canary_weight=revs.canary_percent,
        step=f"{sum(1 for s in steps if s <= revs.canary_percent)}/{len(steps)}",
        canary_version=(_predictor(isvc).get("labels") or {}).get(o.VERSION_LABEL, ""),
        model_uri=ks.model_uri_of(isvc),
        message=message,
        details={
            "deployment_mode": mode,
            "canary_revision": revs.canary,
            "stable_revision": revs.stable,
            "canary_traffic_percent": revs.spec_percent,
            "traffic": traffic,
            "conditions": [
                {k: c[k] for k in ("type", "status", "reason", "message") if k in c} for c in conditions(isvc)
            ],
        },
    )
