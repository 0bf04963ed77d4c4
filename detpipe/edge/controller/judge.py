"""What a rollout step's reports add up to, and the decision they call for. Pure functions.

:func:`count` reads one pass of valid signed reports (:class:`~detpipe.edge.reports.Reading`)
through the fleet's own rule (:func:`detpipe.edge.fleet.on_version`): ``ok`` runs the version,
``failed`` failed its check on it (health check, hash, crash, rollback on the device),
``incompatible`` has no target of it that fits (no failure). ``selected`` is the enrolled
devices the step's percentage takes in (:func:`detpipe.edge.rollout.bucket`) plus any device
that reported on the version anyway (a rollout group).

:func:`decide` (for a progressing rollout)::

    hold      no device of the class is enrolled (a rollout to nobody proves nothing)
    abort     ok + failed >= min(min_reports, selected), at least 1, and failed share >
              max_failure_pct (a step that selects fewer devices than min_reports is judged
              once all of them reported: it never advances on failures)
    advance   ok + failed >= min(min_reports, selected), bake over, share within the limit
              (after the last step: complete); a step that selects no enrolled device
              (5 % of a small fleet) advances after its bake
    hold      otherwise (waiting for reports, or baking)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from detpipe.edge.fleet import on_version
from detpipe.edge.reports import Reading
from detpipe.edge.rollout import bucket


@dataclass(frozen=True)
class Counts:
    """Valid reports about one version at one step."""

    selected: int
    ok: int
    failed: int
    incompatible: int
    enrolled: int = 0

    @property
    def reports(self) -> int:
        """Reports that tried the version (``incompatible`` ones did not)."""
        return self.ok + self.failed

    @property
    def failed_pct(self) -> float:
        return 100.0 * self.failed / self.reports if self.reports else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reports": self.reports, "failed_pct": round(self.failed_pct, 2)}

    def describe(self) -> str:
        return (
            f"{self.ok} ok, {self.failed} failed, {self.incompatible} incompatible of "
            f"{self.selected} selected"
        )


def count(reading: Reading, version: str, sha256s: set[str], pct: int) -> Counts:
    """The reports of ``reading`` about ``version`` (its targets' ``sha256s``) at ``pct`` percent."""
    says = {device: on_version(r, version, sha256s) for device, r in reading.valid.items()}
    selected = {d for d in reading.enrolled if bucket(d, version) < pct}
    selected |= {d for d, s in says.items() if s is not None and d in reading.enrolled}
    values = list(says.values())
    running, failed, incompatible = (values.count(s) for s in ("running", "failed", "incompatible"))
    return Counts(len(selected), running, failed, incompatible, enrolled=len(reading.enrolled))


@dataclass(frozen=True)
class Verdict:
    """``action`` (abort, advance, complete, hold) and the reason, in words."""

    action: str
    reason: str


def decide(state: dict[str, Any], counts: Counts, now: datetime) -> Verdict:
    """The decision for a progressing rollout at ``state['step']`` given ``counts`` (module docstring)."""
    from detpipe.edge.controller.state import parse_time

    steps, step = state["steps"], state["step"]
    limit, wanted = float(state["max_failure_pct"]), int(state["min_reports"])
    version = state["version"]
    failed, pct = counts.failed, counts.failed_pct
    share = f"{failed} of {counts.reports} reports on version {version} failed ({pct:.1f}%"
    if counts.enrolled == 0:
        return Verdict("hold", "no device of the class is enrolled (detpipe edge enroll): nothing to judge")
    needed = min(wanted, counts.selected)  # a step that selects fewer devices cannot give more
    if counts.reports >= max(needed, 1) and counts.failed_pct > limit:
        return Verdict("abort", f"{share} > {limit:g}%)")
    if counts.reports < needed:
        return Verdict("hold", f"waiting for reports: {counts.reports} of {needed} at {state['pct']}%")
    started = parse_time(state.get("step_started_at")) or now
    bake = timedelta(seconds=int(state["bake_s"]))
    if now - started < bake:
        left = bake - (now - started)
        return Verdict("hold", f"baking at {state['pct']}%: {_span(left)} left of {_span(bake)}")
    within = f"{share} <= {limit:g}%)" if counts.reports else f"no device selected at {state['pct']}%"
    if step + 1 >= len(steps):
        return Verdict("complete", f"{within}: rollout of {version} complete")
    return Verdict("advance", f"{within}: {state['pct']}% -> {steps[step + 1]}%")


def _span(delta: timedelta) -> str:
    s = max(0, int(delta.total_seconds()))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
