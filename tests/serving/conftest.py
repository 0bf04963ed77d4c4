"""Fixtures for the server tests: val images as JPEG bytes, and real server processes.

``serve`` starts ``detpipe serve`` as a real uvicorn process on a free loopback port and
waits until ``/readyz`` answers; every process is stopped (SIGTERM, then SIGKILL) at
teardown. ``http`` is a tiny urllib client that returns status, headers and body for any
status code.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from store_servers import free_port


@pytest.fixture(scope="session")
def val_jpegs(small_data) -> list[bytes]:
    """The first 8 val images as JPEG bytes, as a client would send them."""
    return [p.read_bytes() for p in sorted(small_data.val_images.glob("*.jpg"))[:8]]


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def http(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 30
) -> Reply:
    """One request; HTTP errors come back as replies too."""
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    log: Path

    def get(self, path: str) -> Reply:
        return http(self.url + path)

    def post(self, path: str, data: bytes, content_type: str) -> Reply:
        return http(self.url + path, data, {"Content-Type": content_type})

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


def _wait_ready(server: Server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"detpipe serve exited with {server.proc.returncode}:\n{server.log.read_text()}"
            )
        try:
            if http(server.url + "/readyz", timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"detpipe serve not ready after {timeout}s:\n{server.log.read_text()}")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start ``detpipe serve ARGS`` processes (ready when returned); stopped at teardown."""
    started: list[Server] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Server:
        port = free_port()
        log = tmp_path / f"serve-{port}.log"
        cmd = [
            sys.executable,
            "-m",
            "detpipe.cli.main",
            "serve",
            "--port",
            str(port),
            "--threads",
            "1",
            *args,
        ]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*cmd, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        server = Server(proc, f"http://127.0.0.1:{port}", log)
        started.append(server)
        _wait_ready(server)
        return server

    yield start
    for server in started:
        server.stop()
