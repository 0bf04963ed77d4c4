"""Real server processes for tests: moto's S3 server and a killable TCP proxy.

Imported by the conftest files and tests (``from store_servers import ...``; ``tests/`` is
on ``sys.path`` because of ``tests/conftest.py``); a module name of its own so it cannot
clash with other test directories' helpers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from detpipe.store import RetryPolicy, S3Config

MIB = 1024 * 1024
ACCESS_KEY = "detpipe-test-access"
SECRET_KEY = "detpipe-test-secret-Zq81"  # moto accepts any key unless IAM auth is enabled
PROXY_SCRIPT = Path(__file__).parent / "store" / "tcp_proxy.py"


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class MotoServer:
    """A moto S3 server process; its request log is watched so tests can act on requests."""

    def __init__(self, port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.log: list[str] = []
        self._watchers: list[tuple[re.Pattern[str], Callable[[str], None]]] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        threading.Thread(target=self._read, daemon=True).start()
        _wait_port(self.port, self.proc)
        # the port is open before the WSGI app is ready: wait for a real answer
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://{self.endpoint}/moto-api/data.json", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.log.append(line)
                watchers = list(self._watchers)
            for pattern, callback in watchers:
                if pattern.search(line):
                    callback(line)

    def on_request(self, pattern: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(line)`` from the log reader for each logged request matching ``pattern``."""
        with self._lock:
            self._watchers.append((re.compile(pattern), callback))

    def requests(self, pattern: str) -> list[str]:
        """Logged request lines matching ``pattern`` so far."""
        with self._lock:
            return [line for line in self.log if re.search(pattern, line)]

    def wait_requests(self, pattern: str, count: int, timeout: float = 5.0) -> list[str]:
        """Matching request lines once at least ``count`` are logged (the log trails the responses)."""
        deadline = time.monotonic() + timeout
        while len(self.requests(pattern)) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # let any extra (unexpected) request lines arrive too
        return self.requests(pattern)

    def make_bucket(self) -> str:
        """A fresh bucket, created through the real API with a throwaway client."""
        from minio import Minio

        name = f"t-{uuid.uuid4().hex[:16]}"
        Minio(self.endpoint, ACCESS_KEY, SECRET_KEY, secure=False, region="us-east-1").make_bucket(name)
        return name

    def kill(self) -> None:
        """SIGKILL: no goodbye to open connections."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


class Proxy:
    """A ``tcp_proxy.py`` process forwarding ``port`` to a server; kill it to cut the network.

    With ``stall_after`` it forwards at most that many bytes of each server response and then
    holds the connection open with nothing more on it (``tcp_proxy.py --stall-after``).
    """

    def __init__(self, target_port: int, port: int | None = None, stall_after: int | None = None) -> None:
        self.port = port or free_port()
        self.target_port = target_port
        self.endpoint = f"127.0.0.1:{self.port}"
        stall = [f"--stall-after={stall_after}"] if stall_after is not None else []
        self.proc = subprocess.Popen(
            [sys.executable, str(PROXY_SCRIPT), *stall, str(self.port), str(target_port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        _wait_port(self.port, self.proc)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


ALLOW_S3 = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
"""An IAM policy allowing every S3 action (a pipeline's or an admin's)."""


class IamUsers:
    """Users with keys and inline policies on a moto server, made before its IAM auth is turned on.

    moto skips authentication until ``INITIAL_NO_AUTH_ACTION_COUNT`` requests have been made
    (default: never); :meth:`enforce` (``/moto-api/reset-auth`` with 0) then makes every request
    need a known key, a valid signature and a policy that allows it.
    """

    def __init__(self, server: MotoServer) -> None:
        import boto3

        self.server = server
        self.iam = boto3.client(
            "iam",
            endpoint_url=f"http://{server.endpoint}",
            region_name="us-east-1",
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )

    def add(self, name: str, policy: dict | None = None, policy_name: str = "policy") -> tuple[str, str]:
        """Create user ``name`` (with ``policy`` inline, if any); returns its (access key, secret key)."""
        self.iam.create_user(UserName=name)
        key = self.iam.create_access_key(UserName=name)["AccessKey"]
        if policy is not None:
            self.iam.put_user_policy(UserName=name, PolicyName=policy_name, PolicyDocument=json.dumps(policy))
        return key["AccessKeyId"], key["SecretAccessKey"]

    def enforce(self) -> None:
        """Turn IAM authentication and authorization on for every later request."""
        request = urllib.request.Request(
            f"http://{self.server.endpoint}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        urllib.request.urlopen(request, timeout=10).read()


def s3_config(endpoint: str, **overrides: object) -> S3Config:
    """Test settings: 5 MiB parts, 3 quick attempts, short timeouts."""
    settings: dict = {
        "endpoint": endpoint,
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        "secure": False,
        "region": "us-east-1",
        "part_size": 5 * MIB,
        "retry": RetryPolicy(attempts=3, base_delay_s=0.05, max_delay_s=0.2),
        "connect_timeout_s": 2.0,
        "read_timeout_s": 10.0,
        "credential_source": "test settings",
    }
    settings.update(overrides)
    return S3Config(**settings)


@dataclass(frozen=True)
class S3Server:
    """A moto S3 server and the environment that points detpipe (and its child processes) at it."""

    endpoint: str
    env: dict[str, str]

    def store(self, uri: str):
        """An S3 store rooted at ``uri``, configured like the child processes."""
        from detpipe.store import open_store

        return open_store(uri, s3=S3Config.from_env(self.env))


def s3_env(endpoint: str) -> dict[str, str]:
    """``DETPIPE_S3_*``/``AWS_*`` variables for a server at ``endpoint`` (host:port)."""
    return {
        "DETPIPE_S3_ENDPOINT": f"http://{endpoint}",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "DETPIPE_S3_REGION": "us-east-1",
        "DETPIPE_S3_RETRIES": "2",
    }
