"""The rollout controller's cycle: read the state, decide at most once, apply, exit.

::

    ctl = Controller(store, "cpu", "2", keys=Path("ota-keys"),
                     spec=RolloutSpec(steps=(5, 25, 100), max_failure_pct=5, min_reports=3,
                                      bake=timedelta(minutes=30)))
    result = ctl.run_once()     # CycleResult(action="advance", status="progressing", pct=25, ...)

A cycle, under the :class:`~detpipe.edge.controller.state.Lease`:

1. read the state and its ETag; none yet: *start* (``V`` must be published; ``previous`` is
   the newest published version below it), with ``V`` at the first step's percentage;
2. reconcile: make the signed TUF metadata say what the state says (a controller killed
   after writing a decision left it unapplied; applying twice changes nothing);
3. for a progressing rollout: count the valid signed reports about ``V``
   (:mod:`~detpipe.edge.controller.judge`) and decide: hold, advance, complete or abort;
4. write a transition as one conditional write on the ETag of step 1 (a controller that lost
   the race changes nothing: ``lost-race``), then apply it: re-sign ``V``'s percentage, or
   abort with a signed rollback to ``previous`` (``V`` withdrawn; devices on it go back).

Holds are recorded as ``last_check`` (overwritten), never as decisions. A controller
SIGKILLed anywhere in this never decides a step twice: before the write nothing happened,
after it the next run finds the decision and only applies it.

Fault injection (tests): ``DETPIPE_ROLLOUT_KILL_AT=decided`` SIGKILLs the process after it
decided and before it wrote; ``=written`` after it wrote and before it applied.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tuf.api.metadata import Root

from detpipe.edge.controller.judge import Counts, count, decide
from detpipe.edge.controller.state import (
    ACTIVE,
    SCHEMA,
    Lease,
    default_owner,
    now_iso,
    read_versioned,
    write_state,
)
from detpipe.edge.publish import published_versions, rollback_to, set_rollout, version_targets, withdraw
from detpipe.edge.reports import ReportReader, load_root, trusted_root
from detpipe.edge.targets import check_device_class, check_pct, check_version
from detpipe.errors import InvalidInput, NotFound, PreconditionFailed
from detpipe.store import Store, version_key

log = logging.getLogger(__name__)

KILL_ENV = "DETPIPE_ROLLOUT_KILL_AT"
ABORTED_EXIT = 4


def parse_steps(text: str) -> tuple[int, ...]:
    """``"5,25,100"`` -> ``(5, 25, 100)``: whole percentages, rising, ending at 100.

    Raises:
        InvalidInput: anything else.
    """
    try:
        steps = tuple(check_pct(int(s)) for s in text.split(","))
    except (ValueError, InvalidInput):
        raise InvalidInput(f"steps {text!r}: whole percentages from 1 to 100, e.g. 5,25,100") from None
    if not steps or steps[0] < 1 or list(steps) != sorted(set(steps)) or steps[-1] != 100:
        raise InvalidInput(f"steps {text!r}: rising percentages from 1, ending at 100 (e.g. 5,25,100)")
    return steps


@dataclass(frozen=True)
class RolloutSpec:
    """How a rollout proceeds (recorded in its state when it starts; later runs keep it).

    Attributes:
        steps: rollout percentages, rising, ending at 100.
        max_failure_pct: abort above this share of failed reports (of those that tried it).
        min_reports: valid reports on the version a step needs (capped by the devices it selects).
        bake: time a step lasts at least.
    """

    steps: tuple[int, ...] = (5, 25, 100)
    max_failure_pct: float = 5.0
    min_reports: int = 1
    bake: timedelta = timedelta(minutes=30)

    def __post_init__(self) -> None:
        parse_steps(",".join(str(s) for s in self.steps))
        if not 0 <= self.max_failure_pct < 100:
            raise InvalidInput(f"max failure {self.max_failure_pct}%: from 0 to below 100")
        if self.min_reports < 1:
            raise InvalidInput(f"min reports {self.min_reports}: at least 1")
        if self.bake < timedelta(0):
            raise InvalidInput("bake: not negative")


@dataclass(frozen=True)
class CycleResult:
    """What one cycle did (``action``) and where the rollout stands (``status``, ``pct``)."""

    action: str  # start | hold | advance | complete | abort | locked | lost-race | paused | done
    status: str
    step: int
    pct: int
    reason: str
    counts: dict[str, Any] = field(default_factory=dict)
    version: str = ""

    @property
    def exit_code(self) -> int:
        """4 once the rollout is aborted (a quality gate), else 0."""
        return ABORTED_EXIT if self.status == "aborted" else 0

    def line(self, device_class: str) -> str:
        where = f"{self.action} {'to' if self.action == 'advance' else 'at'} {self.pct}% ({self.status})"
        return f"rollout {device_class} {self.version}: {where}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "status": self.status, "step": self.step, "pct": self.pct,
                "reason": self.reason, "counts": self.counts, "version": self.version}  # fmt: skip


def _failpoint(step: str) -> None:
    if os.environ.get(KILL_ENV) == step:
        log.warning("%s=%s: killing the controller here", KILL_ENV, step)
        os.kill(os.getpid(), signal.SIGKILL)


class Controller:
    """One rollout's controller (module docstring); every method is one store-backed step.

    Args:
        store: the fleet's store (OTA metadata, reports, rollout state).
        device_class: the class rolled out to.
        version: the version rolled out (published already).
        keys: the OTA keys directory (targets/snapshot/timestamp keys, root.json).
        spec: the rollout's steps and gates (used when it starts; a running one keeps its own).
        root: the trusted root for the device registrations (default: keys' root.json, followed
            through the store's chain).
        lock_ttl: how long the lease lasts (a killed controller's lease expires after it).
        owner: who decides, in the state's log.
        now: the clock (tests).
    """

    def __init__(
        self,
        store: Store,
        device_class: str,
        version: str,
        keys: Path,
        spec: RolloutSpec | None = None,
        *,
        root: Root | None = None,
        lock_ttl: timedelta = timedelta(minutes=5),
        owner: str | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.device_class = check_device_class(device_class)
        self.version = check_version(version)
        self.keys = keys
        self.spec = spec or RolloutSpec()
        self._root = root
        self.lock_ttl = lock_ttl
        self.owner = owner or default_owner()
        self._now = now or (lambda: datetime.now(UTC))

    # -- the cycle ------------------------------------------------------------------------------

    def run_once(self) -> CycleResult:
        """One cycle: at most one decision, applied (module docstring).

        Raises:
            NotFound: the version is not published (when starting).
            InvalidInput: bad keys; StoreError: the store failed.
        """
        lease = Lease(self.store, self.device_class, self.version, self.owner, self.lock_ttl)
        if not lease.acquire(self._now()):
            until = f" until {now_iso(lease.expires)}" if lease.expires else ""
            doc = read_versioned(self.store, self.device_class, self.version).doc or {}
            return self._result(doc, "locked", f"{lease.holder} holds the lease{until}: nothing done")
        try:
            return self._cycle()
        finally:
            lease.release()

    def _cycle(self) -> CycleResult:
        read = read_versioned(self.store, self.device_class, self.version)
        if read.doc is None:
            return self._start()
        doc, etag = read.doc, read.etag
        self._reconcile(doc)
        if doc["status"] == "paused":
            return self._result(doc, "paused", "paused (detpipe edge rollout resume ... to go on)")
        if doc["status"] not in ACTIVE:
            last = doc["decisions"][-1]["reason"] if doc["decisions"] else doc["status"]
            return self._result(doc, "done", last)
        counts = self._count(doc)
        verdict = decide(doc, counts, self._now())
        if verdict.action == "hold":
            doc["last_check"] = {"at": now_iso(self._now()), "action": "hold", "reason": verdict.reason,
                                 "counts": counts.to_dict()}  # fmt: skip
            try:
                write_state(self.store, doc, etag)
            except PreconditionFailed:
                return self._result(doc, "lost-race", "another controller wrote the state meanwhile")
            return self._result(doc, "hold", verdict.reason, counts)
        _failpoint("decided")
        new = self._transition(doc, verdict.action, verdict.reason, counts)
        try:
            write_state(self.store, new, etag)
        except PreconditionFailed:
            return self._result(doc, "lost-race", "another controller decided this step meanwhile")
        log.debug("rollout %s %s: %s (%s)", self.device_class, self.version, verdict.action, verdict.reason)
        _failpoint("written")
        self._reconcile(new)
        return self._result(new, verdict.action, new["decisions"][-1]["reason"], counts)

    def _start(self) -> CycleResult:
        targets = version_targets(self.store, self.keys, self.device_class, self.version)  # NotFound
        older = [
            v
            for v in published_versions(self.store, self.keys, self.device_class)
            if version_key(v) < version_key(self.version)
        ]
        spec, now = self.spec, self._now()
        first = next(iter(targets.values()))
        doc: dict[str, Any] = {
            "schema": SCHEMA,
            "device_class": self.device_class,
            "version": self.version,
            "previous": older[-1] if older else None,
            "steps": list(spec.steps),
            "max_failure_pct": spec.max_failure_pct,
            "min_reports": spec.min_reports,
            "bake_s": int(spec.bake.total_seconds()),
            "status": "progressing",
            "step": 0,
            "pct": spec.steps[0],
            "step_started_at": now_iso(now),
            "started_at": now_iso(now),
            "decisions": [],
            "last_check": None,
        }
        was = f"published at {first.rollout_pct}%"
        back = f"previous version {doc['previous']}" if older else "no previous version (abort withdraws it)"
        self._log(doc, "start", f"{was}; steps {','.join(map(str, spec.steps))}; {back}", None)
        _failpoint("decided")
        try:
            write_state(self.store, doc, None)
        except PreconditionFailed:
            return self._result(doc, "lost-race", "another controller started this rollout meanwhile")
        _failpoint("written")
        self._reconcile(doc)
        return self._result(doc, "start", doc["decisions"][-1]["reason"])

    def _transition(self, doc: dict[str, Any], action: str, reason: str, counts: Counts) -> dict[str, Any]:
        new = {**doc, "decisions": list(doc["decisions"]), "last_check": None}
        if action == "advance":
            new["step"] = doc["step"] + 1
            new["pct"] = doc["steps"][new["step"]]
            new["step_started_at"] = now_iso(self._now())
        elif action == "complete":
            new["status"] = "completed"
        elif action == "abort":
            new["status"] = "aborted"
            back = f"signed rollback to {doc['previous']}" if doc["previous"] else f"{self.version} withdrawn"
            reason = f"{reason}; {back}"
        self._log(new, action, reason, counts)
        return new

    def _log(self, doc: dict[str, Any], action: str, reason: str, counts: Counts | None) -> None:
        doc["decisions"].append({
            "n": len(doc["decisions"]) + 1, "at": now_iso(self._now()), "action": action,
            "step": doc["step"], "pct": doc["pct"], "reason": reason,
            "counts": counts.to_dict() if counts else None, "by": self.owner,
        })  # fmt: skip

    # -- the signed metadata ---------------------------------------------------------------------

    def _reconcile(self, doc: dict[str, Any]) -> None:
        """Make the TUF metadata say what ``doc`` says (no-op when it does)."""
        try:
            targets = version_targets(self.store, self.keys, self.device_class, self.version)
        except NotFound:
            targets = {}
        if doc["status"] == "aborted":
            if not targets:  # rolled back (or withdrawn) already
                return
            if doc["previous"]:
                rollback_to(self.store, self.keys, self.device_class, doc["previous"])
            else:
                withdraw(self.store, self.keys, self.device_class, self.version)
            log.warning("rollout %s %s aborted: metadata re-signed", self.device_class, self.version)
            return
        if not targets and doc["status"] == "completed":
            return  # a later release's rollback replaced it: that rollout's business
        if not targets:
            raise NotFound(
                f"version {self.version} of {self.device_class} is no longer published "
                "(withdrawn or rolled back outside the controller): publish it again, or drop the rollout"
            )
        if any(r.rollout_pct != doc["pct"] for r in targets.values()):
            set_rollout(self.store, self.keys, self.device_class, self.version, rollout_pct=doc["pct"])
            log.info("rollout %s %s: %d%% signed", self.device_class, self.version, doc["pct"])

    # -- reports ---------------------------------------------------------------------------------

    def root(self) -> Root:
        if self._root is None:
            self._root = trusted_root(self.store, anchor=load_root(self.keys / "root.json"))
        return self._root

    def _count(self, doc: dict[str, Any]) -> Counts:
        targets = version_targets(self.store, self.keys, self.device_class, self.version)
        sha256s = {r.sha256 for r in targets.values()}
        reader = ReportReader(self.store, self.device_class, self.root())
        reading = reader.read()
        reader.save_seen()
        return count(reading, self.version, sha256s, doc["pct"])

    def _result(
        self, doc: dict[str, Any], action: str, reason: str, counts: Counts | None = None
    ) -> CycleResult:
        return CycleResult(
            action=action,
            status=doc.get("status", "none"),
            step=int(doc.get("step", 0)),
            pct=int(doc.get("pct", 0)),
            reason=reason,
            counts=counts.to_dict() if counts else {},
            version=self.version,
        )


def set_paused(store: Store, device_class: str, version: str, paused: bool, owner: str | None = None) -> dict:
    """Pause (or resume) a rollout: one conditional write; returns the new state.

    Raises:
        NotFound: no rollout of that version.
        InvalidInput: it is completed or aborted, or already paused/progressing.
        PreconditionFailed: a controller wrote the state meanwhile (run it again).
    """
    read = read_versioned(store, device_class, version)
    if read.doc is None:
        raise NotFound(f"no rollout of {device_class} {version} (start one with detpipe edge rollout)")
    doc = read.doc
    want, have = ("paused", "progressing") if paused else ("progressing", "paused")
    if doc["status"] != have:
        raise InvalidInput(f"rollout of {device_class} {version} is {doc['status']}: cannot "
                           f"{'pause' if paused else 'resume'} it")  # fmt: skip
    doc = {**doc, "status": want, "decisions": list(doc["decisions"])}
    doc["decisions"].append({
        "n": len(doc["decisions"]) + 1, "at": now_iso(datetime.now(UTC)),
        "action": "pause" if paused else "resume", "step": doc["step"], "pct": doc["pct"],
        "reason": "by hand", "counts": None, "by": owner or default_owner(),
    })  # fmt: skip
    write_state(store, doc, read.etag)
    return doc


def pause(store: Store, device_class: str, version: str) -> dict:
    """:func:`set_paused` ``paused=True``: the controller holds, changes nothing, until resumed."""
    return set_paused(store, device_class, version, True)


def resume(store: Store, device_class: str, version: str) -> dict:
    """:func:`set_paused` ``paused=False``."""
    return set_paused(store, device_class, version, False)
