"""A loopback stand-in for the Kubernetes API serving recorded objects, for ``detpipe deploy``.

The real kubernetes client talks to it (a kubeconfig pointing here), so tests see the actual
verbs, paths, content types and query parameters:

* ``GET   <object path>``                 -> the stored object, or a 404 ``Status``
* ``PATCH <object path>`` apply-patch      -> stores the body (server-side apply), returns it
* ``PATCH <object path>[/status]`` merge   -> RFC 7386 merge into the stored object
* ``PATCH <object path>`` strategic merge  -> merge, containers matched by name (as the API server)

``no_status_subresource`` answers 404 on ``/status`` (a CRD without the subresource, Argo
Rollouts < v0.10); ``fail`` maps a path to a recorded error ``Status``.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

from kube_loopback import serve_api


@dataclass
class Request:
    method: str
    path: str
    content_type: str
    query: dict[str, str]
    body: Any


def merge(target: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7386)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def strategic(target: Any, patch: Any) -> Any:
    """Strategic merge for what detpipe sends: lists of named items merge by ``name``."""
    if isinstance(patch, list) and all(isinstance(p, dict) and "name" in p for p in patch):
        items = {i["name"]: i for i in target or []}
        for p in patch:
            items[p["name"]] = strategic(items.get(p["name"], {}), p)
        return list(items.values())
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        out[key] = strategic(out.get(key), value)
    return out


@dataclass
class FakeKube:
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> object
    requests: list[Request] = field(default_factory=list)
    no_status_subresource: bool = False
    fail: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # path -> (code, reason, message)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def patches(self) -> list[tuple[str, str, Any]]:
        """(path, content type, body) of every PATCH, in order."""
        return [(r.path, r.content_type, r.body) for r in self.requests if r.method == "PATCH"]

    def handler(self) -> type[BaseHTTPRequestHandler]:
        kube = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _status(self, code: int, reason: str, message: str) -> None:
                self._send(
                    code,
                    {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                     "reason": reason, "code": code},
                )  # fmt: skip

            def _record(self) -> Request:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                req = Request(
                    self.command,
                    url.path,
                    self.headers.get("Content-Type", ""),
                    dict(parse_qsl(url.query)),
                    body,
                )
                with kube._lock:
                    kube.requests.append(req)
                return req

            def do_GET(self) -> None:
                req = self._record()
                if req.path in kube.fail:
                    self._status(*kube.fail[req.path])
                elif req.path in kube.objects:
                    self._send(200, kube.objects[req.path])
                else:
                    self._status(404, "NotFound", f"{req.path.rsplit('/', 1)[-1]} not found")

            def do_PATCH(self) -> None:
                req = self._record()
                path, sub = req.path, ""
                if path.endswith("/status"):
                    path, sub = path[: -len("/status")], "status"
                if req.path in kube.fail:
                    return self._status(*kube.fail[req.path])
                if sub and kube.no_status_subresource:
                    return self._status(404, "NotFound", "the server could not find the requested resource")
                with kube._lock:
                    if req.content_type == "application/apply-patch+yaml":
                        kube.objects[path] = merge(kube.objects.get(path, {}), req.body)
                    elif path not in kube.objects:
                        return self._status(404, "NotFound", f"{path.rsplit('/', 1)[-1]} not found")
                    elif req.content_type == "application/strategic-merge-patch+json":
                        kube.objects[path] = strategic(kube.objects[path], req.body)
                    else:
                        kube.objects[path] = merge(kube.objects[path], req.body)
                    out = kube.objects[path]
                self._send(200, out)

        return Handler


@contextmanager
def serve(kube: FakeKube, kubeconfig: Path) -> Iterator[FakeKube]:
    """Serve ``kube`` on a free loopback port and write a kubeconfig that points at it."""
    with serve_api(kube.handler(), kubeconfig):
        yield kube
