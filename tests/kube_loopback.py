"""Serve a fake Kubernetes API handler on loopback, with a kubeconfig that points at it.

The fakes (``tests/train/fake_kube.py``, ``tests/deploy/fake_kube.py``) record and replay
what their API calls need; this is the part they share: the server thread and the kubeconfig
the real kubernetes client loads.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@contextmanager
def serve_api(
    handler: type[BaseHTTPRequestHandler], kubeconfig: Path, namespace: str | None = None
) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port; yields its URL once ``kubeconfig`` names it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    context = {"cluster": "fake", "user": "fake", **({"namespace": namespace} if namespace else {})}
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": f"http://{host}:{port}"}}],
                "users": [{"name": "fake", "user": {"token": "not-a-secret"}}],
                "contexts": [{"name": "fake", "context": context}],
            }
        )
    )
    try:
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
