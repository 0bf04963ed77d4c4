"""A small HTTP client for tests of ``detpipe serve`` processes (urllib; any status is a reply).

Imported by tests and conftest files (``from serve_client import http, Server``; ``tests/``
is on ``sys.path`` because of ``tests/conftest.py``). A server started with
``*reload_args(tmp_path)`` takes reloads with :data:`TOKEN` (``server.load(name, uri)``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from store_servers import free_port

TOKEN = "detpipe-test-reload-token-6f1c2a"


def token_file(directory: Path, token: str = TOKEN) -> Path:
    """A reload token file (mode 600) in ``directory``."""
    path = directory / "reload-token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def reload_args(directory: Path) -> list[str]:
    """``detpipe serve`` arguments that turn reload on with :data:`TOKEN`."""
    return ["--allow-reload", "--reload-token-file", str(token_file(directory))]


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def http(
    url: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
    method: str | None = None,
) -> Reply:
    """One request; HTTP errors come back as replies too."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


@dataclass
class Server:
    """A running ``detpipe serve`` process on loopback."""

    proc: subprocess.Popen
    url: str
    log: Path

    def get(self, path: str) -> Reply:
        return http(self.url + path)

    def post(self, path: str, data: bytes, content_type: str) -> Reply:
        return http(self.url + path, data, {"Content-Type": content_type})

    def request(self, path: str, data: bytes | None = None, content_type: str = "") -> Reply:
        return http(self.url + path, data, {"Content-Type": content_type} if content_type else {})

    def load(
        self, name: str, uri: str | Path | None = None, version: str | None = None, token: str | None = TOKEN
    ) -> Reply:
        """``POST /v2/repository/models/NAME/load`` with ``uri``/``version`` and the bearer ``token``."""
        params = {k: str(v) for k, v in (("uri", uri), ("version", version)) if v is not None}
        body = json.dumps({"parameters": params}).encode() if params else b""
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return http(f"{self.url}/v2/repository/models/{name}/load", body, headers, method="POST")

    def wait_ready(self, timeout: float = 120) -> None:
        """Until ``/readyz`` answers 200; raises with the log if the process exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"detpipe serve exited with {self.proc.returncode}:\n{self.log.read_text()}"
                )
            try:
                if http(self.url + "/readyz", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"detpipe serve not ready after {timeout}s:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


def start_serve(args: Sequence[str], log_dir: Path, env: dict[str, str] | None = None) -> Server:
    """``detpipe serve ARGS`` (one onnxruntime thread) on a free loopback port; not waited for."""
    port = free_port()
    log = log_dir / f"serve-{port}.log"
    cmd = [sys.executable, "-m", "detpipe.cli.main", "serve", "--port", str(port), "--threads", "1", *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    return Server(proc, f"http://127.0.0.1:{port}", log)
