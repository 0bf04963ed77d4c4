"""A small HTTP client for tests of ``detpipe serve`` processes (urllib; any status is a reply).

Imported by tests and conftest files (``from serve_client import http, Server``; ``tests/``
is on ``sys.path`` because of ``tests/conftest.py``).
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
