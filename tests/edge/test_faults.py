"""Fault injection against a real S3 server process (moto) behind a killable proxy, loopback only.

Each case starts from a device running version 1, injects one fault while version 2 is on
offer, and checks that nothing bad was activated: ``current`` still loads (a real
onnxruntime health check) and runs the version it should. Every injected fault is counted
(``faults``); the terminal summary prints the totals.
"""

from __future__ import annotations

import json
import shutil
import signal
from datetime import timedelta
from pathlib import Path

import pytest
from edge_support import Models, S3Fleet, run_agent
from store_servers import RetryPolicy

from detpipe.edge.agent import KILL_ENV, Agent, AgentConfig
from detpipe.edge.fetcher import OtaFetcher
from detpipe.edge.health import check_model
from detpipe.edge.keys import keygen
from detpipe.edge.layout import target_key
from detpipe.edge.publish import PublishConfig, publish_target
from detpipe.edge.repository import StoreRepository
from detpipe.errors import InvalidInput

QUICK = RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.02)


def publish(fleet: S3Fleet, keys: Path, model: Path, version: str, **kw):
    return publish_target(fleet.store(), PublishConfig("cpu", version, model, "onnx", keys, **kw))


def make_agent(fleet: S3Fleet, keys: Path, d: Path, progress=None) -> Agent:
    cfg = fleet.config(retry=QUICK)
    config = AgentConfig(fleet.uri, "cpu", "cam-1", keys / "root.json", d, interval_s=0.01)
    return Agent(config, OtaFetcher(cfg, retry=QUICK, sleep=lambda s: None), progress=progress, s3=cfg)


def still_good(d: Path, version: str, kind: str, faults) -> None:
    """Record the fault; the device must run ``version`` and its model must pass the health check."""
    manifest = json.loads((d / "current" / "manifest.json").read_text())
    try:
        check_model(d / "current" / manifest["file"])
        ok = manifest["version"] == version
    except Exception:
        ok = False
    faults.record(kind, bad_activation=not ok)
    assert ok, (kind, manifest)


@pytest.fixture
def on_v1(s3_fleet: S3Fleet, keys: Path, models: Models, tmp_path: Path) -> Path:
    """A device directory running version 1 from ``s3_fleet``."""
    publish(s3_fleet, keys, models.good, "1")
    d = tmp_path / "device"
    assert make_agent(s3_fleet, keys, d).run_once()["outcome"] == "installed"
    return d


def test_dropped_connection_resumes(s3_fleet, keys, models, on_v1, faults):
    r2 = publish(s3_fleet, keys, models.big, "2")

    def cut(size: int) -> None:
        if size >= 2 << 20 and s3_fleet.proxy.proc.poll() is None:
            s3_fleet.proxy.kill()

    r = make_agent(s3_fleet, keys, on_v1, progress=cut).run_once()
    assert r["outcome"] == "unreachable", r
    still_good(on_v1, "1", "connection-dropped", faults)
    s3_fleet.restart_proxy()
    r = make_agent(s3_fleet, keys, on_v1).run_once()
    assert r["outcome"] == "installed" and r["resumed_from"] >= 2 << 20
    assert r["fetched_bytes"] == r2.length - r["resumed_from"] < r2.length
    still_good(on_v1, "2", "connection-dropped", faults)


def _refused(fleet, keys, d, match: str) -> dict:
    r = make_agent(fleet, keys, d).run_once()
    assert r["outcome"] == "refused" and match in r["error"], r
    status = json.loads(fleet.store().get_bytes("devices/cam-1/status.json"))
    assert status["version"] == "1" and match in status["last_error"]
    return r


