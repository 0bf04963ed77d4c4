"""Fixtures for the artifact-store tests: a real moto S3 server process on loopback.

``moto_server`` (one per session) runs ``python -m moto.server`` on a free 127.0.0.1 port;
tests get a fresh bucket each. ``start_moto`` and ``start_proxy`` start extra processes a
test may kill (all are killed at teardown). ``store`` is parametrized over both backends,
so the same test runs against the local filesystem and against S3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from store_servers import ACCESS_KEY, ALLOW_S3, SECRET_KEY, IamUsers, MotoServer, Proxy, s3_config

from detpipe.store import LocalStore, S3Store, Store, open_store


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto S3 server process for the session (tests use their own buckets)."""
    server = MotoServer()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def start_moto() -> Iterator[Callable[..., MotoServer]]:
    """Start extra moto servers that a test may kill; all are killed at teardown."""
    started: list[MotoServer] = []

    def start(port: int | None = None, env: dict[str, str] | None = None) -> MotoServer:
        server = MotoServer(port, env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


@pytest.fixture
def start_proxy() -> Iterator[Callable[..., Proxy]]:
    """Start TCP proxies (separate processes); all are killed at teardown."""
    started: list[Proxy] = []

    def start(target_port: int, port: int | None = None) -> Proxy:
        proxy = Proxy(target_port, port)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.kill()


@pytest.fixture
def bucket(moto_server: MotoServer) -> str:
    """A fresh, empty bucket on the session server."""
    return moto_server.make_bucket()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """The same tests against both backends: a temp directory, or a fresh bucket (with a prefix)."""
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    server: MotoServer = request.getfixturevalue("moto_server")
    name = server.make_bucket()
    return open_store(f"s3://{name}/root", s3=s3_config(server.endpoint))


@pytest.fixture
def store_env(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the environment at ``store``'s server, so that plain ``s3://`` URIs reach it too."""
    if isinstance(store, S3Store):
        monkeypatch.setenv("DETPIPE_S3_ENDPOINT", f"http://{store.config.endpoint}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        monkeypatch.delenv("DETPIPE_S3_SECRET_DIR", raising=False)


@dataclass(frozen=True)
class AuthServer:
    """A moto server with IAM auth on: one key allowed ``s3:*``, one valid key allowed nothing."""

    server: MotoServer
    access_key: str
    secret_key: str
    denied_access_key: str
    denied_secret_key: str


@pytest.fixture(scope="module")
def moto_auth() -> Iterator[AuthServer]:
    """A moto server that checks credentials (IAM auth on), with one user allowed ``s3:*``.

    moto skips authentication until ``INITIAL_NO_AUTH_ACTION_COUNT`` requests have been
    made (default: never). The user and key are created with auth still off, then
    ``/moto-api/reset-auth`` sets the count to 0: from then on every request must be signed
    by a known key with the right secret, and its IAM policy must allow the action.
    """
    server = MotoServer()
    try:
        users = IamUsers(server)
        access, secret = users.add("pipeline", ALLOW_S3)
        nobody = users.add("nobody")  # a valid key without any permission
        users.enforce()
        yield AuthServer(server, access, secret, *nobody)
    finally:
        server.kill()
