"""``detpipe deploy canary --strategy kserve --auto``: judge every step, then promote or roll back.

KServe moves traffic but judges nothing. This is the analysis Argo Rollouts would run, on
the same checks (:func:`detpipe.deploy.queries.checks`, the AnalysisTemplates' queries and
limits), narrowed to the pods of the canary revision (and, for the latency comparison, of the
stable one) with the ``namespace`` and ``pod`` target labels that Prometheus' Kubernetes pod
discovery sets (Knative names a revision's pods ``<revision>-deployment-<hash>-<hash>``).

For each step below 100: set ``canaryTrafficPercent``, wait until KServe reports that share on
the canary revision (a revision that fails, or ``--ready-timeout`` passing, rolls back), hold
``--pause``, then take ``--analysis-count`` measurements ``--analysis-interval`` apart. As
under Argo, a check fails when more measurements fail than its ``failureLimit``; a measurement
without data (no traffic reached the canary) or that Prometheus could not answer leaves the
check inconclusive, which Argo would pause on for a person: here nobody is watching, so it
rolls back too. Every step passed: ``canaryTrafficPercent`` is removed (promoted, exit 0).
Rolled back: ``canaryTrafficPercent: 0`` (exit 4).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from detpipe.deploy import kserve_actions as ka
from detpipe.deploy import queries
from detpipe.deploy.cluster import Kube
from detpipe.deploy.config import CanaryConfig, duration_seconds
from detpipe.deploy.queries import Check, Scope, label_value
from detpipe.errors import InvalidInput, Unavailable

log = logging.getLogger(__name__)

NAMESPACE_LABEL = "namespace"  # the target labels Prometheus' pod discovery relabels to
POD_LABEL = "pod"
MAX_POLL_S = 5.0


def revision_pods(revision: str) -> str:
    """A PromQL regex of the pods of a Knative revision (``<revision>-deployment-...``)."""
    return label_value(re.escape(f"{revision}-deployment-")) + ".*"


def revision_scope(namespace: str, canary: str, stable: str) -> Scope:
    """The canary revision's pods for the checks, the stable revision's for the comparison."""
    ns = f'{NAMESPACE_LABEL}="{label_value(namespace)}"'
    return Scope(
        canary=f'{ns},{POD_LABEL}=~"{revision_pods(canary)}"',
        stable=f'{ns},{POD_LABEL}=~"{revision_pods(stable)}"',
    )


def kserve_checks(
    name: str, namespace: str, version: str, canary: str, stable: str, **limits: Any
) -> list[Check]:
    """The canary's checks on the revisions' pods, for the model the runtime serves under the
    InferenceService's ``name``; ``limits``: :func:`detpipe.deploy.queries.checks`' keywords."""
    return queries.checks(name, version, scope=revision_scope(namespace, canary, stable), **limits)


@dataclass(frozen=True)
class Verdict:
    """One step's analysis: ``pass``, ``fail`` or ``inconclusive``, with why."""

    outcome: str
    reason: str
    measurements: list[list[dict[str, Any]]] = field(default_factory=list)


def judge(checks: list[Check], measurements: list[list[dict[str, Any]]]) -> Verdict:
    """Argo Rollouts' rule per check: failed > failureLimit fails; any measurement without data
    (inconclusiveLimit 0) is inconclusive; else it passes."""
    for check in checks:
        got = [next(r for r in m if r["name"] == check.name) for m in measurements]
        failed = [r for r in got if r["verdict"] == "fail"]
        if len(failed) > check.failure_limit:
            values = ", ".join(f"{r['value']:.4g}" for r in failed)
            return Verdict("fail", f"{check.name} {values} (limit {check.limit:g}), "
                           f"{len(failed)} > failureLimit {check.failure_limit}", measurements)  # fmt: skip
    for check in checks:
        got = [next(r for r in m if r["name"] == check.name) for m in measurements]
        missing = [r for r in got if r["verdict"] in ("inconclusive", "error")]
        if missing:
            return Verdict(
                "inconclusive",
                f"{check.name}: no data in {len(missing)} of {len(got)} measurements "
                "(no traffic reached the canary, or Prometheus did not answer)",
                measurements,
            )
    return Verdict("pass", "every check passed", measurements)


def _measure(url: str, checks: list[Check]) -> list[dict[str, Any]]:
    """One measurement of every check; Prometheus failing makes it an ``error`` (inconclusive)."""
    from detpipe.deploy.prometheus import evaluate

    try:
        return evaluate(url, checks)
    except (Unavailable, InvalidInput) as e:
        log.warning("measurement failed: %s", e)
        return [{"name": c.name, "value": None, "limit": c.limit, "verdict": "error"} for c in checks]


@dataclass(frozen=True)
class AutoResult:
    """How ``--auto`` ended: promoted, or rolled back and why."""

    promoted: bool
    reason: str
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.promoted else 4


