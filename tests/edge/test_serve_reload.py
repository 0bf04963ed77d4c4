"""The device loop with a real ``detpipe serve`` process: the agent installs, health-checks and
has the server reload through ``--reload-url``; requests keep being answered throughout."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from edge_support import Models
from serve_client import reload_args

from detpipe.edge.agent import Agent, AgentConfig
from detpipe.edge.publish import PublishConfig, publish_target
from detpipe.store import LocalStore


@pytest.mark.slow
def test_agent_reloads_the_local_server_without_dropping_requests(tmp_path: Path, keys: Path, models: Models,
                                                                  serve, val_jpegs):  # fmt: skip
    store, d = LocalStore(tmp_path / "store"), tmp_path / "device"
    publish_target(store, PublishConfig("cpu", "1", models.good, "onnx", keys))
    cfg = AgentConfig(str(store.root), "cpu", "cam-1", keys / "root.json", d)
    assert Agent(cfg).run_once()["outcome"] == "installed"
    args = reload_args(tmp_path)  # --allow-reload --reload-token-file: the agent sends the token
    server = serve("--model", str(d / "current" / "model.onnx"), "--name", "pico", *args)
    reload_url = f"{server.url}/v2/repository/models/pico/load"
    agent = Agent(AgentConfig(str(store.root), "cpu", "cam-1", keys / "root.json", d, reload_url=reload_url,
                              reload_token_file=Path(args[-1])))  # fmt: skip

    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            reply = server.post("/v1/models/pico:detect", val_jpegs[0], "image/jpeg")
            answers.append((reply.status, reply.headers.get("x-model-version", "")))

    thread = threading.Thread(target=client)
    thread.start()
    try:
        publish_target(store, PublishConfig("cpu", "2", models.other, "onnx", keys))
        r = agent.run_once()
        assert (r["outcome"], r["version"]) == ("installed", "2") and "reload" in r["timings_s"]
        publish_target(store, PublishConfig("cpu", "3", models.nan, "onnx", keys))
        r = agent.run_once()
        assert r["outcome"] == "rolled-back"
    finally:
        stop.set()
        thread.join(timeout=60)
    v1, v2 = "1", "2"  # the server reports the OTA version of the slot's model, not sha-<hash>
    assert {status for status, _ in answers} == {200}, answers  # no request dropped
    seen = [version for _, version in answers]
    assert seen[0] == v1 and seen[-1] == v2 and set(seen) == {v1, v2}  # 1, then 2; never the broken 3
    assert seen == sorted(seen, key=[v1, v2].index)
    assert server.get("/v1/models/pico").headers["x-model-version"] == v2
    assert json.loads((d / "current" / "manifest.json").read_text())["version"] == "2"
