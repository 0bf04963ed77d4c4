"""A counting reverse proxy for the fleet benchmark: every HTTP request to the S3 server, and its bytes.

    python benchmarks/fleet_proxy.py LISTEN_PORT UPSTREAM_PORT      # prints "ready" once listening

Run as its own process (:class:`CountingProxy`) in front of the moto server. Per
connection it forwards bytes both ways unchanged and reads the client's stream for request
heads (``Content-Length`` bodies; a chunked request body is refused): each request is
counted under its method and key area (:func:`area`), with the bytes of its head and body
and of everything the server sends until the next request (clients here do not pipeline).
``GET /__fleet_bench_counts__`` is answered by the proxy itself (never forwarded, never
counted) with the totals so far, ``{area: [requests, bytes up, bytes down]}``::

    proxy = CountingProxy(moto.port)
    with Meter(proxy).measure() as m:
        ...                                  # requests through proxy.endpoint
    m.traffic.requests, m.traffic.bytes, m.seconds
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

CONTROL = "/__fleet_bench_counts__"


def area(method: str, target: str) -> str:
    """``GET metadata``, ``PUT report``, ...: what an S3 request (path-style) is about."""
    path, _, query = target.partition("?")
    _, _, key = unquote(path).lstrip("/").partition("/")
    if not key:
        kind = "list" if "list-type" in query or "prefix" in query else "bucket"
    else:
        kinds = (
            ("ota/metadata/", "metadata"), ("ota/targets/", "artifact"), ("devices/", "report"),
            ("ota/devices/", "registration"), ("ota/rollouts/", "rollout-state"), ("ota/fleet/", "seen"),
        )  # fmt: skip
        kind = next((k for prefix, k in kinds if key.startswith(prefix)), "other")
    return f"{method} {kind}"


async def _proxy_main(listen: int, upstream: int) -> None:
    counts: dict[str, list[int]] = {}  # area -> [requests, bytes up, bytes down]

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            head = await cr.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            cw.close()
            return
        if head.split(b" ", 2)[1].decode() == CONTROL:
            body = json.dumps(counts).encode()
            cw.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
            await cw.drain()
            cw.close()
            return
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            cw.close()
            return
        current: list[str] = [""]

        def start(head: bytes) -> int:
            """Count a request head; returns its body length."""
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
            }
            if "chunked" in headers.get("transfer-encoding", ""):
                raise RuntimeError("chunked request bodies are not counted by this proxy")
            current[0] = area(method, target)
            entry = counts.setdefault(current[0], [0, 0, 0])
            entry[0] += 1
            entry[1] += len(head)
            return int(headers.get("content-length", 0))

        async def up(first: bytes) -> None:
            buf, body = b"", start(first)
            sw.write(first)
            try:
                while data := await cr.read(1 << 16):
                    sw.write(data)
                    pos = 0
                    while pos < len(data):
                        if body:
                            n = min(body, len(data) - pos)
                            counts[current[0]][1] += n
                            body, pos = body - n, pos + n
                            continue
                        buf += data[pos:]
                        pos = len(data)
                        end = buf.find(b"\r\n\r\n")
                        if end >= 0:
                            head, rest = buf[: end + 4], buf[end + 4 :]
                            buf, body = b"", start(head)
                            data, pos = rest, 0
                    await sw.drain()
            except ConnectionError:
                pass
            finally:
                with contextlib.suppress(Exception):
                    sw.close()

        async def down() -> None:
            try:
                while data := await sr.read(1 << 16):
                    counts[current[0]][2] += len(data)
                    cw.write(data)
                    await cw.drain()
            except ConnectionError:
                pass
            finally:
                with contextlib.suppress(Exception):
                    cw.close()

        await asyncio.gather(up(head), down())

    server = await asyncio.start_server(handle, "127.0.0.1", listen, reuse_address=True, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


class CountingProxy:
    """This script as a counting reverse proxy process in front of ``upstream_port``."""

    def __init__(self, upstream_port: int) -> None:
        self.port = _free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(self.port), str(upstream_port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("the counting proxy did not start")

    def counts(self) -> dict[str, list[int]]:
        with urllib.request.urlopen(f"http://{self.endpoint}{CONTROL}", timeout=30) as r:
            return json.loads(r.read())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@dataclass
class Traffic:
    """Requests and bytes by area between two proxy snapshots."""

    by_area: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def between(cls, before: dict[str, list[int]], after: dict[str, list[int]]) -> Traffic:
        out = {}
        for k, v in after.items():
            old = before.get(k, [0, 0, 0])
            d = [a - b for a, b in zip(v, old, strict=True)]
            if any(d):
                out[k] = d
        return cls(out)

    @property
    def requests(self) -> int:
        return sum(v[0] for v in self.by_area.values())

    @property
    def bytes(self) -> int:
        return sum(v[1] + v[2] for v in self.by_area.values())

    def per(self, n: int) -> dict[str, Any]:
        return {
            "requests": self.requests / n,
            "bytes": self.bytes / n,
            "by_area": {k: {"requests": v[0] / n, "bytes_up": v[1] / n, "bytes_down": v[2] / n}
                        for k, v in sorted(self.by_area.items())},
        }  # fmt: skip


class Meter:
    """Snapshots of the proxy around a block: ``with meter.measure() as m: ...; m.traffic``."""

    def __init__(self, proxy: CountingProxy) -> None:
        self.proxy = proxy

    @contextlib.contextmanager
    def measure(self) -> Iterator[Measured]:
        m = Measured()
        before = self.proxy.counts()
        t = time.perf_counter()
        try:
            yield m
        finally:
            m.seconds = time.perf_counter() - t
            m.traffic = Traffic.between(before, self.proxy.counts())


@dataclass
class Measured:
    seconds: float = 0.0
    traffic: Traffic = field(default_factory=Traffic)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    asyncio.run(_proxy_main(int(sys.argv[1]), int(sys.argv[2])))
