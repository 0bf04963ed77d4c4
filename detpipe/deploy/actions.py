"""``detpipe deploy promote | rollback | status`` on an Argo Rollout or a Gateway API canary.

(KServe's InferenceService canary: :mod:`detpipe.deploy.kserve_actions`.)

For a Rollout these are the patches ``kubectl argo rollouts promote`` / ``abort`` send
(argo-rollouts v1.9 ``pkg/kubectl-argo-rollouts/cmd/promote/promote.go``, ``abort/abort.go``):
merge patches of the ``status`` subresource (falling back to the object itself where a
controller older than v0.10 has none), plus ``spec.paused: false`` when the Rollout was
paused by hand. The controller then does the rest: next step, or back to stable.

For a Gateway API canary detpipe is the controller: promote moves the HTTPRoute's weights
to the next step of its ``detpipe.io/steps`` annotation; past the last one below 100 it moves
the stable Deployment onto the canary's release, sends all traffic to stable and scales the
canary to 0. Rollback sends all traffic to stable and scales the canary to 0.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from detpipe.deploy import objects as o
from detpipe.deploy.cluster import STRATEGIC, Kube
from detpipe.errors import InvalidInput, NotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CanaryStatus:
    """Where a canary stands (``detpipe deploy status``; JSON with ``--json``)."""

    strategy: str
    name: str
    phase: str
    canary_weight: int
    step: str = ""
    canary_version: str = ""
    model_uri: str = ""
    message: str = ""
    checks: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # the strategy's own (KServe: revisions)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- Argo Rollouts


def _canary(ro: dict[str, Any]) -> dict[str, Any] | None:
    return ((ro.get("spec") or {}).get("strategy") or {}).get("canary")


def _step_index(ro: dict[str, Any]) -> int | None:
    """``replicasetutil.GetCurrentCanaryStep``'s index: None without steps, else 0 when unset."""
    canary = _canary(ro)
    if not canary or not canary.get("steps"):
        return None
    return int((ro.get("status") or {}).get("currentStepIndex") or 0)


def promote_patches(ro: dict[str, Any]) -> tuple[dict | None, dict | None, dict]:
    """(spec patch, status patch, unified patch) of a plain ``promote`` (promote.go ``getPatches``)."""
    spec, status = ro.get("spec") or {}, ro.get("status") or {}
    steps = (_canary(ro) or {}).get("steps") or []
    spec_patch = {"spec": {"paused": False}} if spec.get("paused") else None
    status_patch = None
    unified: dict[str, Any] = {"spec": {"paused": False}, "status": {"pauseConditions": None}}
    index = _step_index(ro)
    run = ((status.get("canary") or {}).get("currentStepAnalysisRunStatus") or {}).get("status")
    inconclusive = _canary(ro) is not None and run == "Inconclusive"
    if inconclusive and status.get("pauseConditions") and status.get("controllerPause"):
        if index is not None:
            status_patch = {
                "status": {
                    "pauseConditions": None,
                    "controllerPause": False,
                    "currentStepIndex": min(index + 1, len(steps)),
                }
            }
    elif status.get("pauseConditions"):
        status_patch = {"status": {"pauseConditions": None}}
    elif _canary(ro) is not None and index is not None:
        nxt = min(index + 1, len(steps))
        status_patch = {"status": {"pauseConditions": None, "currentStepIndex": nxt}}
        unified = {"spec": {"paused": False}, "status": {"pauseConditions": None, "currentStepIndex": nxt}}
    return spec_patch, status_patch, unified


def _patch_status(kube: Kube, ns: str, name: str, status_patch: dict, unified: dict) -> bool:
    """Patch the status subresource; False when the CRD has none (the caller sends ``unified``)."""
    try:
        kube.patch("Rollout", ns, name, status_patch, subresource="status")
        return True
    except NotFound:
        kube.get("Rollout", ns, name)  # the Rollout itself is gone: let NotFound through
        kube.patch("Rollout", ns, name, unified)
        return False


def promote_rollout(kube: Kube, ns: str, name: str) -> None:
    """What ``kubectl argo rollouts promote NAME`` does."""
    ro = kube.get("Rollout", ns, name)
    spec_patch, status_patch, unified = promote_patches(ro)
    if status_patch is not None and not _patch_status(kube, ns, name, status_patch, unified):
        return
    if spec_patch is not None:
        kube.patch("Rollout", ns, name, spec_patch)


ABORT = {"status": {"abort": True}}


def abort_rollout(kube: Kube, ns: str, name: str) -> None:
    """What ``kubectl argo rollouts abort NAME`` does: traffic and replicas back to stable."""
    _patch_status(kube, ns, name, ABORT, ABORT)


def current_weight(ro: dict[str, Any]) -> int:
    """``replicasetutil.GetCurrentSetWeight``: 0 when aborted, 100 past the steps."""
    status = ro.get("status") or {}
    if status.get("abort"):
        return 0
    index = _step_index(ro)
    steps = (_canary(ro) or {}).get("steps") or []
    if index is None or index >= len(steps):
        return 100
    for step in reversed(steps[: index + 1]):
        if "setWeight" in step:
            return int(step["setWeight"])
    return 0


