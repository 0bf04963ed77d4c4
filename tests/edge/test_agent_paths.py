"""What the agent sends the local server, and what a refused reload does (issue 21).

The bug: with a relative ``--dir`` the agent sent ``fleet/dev-1/current/model.onnx``, the
server resolved it against its own working directory (404), and the agent rolled back a good
version and refused it for good; the next cycle said "not in any rollout" with no error. Now
paths leave the agent absolute, only faults of the artifact refuse a version for good, a
reload refused for another reason (token, model name) is retried, and the status says why.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from edge_support import Models, run_agent

from detpipe.edge.agent import Agent, AgentConfig
from detpipe.edge.publish import PublishConfig, publish_target
from detpipe.errors import EngineIncompatible, InvalidInput, ReloadRefused, StoreError, Unavailable
from detpipe.io import sha256_file
from detpipe.store import LocalStore

TOKEN = "s3cr3t-reload-token-4711"


def serve_supports_tokens() -> bool:
    """Whether ``detpipe serve`` has ``--reload-token-file`` (a colleague is adding it)."""
    from detpipe.cli.main import get_args_parser

    parser = get_args_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return "--reload-token-file" in sub.choices["serve"]._option_string_actions


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "secrets" / "reload-token"
    path.parent.mkdir()
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


def serve_args(model: Path, token_file: Path) -> list[str]:
    args = ["--model", str(model), "--name", "pico"]
    if serve_supports_tokens():
        args += ["--allow-reload", "--reload-token-file", str(token_file)]
    return args


def device_args(store: LocalStore, trust: Path, d: str | Path, *extra: str) -> list[str]:
    return ["--store", str(store.root), "--device-class", "cpu", "--device-id", "dev-1",
            "--trust", str(trust), "--dir", str(d), "--once", *extra]  # fmt: skip


def state(d: Path) -> dict:
    return json.loads((d / "state.json").read_text())


def version_of(d: Path) -> str:
    return json.loads((d / "current" / "manifest.json").read_text())["version"]


def test_the_agent_makes_its_paths_absolute_at_config_time(tmp_path: Path, keys: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = AgentConfig("store", "cpu", "dev-1", Path("root.json"), Path("fleet/dev-1/../dev-1"))
    assert cfg.dir == tmp_path / "fleet" / "dev-1" and cfg.trust == tmp_path / "root.json"


@pytest.mark.slow
def test_a_relative_dir_reaches_a_real_server_as_an_absolute_path(
    tmp_path: Path, keys: Path, models: Models, serve, token_file: Path
):
    store = LocalStore(tmp_path / "store")
    publish_target(store, PublishConfig("cpu", "1", models.good, "onnx", keys))
    work = tmp_path / "edge-cwd"  # the agent's working directory; the server's is another one
    work.mkdir()
    res = run_agent(device_args(store, keys / "root.json", "fleet/dev-1"), cwd=work)
    assert res.returncode == 0, res.stderr
    d = work / "fleet" / "dev-1"
    server = serve(*serve_args(d / "current" / "model.onnx", token_file))
    url = f"{server.url}/v2/repository/models/pico/load"

    publish_target(store, PublishConfig("cpu", "2", models.other, "onnx", keys))
    extra = ["--reload-url", url, "--reload-token-file", str(token_file)]
    res = run_agent(device_args(store, keys / "root.json", "fleet/dev-1", *extra), cwd=work)
    assert res.returncode == 0, res.stderr[-3000:]
    r = json.loads(res.stdout)
    assert (r["outcome"], r["version"]) == ("installed", "2"), r  # was: rolled-back, HTTP 404
    assert server.get("/v1/models/pico").headers["x-model-version"] == "2"  # the slot's OTA version
    assert version_of(d) == "2" and state(d).get("refused", {}) == {}
    assert TOKEN not in res.stderr + res.stdout + (d / "status.json").read_text()


@pytest.mark.slow
def test_a_reload_refused_for_reasons_outside_the_model_is_retried(
    tmp_path: Path, keys: Path, models: Models, serve, token_file: Path
):
    store, d = LocalStore(tmp_path / "store"), tmp_path / "device"
    publish_target(store, PublishConfig("cpu", "1", models.good, "onnx", keys))
    assert run_agent(device_args(store, keys / "root.json", d)).returncode == 0
    server = serve(*serve_args(d / "current" / "model.onnx", token_file))
    v1 = server.get("/v1/models/pico").headers["x-model-version"]
    publish_target(store, PublishConfig("cpu", "2", models.other, "onnx", keys))

    token = ["--reload-token-file", str(token_file)]
    wrong = [("nope", token, "HTTP 404")]  # another model name
    if serve_supports_tokens():
        wrong.append(("pico", [], "HTTP 401"))  # no token
    for name, extra, status in wrong:
        url = f"{server.url}/v2/repository/models/{name}/load"
        res = run_agent(device_args(store, keys / "root.json", d, "--reload-url", url, *extra))
        assert res.returncode == 1, res.stderr[-3000:]
        r = json.loads(res.stdout)
        assert (r["outcome"], r["version"]) == ("retrying", "2") and status in r["error"], r
        reported = json.loads(store.get_bytes("devices/dev-1/status.json"))
        assert reported["outcome"] == "retrying" and status in reported["last_error"]
        assert "retrying next cycle" in reported["reason"] and reported["version"] == "1"
        assert version_of(d) == "1" and state(d).get("refused", {}) == {}  # not refused for good
        assert server.get("/v1/models/pico").headers["x-model-version"] == v1

    url = f"{server.url}/v2/repository/models/pico/load"
    res = run_agent(device_args(store, keys / "root.json", d, "--reload-url", url, *token))
    r = json.loads(res.stdout)
    assert (r["outcome"], r["version"], r["fetched_bytes"]) == ("installed", "2", 0), r  # from the slot
    assert server.get("/v1/models/pico").headers["x-model-version"] == "2"  # the slot's OTA version
    assert TOKEN not in res.stderr + res.stdout

    publish_target(store, PublishConfig("cpu", "3", models.nan, "onnx", keys))  # an artifact fault
    res = run_agent(device_args(store, keys / "root.json", d, "--reload-url", url, *token))
    assert json.loads(res.stdout)["outcome"] == "rolled-back"
    res = run_agent(device_args(store, keys / "root.json", d, "--reload-url", url, *token))
    r = json.loads(res.stdout)
    reported = json.loads((d / "status.json").read_text())
    assert r["outcome"] == "unchanged" and "not in any rollout" not in r["reason"], r  # was the message
    assert reported["last_error"].startswith("version 3 was refused on this device: ")
    assert "non-finite" in reported["last_error"] and reported["version"] == "2"


class _Recorder(BaseHTTPRequestHandler):
    """A loopback server that answers every load with ``status`` and records the requests."""

    status = 400
    seen: list[tuple[dict[str, str], dict]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
        reply = json.dumps({"error": f"cannot load {body['parameters']['uri']}: bad model"}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def rejecting_server() -> Iterator[tuple[str, list]]:
    seen: list = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/v2/repository/models/pico/load", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_model_the_server_rejects_is_refused_for_good_and_the_token_is_sent(
    tmp_path: Path, keys: Path, models: Models, rejecting_server, token_file: Path, monkeypatch
):
    url, seen = rejecting_server
    store, d = LocalStore(tmp_path / "store"), tmp_path / "device"
    publish_target(store, PublishConfig("cpu", "1", models.good, "onnx", keys))
    first = Agent(AgentConfig(str(store.root), "cpu", "dev-1", keys / "root.json", d)).run_once()
    assert first["version"] == "1"
    publish_target(store, PublishConfig("cpu", "2", models.other, "onnx", keys))
    monkeypatch.chdir(tmp_path)
    cfg = AgentConfig(str(store.root), "cpu", "dev-1", keys / "root.json", Path("device"), reload_url=url,
                      reload_token_file=Path(token_file.relative_to(tmp_path)))  # fmt: skip
    r = Agent(cfg).run_once()
    assert r["outcome"] == "rolled-back" and "HTTP 400" in r["error"], r
    assert list(state(d)["refused"]) == [sha256_file(models.other)]
    sent = [body["parameters"]["uri"] for _, body in seen]
    assert sent == [str(d / "current" / "model.onnx")] * 2  # the new model, then the old one back
    assert all(headers["authorization"] == f"Bearer {TOKEN}" for headers, _ in seen)
    r = Agent(cfg).run_once()
    assert r["outcome"] == "unchanged" and r["error"].startswith("version 2 was refused on this device")
    assert len(seen) == 2  # not retried


def test_reload_token_file_errors_are_one_line_and_the_env_variable_is_read(
    tmp_path: Path, keys: Path, capsys: pytest.CaptureFixture, monkeypatch
):
    store = LocalStore(tmp_path / "store")
    with pytest.raises(InvalidInput, match=r"reload-token-file .*cannot read"):
        AgentConfig(str(store.root), "cpu", "dev-1", keys / "root.json", tmp_path / "d",
                    reload_token_file=tmp_path / "missing")  # fmt: skip
    empty = tmp_path / "empty-token"
    empty.write_text("\n")
    monkeypatch.setenv("DETPIPE_RELOAD_TOKEN_FILE", str(empty))
    from detpipe.cli.main import main

    assert main(["edge", "agent", *device_args(store, keys / "root.json", tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--reload-token-file {empty}: expected one token" in err[0], err


def test_the_new_error_types_keep_their_families():
    assert issubclass(EngineIncompatible, Unavailable) and EngineIncompatible("x").exit_code == 3
    refused = ReloadRefused("server reload refused (HTTP 404): no model nope", 404)
    assert not refused.model_rejected and ReloadRefused("bad model", 400).model_rejected
    assert not issubclass(ReloadRefused, StoreError)
