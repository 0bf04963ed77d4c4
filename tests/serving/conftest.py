"""Fixtures for the server tests: val images as JPEG bytes, and real server processes.

``serve`` starts ``detpipe serve`` as a real uvicorn process on a free loopback port and
waits until ``/readyz`` answers; every process is stopped (SIGTERM, then SIGKILL) at
teardown. The client helpers (``http``, ``Reply``, ``Server``) live in ``serve_client``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from serve_client import Server, wait_ready
from store_servers import free_port


@pytest.fixture(scope="session")
def val_jpegs(small_data) -> list[bytes]:
    """The first 8 val images as JPEG bytes, as a client would send them."""
    return [p.read_bytes() for p in sorted(small_data.val_images.glob("*.jpg"))[:8]]


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
        wait_ready(server)
        return server

    yield start
    for server in started:
        server.stop()