def rollout_status(kube: Kube, ns: str, name: str) -> CanaryStatus:
    """Phase, step and weight of a Rollout as its controller reports them."""
    ro = kube.get("Rollout", ns, name)
    status = ro.get("status") or {}
    steps = (_canary(ro) or {}).get("steps") or []
    index = _step_index(ro)
    labels = ((ro.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
    args = _container(ro).get("args") or []
    phase = status.get("phase") or "Unknown"
    if status.get("abort"):
        phase = "Aborted"
    return CanaryStatus(
        strategy="rollout",
        name=name,
        phase=phase,
        canary_weight=current_weight(ro),
        step=f"{min(index, len(steps)) if index is not None else 0}/{len(steps)}",
        canary_version=labels.get(o.VERSION_LABEL, ""),
        model_uri=next((a.split("=", 1)[1] for a in args if a.startswith("--model=")), ""),
        message=status.get("message") or "",
    )


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = (((workload.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")
    return next((c for c in containers or [] if c.get("name") == "serve"), {})


# ---------------------------------------------------------------- Gateway API


def _weights(route: dict[str, Any], name: str) -> tuple[int, int]:
    for rule in (route.get("spec") or {}).get("rules") or []:
        refs = {r.get("name"): int(r.get("weight", 1)) for r in rule.get("backendRefs") or []}
        if f"{name}-canary" in refs:
            return refs.get(f"{name}-stable", 0), refs[f"{name}-canary"]
    raise InvalidInput(f"HTTPRoute {name} has no backendRef {name}-canary: not a detpipe canary")


def _set_weights(kube: Kube, ns: str, name: str, route: dict[str, Any], canary: int) -> None:
    rules = []
    for rule in route["spec"]["rules"]:
        refs = [r["name"] for r in rule.get("backendRefs") or []]
        if f"{name}-canary" in refs:
            rule = {**rule, "backendRefs": o.backend_refs(name, 100 - canary, canary)}
        rules.append(rule)
    kube.patch("HTTPRoute", ns, name, {"spec": {"rules": rules}})  # a merge patch replaces the list
    log.info("HTTPRoute %s/%s: stable %d%%, canary %d%%", ns, name, 100 - canary, canary)


def _steps(route: dict[str, Any]) -> list[int]:
    text = ((route.get("metadata") or {}).get("annotations") or {}).get(o.STEPS_ANNOTATION, "100")
    return [int(s) for s in text.split(",")]


def gateway_status(kube: Kube, ns: str, name: str) -> CanaryStatus:
    """Weights of the HTTPRoute and readiness of the canary Deployment."""
    route = kube.get("HTTPRoute", ns, name)
    _, canary = _weights(route, name)
    steps = _steps(route)
    uri = ((route.get("metadata") or {}).get("annotations") or {}).get(o.MODEL_URI_ANNOTATION, "")
    try:
        dep = kube.get("Deployment", ns, f"{name}-canary")
    except NotFound:
        dep = {}
    wanted = int((dep.get("spec") or {}).get("replicas") or 0)
    ready = int((dep.get("status") or {}).get("readyReplicas") or 0)
    labels = (((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
    if canary == 0:
        phase = "Stable"
    elif ready < wanted or not dep:
        phase = "Progressing"
    else:
        phase = "Paused"  # waiting for promote at this step
    done = sum(1 for s in steps if s <= canary)
    return CanaryStatus(
        strategy="gateway",
        name=name,
        phase=phase,
        canary_weight=canary,
        step=f"{done}/{len(steps)}",
        canary_version=labels.get(o.VERSION_LABEL, ""),
        model_uri=uri,
        message=f"canary pods ready {ready}/{wanted}",
    )


def promote_gateway(kube: Kube, ns: str, name: str) -> int:
    """Move to the next step's weight; past the last one below 100, make the canary stable.

    Returns:
        The canary's weight now (0 after full promotion: the stable track runs the release).
    """
    route = kube.get("HTTPRoute", ns, name)
    _, canary = _weights(route, name)
    nxt = next((s for s in _steps(route) if s > canary), 100)
    if nxt < 100:
        _set_weights(kube, ns, name, route, nxt)
        return nxt
    dep = kube.get("Deployment", ns, f"{name}-canary")
    container = _container(dep)
    labels = dep["spec"]["template"]["metadata"]["labels"]
    patch = {
        "spec": {
            "template": {
                "metadata": {
                    "labels": {k: v for k, v in labels.items() if k in (o.VERSION_LABEL, "detpipe.io/model")}
                },
                "spec": {
                    "containers": [{"name": "serve", "image": container["image"], "args": container["args"]}]
                },
            }
        }
    }
    kube.patch("Deployment", ns, name, patch, content_type=STRATEGIC)  # surge first: no capacity dip
    _set_weights(kube, ns, name, route, 0)
    kube.patch("Deployment", ns, f"{name}-canary", {"spec": {"replicas": 0}})
    return 0


def rollback_gateway(kube: Kube, ns: str, name: str) -> None:
    """All traffic to stable, canary scaled to 0 (its Deployment stays for inspection)."""
    route = kube.get("HTTPRoute", ns, name)
    _set_weights(kube, ns, name, route, 0)
    kube.patch("Deployment", ns, f"{name}-canary", {"spec": {"replicas": 0}})