class _RollBack(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class AutoCanary:
    """The control loop over one applied canary (clock and sleep injectable for tests)."""

    kube: Kube
    cfg: CanaryConfig
    applied: ka.Applied
    report: Callable[[str], None] = print
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.ns, self.name = self.cfg.namespace, self.cfg.name
        self.interval_s = duration_seconds(self.cfg.analysis_interval)
        self.poll_s = min(MAX_POLL_S, float(self.interval_s))
        self.timeout_s = duration_seconds(self.cfg.ready_timeout)
        self.expect_new = self.applied.changed  # a new revision replaces applied.previous

    def _isvc(self) -> dict[str, Any]:
        return self.kube.get(ka.KIND, self.ns, self.name)

    def _wait(self, want: int) -> ka.Revisions:
        """Poll until the canary revision gets ``want`` % (or is all there is): its Revisions."""
        deadline = self.monotonic() + self.timeout_s
        while True:
            revs = ka.revisions(self._isvc())
            fresh = revs.canary and not (self.expect_new and revs.canary == self.applied.previous)
            if fresh and revs.failed:
                raise _RollBack(f"canary revision {revs.canary} failed: {revs.failed}")
            if fresh and revs.ready and (revs.rolled_out or revs.canary_percent == want):
                return revs
            if self.monotonic() >= deadline:
                seen = f"{revs.canary or 'none'}: {revs.canary_percent}%, ready {revs.ready}"
                raise _RollBack(f"no {want}% on the canary revision within {self.cfg.ready_timeout} ({seen})")
            self.sleep(self.poll_s)

    def _analyse(self, revs: ka.Revisions) -> Verdict:
        cfg = self.cfg
        checks = kserve_checks(
            cfg.name, cfg.namespace, cfg.version, revs.canary, revs.stable, window=cfg.analysis_window,
            max_error_rate=cfg.max_error_rate, max_latency_ratio=cfg.max_latency_ratio,
        )  # fmt: skip
        measurements: list[list[dict[str, Any]]] = []
        for i in range(self.cfg.analysis_count):
            if i:
                self.sleep(self.interval_s)
            measurements.append(_measure(self.cfg.prometheus_url, checks))
            shown = ", ".join(
                f"{r['name']} {'no data' if r['value'] is None else format(r['value'], '.4g')} {r['verdict']}"
                for r in measurements[-1]
            )
            self.report(f"  measurement {i + 1}/{self.cfg.analysis_count}: {shown}")
            verdict = judge(checks, measurements)
            if verdict.outcome == "fail":  # as Argo: no need to measure on
                return verdict
        return judge(checks, measurements)

    def run(self) -> AutoResult:
        """Walk the steps from the InferenceService's current percentage; promote or roll back."""
        start = ka.revisions(self._isvc()).spec_percent
        if start is None:
            return self._finish([], "the release is rolled out already")
        steps: list[dict[str, Any]] = []
        try:
            for step in [s for s in self.cfg.steps if s < 100 and s >= start]:
                if ka.revisions(self._isvc()).spec_percent != step:
                    ka.set_percent(self.kube, self.ns, self.name, step)
                revs = self._wait(step)
                self.expect_new = False  # the canary revision is known from here on
                if revs.rolled_out or not revs.stable:
                    return self._finish(
                        steps, f"{revs.canary} is the only revision: nothing to canary against"
                    )
                self.report(
                    f"step {step}%: canary {revs.canary} has {revs.canary_percent}% "
                    f"(stable {revs.stable}); holding {self.cfg.pause}"
                )
                self.sleep(duration_seconds(self.cfg.pause))
                verdict = self._analyse(revs)
                steps.append({"percent": step, "canary": revs.canary, "stable": revs.stable,
                              "verdict": verdict.outcome, "reason": verdict.reason,
                              "measurements": verdict.measurements})  # fmt: skip
                if verdict.outcome != "pass":
                    raise _RollBack(f"step {step}% {verdict.outcome}: {verdict.reason}")
                self.report(f"step {step}%: {verdict.reason}")
        except _RollBack as e:
            ka.set_percent(self.kube, self.ns, self.name, 0)
            self.report(f"rolled back: canaryTrafficPercent 0 (KServe sends all traffic to the last "
                        f"rolled-out revision): {e.reason}")  # fmt: skip
            return AutoResult(False, e.reason, steps)
        return self._finish(steps, "every step passed")

    def _finish(self, steps: list[dict[str, Any]], reason: str) -> AutoResult:
        ka.set_percent(self.kube, self.ns, self.name, None)
        self.report(f"promoted: canaryTrafficPercent removed, all traffic to the newest revision ({reason})")
        return AutoResult(True, reason, steps)


def check_auto(cfg: CanaryConfig) -> None:
    """What ``--auto`` needs (checked before anything is applied).

    Raises:
        InvalidInput: another strategy (Argo Rollouts analyses by itself), or ``--pause manual``.
    """
    if cfg.strategy != "kserve":
        why = (
            "Argo Rollouts runs the analysis itself"
            if cfg.strategy == "rollout"
            else "deploy promote moves it"
        )
        raise InvalidInput(f"--auto: only with --strategy kserve (with --strategy {cfg.strategy}, {why})")
    if cfg.pause == "manual":
        raise InvalidInput("--auto needs a --pause duration (manual waits for a person)")


def run_auto(
    kube: Kube, cfg: CanaryConfig, applied: ka.Applied, report: Callable[[str], None] = print
) -> AutoResult:
    """Judge the applied canary step by step; promote (exit 0) or roll back (exit 4)."""
    check_auto(cfg)
    isvc = kube.get(ka.KIND, cfg.namespace, cfg.name)
    ka.require_serverless(isvc)
    return AutoCanary(kube, cfg, applied, report=report).run()
