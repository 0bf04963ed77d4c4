"""The rollout controller on a local store with real agents (in process): start, hold for
reports, bake, advance to 100 %, abort with a signed rollback on a release that fails its
health check, pause/resume, the lease, the conditional write that makes one decision per step,
and the CLI's exit codes (0 holding/advancing, 4 aborted, 2 bad input)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from edge_support import Models

from detpipe.edge.agent import Agent, AgentConfig
from detpipe.edge.controller import Controller, RolloutSpec, parse_steps, pause, read_state, resume
from detpipe.edge.controller.state import Lease, lock_key, read_versioned, write_state
from detpipe.edge.keys import load_signer
from detpipe.edge.publish import PublishConfig, publish_version, version_targets
from detpipe.edge.reports import load_public_key, register, trusted_root
from detpipe.edge.rollout import bucket
from detpipe.errors import InvalidInput, NotFound, PreconditionFailed
from detpipe.store import LocalStore

DEVICES = tuple(f"cam-{i}" for i in range(12))


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += timedelta(**kw)


class Fleet:
    """Enrolled in-process agents on one local store."""

    def __init__(self, root: Path, keys: Path, devices: tuple[str, ...] = DEVICES) -> None:
        self.store = LocalStore(root / "store")
        self.keys = keys
        self.agents = {
            d: Agent(
                AgentConfig(
                    store=str(root / "store"),
                    device_class="cpu",
                    device_id=d,
                    trust=keys / "root.json",
                    dir=root / d,
                )
            )
            for d in devices
        }

    def enroll(self) -> None:
        trusted = trusted_root(self.store, anchor=None)
        signers = [load_signer(self.keys, "targets")]
        for d in self.agents:
            register(
                self.store, "cpu", d, load_public_key(self.agents[d].cfg.dir / "device.pub"), signers, trusted
            )

    def poll(self) -> dict[str, str]:
        return {d: a.run_once()["outcome"] for d, a in self.agents.items()}

    def versions(self) -> dict[str, str | None]:
        out = {}
        for d, a in self.agents.items():
            m = a.slots.manifest(a.slots.active()) or {}
            out[d] = m.get("version")
        return out


@pytest.fixture
def fleet(tmp_path: Path, keys: Path, models: Models) -> Fleet:
    f = Fleet(tmp_path, keys)
    publish_version(f.store, PublishConfig("cpu", "1", models.good, "onnx", keys))
    f.poll()  # every agent makes its key and installs 1
    f.enroll()
    return f


def controller(fleet: Fleet, version: str, clock: Clock, **spec) -> Controller:
    spec = {"steps": (10, 50, 100), "max_failure_pct": 20.0, "min_reports": 1, "bake": timedelta(0), **spec}
    return Controller(fleet.store, "cpu", version, fleet.keys, RolloutSpec(**spec), now=clock, owner="test")


def test_good_release_goes_through_every_step_and_the_fleet_ends_on_it(fleet: Fleet, models: Models):
    publish_version(fleet.store, PublishConfig("cpu", "2", models.other, "onnx", fleet.keys, rollout_pct=0))
    clock = Clock()
    ctl = controller(fleet, "2", clock, bake=timedelta(minutes=10))
    first = ctl.run_once()
    assert (first.action, first.status, first.pct) == ("start", "progressing", 10)
    assert read_state(fleet.store, "cpu", "2")["previous"] == "1"
    assert {r.rollout_pct for r in version_targets(fleet.store, fleet.keys, "cpu", "2").values()} == {10}

    actions = []
    for _ in range(12):
        fleet.poll()
        clock.advance(minutes=6)
        r = ctl.run_once()
        actions.append(r.action)
        if r.status == "completed":
            break
    assert r.status == "completed" and r.exit_code == 0
    assert set(fleet.versions().values()) == {"2"}
    assert "hold" in actions  # the bake held it at least once
    doc = read_state(fleet.store, "cpu", "2")
    assert [(d["action"], d["pct"]) for d in doc["decisions"]] == [
        ("start", 10), ("advance", 50), ("advance", 100), ("complete", 100)
    ]  # fmt: skip
    assert ctl.run_once().action == "done"


def test_release_failing_its_health_check_aborts_at_the_first_step(fleet: Fleet, models: Models):
    publish_version(fleet.store, PublishConfig("cpu", "2", models.nan, "onnx", fleet.keys, rollout_pct=0))
    clock = Clock()
    ctl = controller(fleet, "2", clock, steps=(25, 100))
    assert ctl.run_once().action == "start"
    selected = {d for d in DEVICES if bucket(d, "2") < 25}
    outcomes = fleet.poll()
    assert {d for d, o in outcomes.items() if o == "rolled-back"} == selected and selected
    r = ctl.run_once()
    assert (r.action, r.status, r.exit_code) == ("abort", "aborted", 4)
    assert r.counts["failed"] == len(selected) and r.counts["ok"] == 0
    with pytest.raises(NotFound):
        version_targets(fleet.store, fleet.keys, "cpu", "2")  # withdrawn by the signed rollback
    fleet.poll()
    fleet.poll()
    assert set(fleet.versions().values()) == {"1"}
    reason = read_state(fleet.store, "cpu", "2")["decisions"][-1]["reason"]
    assert "failed (100.0% > 20%)" in reason and "signed rollback to 1" in reason
    assert ctl.run_once().exit_code == 4  # aborted stays aborted


def test_hold_until_min_reports_then_advance(fleet: Fleet, models: Models):
    publish_version(fleet.store, PublishConfig("cpu", "2", models.other, "onnx", fleet.keys, rollout_pct=0))
    clock = Clock()
    ctl = controller(fleet, "2", clock, steps=(50, 100), min_reports=3)
    ctl.run_once()
    held = ctl.run_once()  # nobody polled yet
    assert held.action == "hold" and "waiting for reports: 0 of 3" in held.reason
    assert read_state(fleet.store, "cpu", "2")["last_check"]["action"] == "hold"
    fleet.poll()
    assert ctl.run_once().action == "advance"
    assert len(read_state(fleet.store, "cpu", "2")["decisions"]) == 2  # holds are not decisions


def test_pause_holds_and_resume_goes_on(fleet: Fleet, models: Models):
    publish_version(fleet.store, PublishConfig("cpu", "2", models.other, "onnx", fleet.keys, rollout_pct=0))
    clock = Clock()
    ctl = controller(fleet, "2", clock)
    ctl.run_once()
    fleet.poll()
    pause(fleet.store, "cpu", "2")
    assert ctl.run_once().action == "paused"
    with pytest.raises(InvalidInput, match="is paused"):
        pause(fleet.store, "cpu", "2")
    resume(fleet.store, "cpu", "2")
    assert ctl.run_once().action == "advance"
    assert [d["action"] for d in read_state(fleet.store, "cpu", "2")["decisions"]] == [
        "start", "pause", "resume", "advance"
    ]  # fmt: skip


def test_a_held_lease_locks_out_a_second_controller_until_it_expires(fleet: Fleet, models: Models):
    publish_version(fleet.store, PublishConfig("cpu", "2", models.other, "onnx", fleet.keys, rollout_pct=0))
    clock = Clock()
    other = Lease(fleet.store, "cpu", "2", "someone-else", timedelta(minutes=5))
    assert other.acquire(clock())
    r = controller(fleet, "2", clock).run_once()
    assert r.action == "locked" and "someone-else holds the lease" in r.reason
    assert read_state(fleet.store, "cpu", "2") is None
    clock.advance(minutes=6)  # the holder was killed: its lease expires
    assert controller(fleet, "2", clock).run_once().action == "start"
    assert not fleet.store.exists(lock_key("cpu", "2"))


def test_of_two_writers_from_one_state_one_decides(fleet: Fleet, models: Models):
    publish_version(fleet.store, PublishConfig("cpu", "2", models.other, "onnx", fleet.keys, rollout_pct=0))
    controller(fleet, "2", Clock()).run_once()
    read = read_versioned(fleet.store, "cpu", "2")
    write_state(fleet.store, {**read.doc, "step": 1, "pct": 50}, read.etag)
    with pytest.raises(PreconditionFailed):
        write_state(fleet.store, {**read.doc, "step": 1, "pct": 50}, read.etag)


def test_a_decision_written_but_not_applied_is_applied_by_the_next_run(fleet: Fleet, models: Models):
    publish_version(fleet.store, PublishConfig("cpu", "2", models.other, "onnx", fleet.keys, rollout_pct=0))
    clock = Clock()
    controller(fleet, "2", clock).run_once()
    read = read_versioned(fleet.store, "cpu", "2")  # as if killed after writing "advance to 50"
    write_state(fleet.store, {**read.doc, "step": 1, "pct": 50}, read.etag)
    r = controller(fleet, "2", clock).run_once()
    assert r.action == "hold" and r.pct == 50
    assert {t.rollout_pct for t in version_targets(fleet.store, fleet.keys, "cpu", "2").values()} == {50}


def test_unpublished_version_and_bad_steps_are_refused(fleet: Fleet):
    with pytest.raises(NotFound, match="no published version 9"):
        controller(fleet, "9", Clock()).run_once()
    for bad in ("", "0,100", "50,25,100", "5,25", "5,x,100", "5,5,100", "5,101"):
        with pytest.raises(InvalidInput):
            parse_steps(bad)
    assert parse_steps("1,10,50,100") == (1, 10, 50, 100)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    checkout = str(Path(__file__).parents[2])
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "edge", "rollout", *args],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": checkout, **(env or {})},
    )  # fmt: skip


def test_cli_runs_reports_status_and_exits_2_on_bad_input(fleet: Fleet, models: Models, tmp_path: Path):
    publish_version(fleet.store, PublishConfig("cpu", "2", models.nan, "onnx", fleet.keys, rollout_pct=0))
    where = ["--store", str(fleet.store.root), "--device-class", "cpu", "--version", "2"]
    run = [*where, "--keys", str(fleet.keys), "--steps", "50,100", "--bake", "0s", "--once"]
    done = _cli(*run)
    assert done.returncode == 0 and "rollout cpu 2: start at 50% (progressing)" in done.stdout, done.stderr
    fleet.poll()
    done = _cli(*run, "--json", str(tmp_path / "cycle.json"))
    assert done.returncode == 4 and "abort at 50% (aborted)" in done.stdout, done.stderr
    assert json.loads((tmp_path / "cycle.json").read_text())["status"] == "aborted"
    status = _cli("status", *where, "--json", str(tmp_path / "state.json"))
    assert status.returncode == 4 and "rollout cpu 2: aborted at 50%" in status.stdout
    assert "  abort" in status.stdout and json.loads((tmp_path / "state.json").read_text())["previous"] == "1"
    for bad, message in [
        ([*where, "--keys", str(fleet.keys), "--steps", "50,25"], "rising percentages"),
        ([*where, "--once"], "--keys DIR is needed"),
        (
            ["--store", str(fleet.store.root), "--device-class", "cpu", "--version", "../x", "status"],
            "version",
        ),
        (["pause", *where[:4], "--version", "7"], "no rollout of cpu 7"),
    ]:
        done = _cli(*bad)
        assert done.returncode == 2, (bad, done.stderr)
        last = done.stderr.strip().splitlines()[-1]  # argparse's usage may come before it
        assert last.startswith("detpipe edge") and message in last, done.stderr
        assert "Traceback" not in done.stderr


def test_a_class_with_no_enrolled_device_holds(tmp_path: Path, keys: Path, models: Models):
    """A rollout to nobody proves nothing: it holds, even with bake 0 and steps that select none."""
    f = Fleet(tmp_path, keys, devices=())
    publish_version(f.store, PublishConfig("cpu", "2", models.other, "onnx", keys, rollout_pct=0))
    ctl = controller(f, "2", Clock())
    assert ctl.run_once().action == "start"
    held = ctl.run_once()
    assert held.action == "hold" and "no device of the class is enrolled" in held.reason
    assert held.counts["enrolled"] == 0 and held.pct == 10


def test_decide_never_advances_on_failures_when_a_step_selects_fewer_devices_than_min_reports():
    from detpipe.edge.controller import Counts, decide

    state = {"steps": [50, 100], "step": 0, "pct": 50, "version": "2", "max_failure_pct": 5.0,
             "min_reports": 10, "bake_s": 0, "step_started_at": None}  # fmt: skip
    now = datetime(2026, 12, 6, tzinfo=UTC)
    failing = decide(state, Counts(selected=4, ok=0, failed=4, incompatible=0, enrolled=8), now)
    assert failing.action == "abort" and "4 of 4 reports on version 2 failed (100.0% > 5%)" in failing.reason
    partial = decide(state, Counts(selected=4, ok=0, failed=3, incompatible=0, enrolled=8), now)
    assert partial.action == "hold"  # one of the four has not reported yet
    good = decide(state, Counts(selected=4, ok=4, failed=0, incompatible=0, enrolled=8), now)
    assert good.action == "advance"
