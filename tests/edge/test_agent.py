"""The agent end to end on a local store: install, update, broken version rolls back, signed rollback,
staged rollout, and the CLI's ``--once``. Health checks run the real pico model in onnxruntime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from edge_support import Models, run_agent

from detpipe.edge.agent import Agent, AgentConfig
from detpipe.edge.health import HealthCheckFailed, check_model
from detpipe.edge.publish import PublishConfig, publish_target, rollback_to, set_rollout
from detpipe.edge.rollout import bucket
from detpipe.edge.slots import Slots
from detpipe.errors import InvalidInput
from detpipe.io import sha256_file
from detpipe.store import LocalStore


def publish(store, keys: Path, model: Path, version: str, **kw) -> None:
    publish_target(store, PublishConfig("cpu", version, model, "onnx", keys, **kw))


def agent(store, keys: Path, d: Path, device_id: str = "cam-1", **kw) -> Agent:
    return Agent(AgentConfig(str(store.root), "cpu", device_id, keys / "root.json", d, **kw))


def current(d: Path) -> dict:
    return json.loads((d / "current" / "manifest.json").read_text())


def test_install_update_broken_rollback_and_signed_rollback(
    tmp_path: Path, keys: Path, models: Models, faults
):
    store, d = LocalStore(tmp_path / "store"), tmp_path / "device"
    publish(store, keys, models.good, "1")
    a = agent(store, keys, d)
    r = a.run_once()
    assert (r["outcome"], r["version"], r["slot"]) == ("installed", "1", "a")
    m = current(d)
    assert {k: m[k] for k in ("version", "sha256", "file")} == {
        "version": "1", "sha256": sha256_file(models.good), "file": "model.onnx"
    }  # fmt: skip
    assert (d / "current").readlink() == Path("slots/a")
    assert set(r["timings_s"]) == {"metadata", "download", "verify", "install", "health"}
    assert a.run_once()["outcome"] == "unchanged"

    publish(store, keys, models.other, "2")
    r = a.run_once()
    assert (r["outcome"], r["version"], r["slot"]) == ("installed", "2", "b")
    assert current(d)["version"] == "2" and Slots(d).manifest("a")["version"] == "1"  # previous slot kept

    publish(store, keys, models.nan, "3")
    r = a.run_once()
    assert r["outcome"] == "rolled-back" and "non-finite" in r["error"]
    assert current(d)["version"] == "2" and (d / "current").readlink() == Path("slots/b")
    status = json.loads(store.get_bytes("devices/cam-1/status.json"))
    assert status["rolled_back"] is True and status["version"] == "2" and "non-finite" in status["last_error"]
    assert a.run_once()["outcome"] == "unchanged"  # the refused version is not retried
    check_model(d / "current" / "model.onnx")
    faults.record("health-check-failed", bad_activation=current(d)["version"] != "2")

    rollback_to(store, keys, "cpu", "1")
    r = a.run_once()
    assert (r["outcome"], r["version"]) == ("rolled-back-to", "1")
    assert current(d)["version"] == "1"
    assert json.loads(store.get_bytes("devices/cam-1/status.json"))["version"] == "1"


def test_staged_rollout_by_percentage_and_group(tmp_path: Path, keys: Path, models: Models):
    store = LocalStore(tmp_path / "store")
    publish(store, keys, models.good, "1")
    devices = ["cam-1", "cam-2", "cam-3", "cam-4", "cam-5", "cam-6"]
    publish(store, keys, models.other, "2", rollout_pct=50, groups=("canary",))
    expected = {dev: bucket(dev, "2") < 50 for dev in devices}
    assert any(expected.values()) and not all(expected.values())  # the ids split both ways at 50 %
    for dev in devices:
        r = agent(store, keys, tmp_path / dev, dev).run_once()
        assert r["version"] == ("2" if expected[dev] else "1"), dev
    outside = next(dev for dev in devices if not expected[dev])
    r = agent(store, keys, tmp_path / outside, outside, groups=("canary",)).run_once()
    assert (r["outcome"], r["version"]) == ("installed", "2")
    set_rollout(store, keys, "cpu", "2", 100)
    for dev in devices:
        agent(store, keys, tmp_path / dev, dev).run_once()
        assert current(tmp_path / dev)["version"] == "2"


def test_cli_once_and_bad_arguments(
    tmp_path: Path, keys: Path, models: Models, capsys: pytest.CaptureFixture
):
    store = LocalStore(tmp_path / "store")
    publish(store, keys, models.good, "1")
    d = tmp_path / "device"
    args = ["--store", str(store.root), "--device-class", "cpu", "--device-id", "cam-9", "--trust",
            str(keys / "root.json"), "--dir", str(d), "--once"]  # fmt: skip
    res = run_agent(args)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["outcome"] == "installed"
    assert current(d)["version"] == "1"
    with pytest.raises(InvalidInput, match="device id"):
        AgentConfig(str(store.root), "cpu", "a/b", keys / "root.json", d)
    from detpipe.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["edge", "agent", *args[:-1], "--interval", "0"])
    assert e.value.code == 2 and "--interval: must be > 0" in capsys.readouterr().err.splitlines()[-1]
    not_root = tmp_path / "targets.json"
    not_root.write_bytes(store.get_bytes("ota/metadata/targets.json"))
    trust_at = args.index("--trust") + 1
    bad_trust = [*args[:trust_at], str(not_root), *args[trust_at + 1 :]]
    assert main(["edge", "agent", *bad_trust]) == 2
    assert capsys.readouterr().err.strip().endswith("targets metadata, expected the root (root.json)")


def test_a_server_that_is_not_running_yet_does_not_block_the_first_install(
    tmp_path: Path, keys: Path, models: Models
):
    from store_servers import free_port

    store = LocalStore(tmp_path / "store")
    publish(store, keys, models.good, "1")
    url = f"http://127.0.0.1:{free_port()}/v2/repository/models/yolo/load"  # nothing listens
    r = agent(store, keys, tmp_path / "device", reload_url=url).run_once()
    assert (r["outcome"], r["version"]) == ("installed", "1") and "reload" in r["timings_s"]


def test_health_check_refuses_a_model_that_does_not_load(tmp_path: Path):
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"\x08\x01not a model")
    with pytest.raises(HealthCheckFailed, match=r"model\.onnx"):
        check_model(junk)


def test_the_loop_polls_until_stopped(tmp_path: Path, keys: Path, models: Models):
    import threading

    store = LocalStore(tmp_path / "store")
    publish(store, keys, models.good, "1")
    a = agent(store, keys, tmp_path / "device", interval_s=0.05)
    stop = threading.Event()
    seen: list[str] = []
    original = a.run_once

    def once() -> dict:
        r = original()
        seen.append(r["outcome"])
        if len(seen) == 3:
            stop.set()  # what SIGTERM does in the CLI
        return r

    a.run_once = once  # type: ignore[method-assign]
    assert a.run(stop) == 3
    assert seen == ["installed", "unchanged", "unchanged"] and a.delays == [0.05, 0.05, 0.05]