def test_tampered_artifact(s3_fleet, keys, models, on_v1, faults):
    r2 = publish(s3_fleet, keys, models.other, "2")
    key = target_key(r2.path, r2.sha256)
    data = bytearray(s3_fleet.store().get_bytes(key))
    data[len(data) // 2] ^= 0xFF
    s3_fleet.store().put_bytes(key, bytes(data))
    _refused(s3_fleet, keys, on_v1, "length or hash does not match")
    assert not list((on_v1 / "downloads").glob("*.part"))  # a bad download is not kept for resuming
    still_good(on_v1, "1", "artifact-tampered", faults)
    assert r2.sha256 in json.loads((on_v1 / "state.json").read_text())["refused"]  # a fault of the artifact
    r = make_agent(s3_fleet, keys, on_v1).run_once()
    assert r["outcome"] == "unchanged", r
    assert r["error"].startswith("version 2 was refused on this device: length or hash")


def test_a_bad_resumed_download_is_fetched_again_not_refused(s3_fleet, keys, models, on_v1, faults):
    """A partial file that went bad on the device (a power cut) is no fault of the artifact."""
    r2 = publish(s3_fleet, keys, models.other, "2")
    part = on_v1 / "downloads" / f"{r2.sha256}.part"
    part.parent.mkdir(exist_ok=True)
    part.write_bytes(b"\0" * 4096)
    r = make_agent(s3_fleet, keys, on_v1).run_once()
    assert r["outcome"] == "refused" and "resumed download: retried from the start" in r["error"], r
    assert not part.exists() and "refused" not in json.loads((on_v1 / "state.json").read_text())
    still_good(on_v1, "1", "partial-download-corrupt", faults)
    r = make_agent(s3_fleet, keys, on_v1).run_once()
    assert (r["outcome"], r["version"], r["resumed_from"]) == ("installed", "2", 0), r


def test_oversized_artifact(s3_fleet, keys, models, on_v1, faults):
    r2 = publish(s3_fleet, keys, models.other, "2")
    key = target_key(r2.path, r2.sha256)
    s3_fleet.store().put_bytes(key, s3_fleet.store().get_bytes(key) + b"\0" * (3 << 20))
    _refused(s3_fleet, keys, on_v1, "more data than the signed length")
    still_good(on_v1, "1", "oversized-artifact", faults)


def test_tampered_metadata(s3_fleet, keys, models, on_v1, faults):
    publish(s3_fleet, keys, models.other, "2", rollout_pct=0)
    key = "ota/metadata/2.targets.json"
    doc = json.loads(s3_fleet.store().get_bytes(key))
    doc["signed"]["targets"]["cpu/2/model.onnx"]["custom"]["rollout_pct"] = 100  # widen it without the key
    s3_fleet.store().put_bytes(key, json.dumps(doc).encode())
    _refused(s3_fleet, keys, on_v1, "signature check failed")
    still_good(on_v1, "1", "metadata-tampered", faults)


def test_untrusted_key(s3_fleet, keys, models, on_v1, faults, tmp_path):
    rogue = tmp_path / "rogue-keys"
    keygen(rogue)
    (rogue / "root.json").unlink()  # the store's root is used: only the signing keys are foreign
    with pytest.raises(InvalidInput, match="is not trusted for targets by root v1"):
        publish(s3_fleet, rogue, models.other, "2")  # publish refuses to sign with them ...
    forged = StoreRepository(s3_fleet.store(), rogue)  # ... someone writing to the store does not
    with forged.edit_targets() as targets:
        targets.targets.clear()
    forged.publish_metadata()
    _refused(s3_fleet, keys, on_v1, "signature check failed")
    still_good(on_v1, "1", "untrusted-key", faults)


def test_expired_metadata(s3_fleet, keys, models, on_v1, faults):
    publish(s3_fleet, keys, models.other, "2", expires=timedelta(seconds=-60))
    _refused(s3_fleet, keys, on_v1, "expired")
    still_good(on_v1, "1", "expired-metadata", faults)


def _metadata(fleet) -> dict[str, bytes]:
    store = fleet.store()
    return {k: store.get_bytes(k) for k in store.list("ota/metadata/")}


def _serve(fleet, saved: dict[str, bytes]) -> None:
    store = fleet.store()
    for k in store.list("ota/metadata/"):
        if k not in saved:
            store.delete(k)
    for k, data in saved.items():
        store.put_bytes(k, data)


def test_replayed_older_repository_state(s3_fleet, keys, models, on_v1, faults):
    old = _metadata(s3_fleet)
    publish(s3_fleet, keys, models.other, "2")
    assert make_agent(s3_fleet, keys, on_v1).run_once()["version"] == "2"
    _serve(s3_fleet, old)  # a mirror (or attacker) serves the state of version 1 again
    r = make_agent(s3_fleet, keys, on_v1).run_once()
    assert r["outcome"] == "refused" and "rollback attack" in r["error"], r
    still_good(on_v1, "2", "rollback-replay", faults)


def test_frozen_timestamp(s3_fleet, keys, models, tmp_path, faults):
    import time

    publish(s3_fleet, keys, models.good, "1", expires=timedelta(seconds=3))
    frozen, t0 = _metadata(s3_fleet), time.monotonic()
    d = tmp_path / "device"
    assert make_agent(s3_fleet, keys, d).run_once()["outcome"] == "installed"
    publish(s3_fleet, keys, models.other, "2")  # the real repository moves on ...
    _serve(s3_fleet, frozen)  # ... but the device is served the frozen state forever
    time.sleep(max(0.0, 3.5 - (time.monotonic() - t0)))
    r = make_agent(s3_fleet, keys, d).run_once()
    assert r["outcome"] == "refused" and "freeze attack" in r["error"], r
    still_good(d, "1", "frozen-timestamp", faults)


def test_store_unreachable_backs_off_without_crashing(keys, tmp_path, faults):
    from store_servers import free_port, s3_config

    cfg = s3_config(f"127.0.0.1:{free_port()}", retry=QUICK)
    config = AgentConfig(
        "s3://fleet-bucket", "cpu", "cam-1", keys / "root.json", tmp_path / "d", interval_s=1.0,
        backoff=RetryPolicy(attempts=1, base_delay_s=0.01, max_delay_s=0.04),
    )  # fmt: skip
    agent = Agent(config, OtaFetcher(cfg, retry=QUICK, sleep=lambda s: None), s3=cfg)
    assert agent.run(max_cycles=4) == 4
    caps = [0.01, 0.02, 0.04, 0.04]  # doubling up to the maximum; each delay in [cap/2, cap]
    assert all(c / 2 <= d <= c for d, c in zip(agent.delays, caps, strict=True)), agent.delays
    status = json.loads((tmp_path / "d" / "status.json").read_text())
    assert status["outcome"] == "unreachable" and "store unreachable" in status["last_error"]
    for _ in caps:
        faults.record("store-unreachable", bad_activation=(tmp_path / "d" / "current").exists())


STEPS = ("download", "verified", "installed", "switched", "healthy", "committed")


def _killed_cycle(fleet: S3Fleet, keys: Path, d: Path, step: str) -> int | None:
    """One agent cycle in a forked process that SIGKILLs itself at ``step``; its exit code."""
    import multiprocessing
    import os

    def child() -> None:
        os.environ[KILL_ENV] = step
        make_agent(fleet, keys, d).run_once()

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(timeout=120)
    return proc.exitcode


@pytest.mark.slow
def test_sigkill_at_each_step_leaves_a_loadable_current(s3_fleet, keys, models, on_v1, tmp_path, faults):
    publish(s3_fleet, keys, models.big, "2")
    for step in STEPS:
        d = tmp_path / f"kill-{step}"
        shutil.copytree(on_v1, d, symlinks=True)
        assert _killed_cycle(s3_fleet, keys, d, step) == -signal.SIGKILL, step
        manifest = json.loads((d / "current" / "manifest.json").read_text())  # never half: old or new
        check_model(d / "current" / manifest["file"])
        r = make_agent(s3_fleet, keys, d).run_once()  # restart: recover, then finish the update
        expected = "unchanged" if step == "committed" else "installed"
        assert r["outcome"] == expected, (step, r)
        if step == "download":
            assert r["resumed_from"] > 0
        still_good(d, "2", f"sigkill-at-{step}", faults)


def test_the_cli_agent_process_dies_at_a_kill_point_and_recovers(s3_fleet, keys, models, on_v1):
    """The same through ``detpipe edge agent`` as a real process (the kill hook is the CLI's too)."""
    publish(s3_fleet, keys, models.other, "2")
    args = ["--store", s3_fleet.uri, "--device-class", "cpu", "--device-id", "cam-1", "--trust",
            str(keys / "root.json"), "--dir", str(on_v1), "--once"]  # fmt: skip
    res = run_agent(args, env={**s3_fleet.env(), KILL_ENV: "switched"})
    assert res.returncode == -signal.SIGKILL, (res.returncode, res.stderr[-2000:])
    assert (on_v1 / "current").readlink() == Path("slots/b")  # switched, not committed
    res = run_agent(args, env=s3_fleet.env())
    assert res.returncode == 0, res.stderr[-2000:]
    assert "slot b was never committed" in res.stderr
    assert json.loads(res.stdout)["outcome"] == "installed"


def test_agent_over_a_plain_http_mirror(keys, models, tmp_path):
    """``--store http(s)://...``: the repository as static files behind any web server (a CDN)."""
    import subprocess
    import sys
    import time
    import urllib.request

    from store_servers import free_port

    from detpipe.store import LocalStore

    store = LocalStore(tmp_path / "store")
    publish_target(store, PublishConfig("cpu", "1", models.good, "onnx", keys))
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(store.root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        mirror = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{mirror}/ota/metadata/timestamp.json", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        d = tmp_path / "device"
        r = Agent(
            AgentConfig(mirror, "cpu", "cam-2", keys / "root.json", d), OtaFetcher(retry=QUICK)
        ).run_once()
        assert (r["outcome"], r.get("version")) == ("installed", "1"), r
        assert json.loads((d / "status.json").read_text())["version"] == "1"  # read-only mirror: status local
        assert not store.exists("devices/cam-2/status.json")
        # --report-store: metadata and artifacts from the mirror, the signed report to the bucket
        cfg = AgentConfig(
            mirror, "cpu", "cam-3", keys / "root.json", tmp_path / "cam-3", report_store=str(store.root)
        )
        assert Agent(cfg, OtaFetcher(retry=QUICK)).run_once()["outcome"] == "installed"
        report = json.loads(store.get_bytes("devices/cam-3/status.json"))
        assert (report["version"], report["seq"], "signature" in report) == ("1", 1, True)
    finally:
        server.kill()
        server.wait(timeout=10)
