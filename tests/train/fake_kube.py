"""A loopback stand-in for the Kubernetes API: just the job calls, replaying recorded states.

``detpipe train --launcher pytorchjob|trainjob`` (and the pipeline's train step) talk to it
through the real kubernetes client (a kubeconfig pointing here), so the tests exercise the
actual URLs, verbs and parameters, for PyTorchJobs (``kubeflow.org/v1``, ``pytorchjobs``) and
TrainJobs (``trainer.kubeflow.org/v1alpha1``, ``trainjobs``) alike:

* ``POST   /apis/{group}/{version}/namespaces/{ns}/{plural}``            -> 201, body recorded
  (409 AlreadyExists for a name the cluster holds)
* ``GET    /apis/{group}/{version}/namespaces/{ns}/{plural}?labelSelector=...`` -> the jobs held
  whose labels match (``k=v,...``), each with its last status
* ``GET    /apis/{group}/{version}/namespaces/{ns}/{plural}/{name}``     -> next recorded status
  (a job held from the start, ``existing``, keeps its own, unless it is the one ``replay`` names)
* ``DELETE /apis/{group}/{version}/namespaces/{ns}/{plural}/{name}``     -> recorded
* ``GET    /api/v1/namespaces/{ns}/pods?labelSelector=...``             -> node 0's pod
* ``GET    /api/v1/namespaces/{ns}/pods/{pod}/log?container=...``       -> next recorded log lines
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from kube_loopback import serve_api

JOB_PREFIXES = ("/apis/kubeflow.org/v1/", "/apis/trainer.kubeflow.org/v1alpha1/")
PLURALS = ("pytorchjobs", "trainjobs")


def condition(kind: str, status: str = "True", reason: str = "", message: str = "") -> dict[str, str]:
    """One ``status.conditions`` entry as the Training Operator writes it."""
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "lastUpdateTime": "2026-01-01T00:00:00Z",
    }


SUSPEND_PATHS = (("spec", "runPolicy", "suspend"), ("spec", "suspend"))  # PyTorchJob, TrainJob


class FakeKube:
    """The recorded cluster: a status sequence (the last one repeats) and log chunks.

    A status is a list of conditions, or a whole ``status`` object (a dict). The status
    sequence plays for the job created last, or for the held job ``replay`` names.
    """

    def __init__(
        self,
        statuses: Sequence[list[dict[str, str]] | dict[str, Any]],
        logs: Sequence[list[str]] = (),
        on_create: Callable[[dict[str, Any]], None] | None = None,
        existing: Sequence[dict[str, Any]] = (),
        replay: str | None = None,
        admit_after: int | None = None,
    ) -> None:
        """``on_create(manifest)`` runs when a job is submitted (what its pods would do, in tests).

        ``existing``: jobs the cluster holds from the start (whole objects with their status).
        ``admit_after``: after that many GETs of the replayed job, unsuspend it (Kueue's admission).
        """
        self.on_create = on_create
        self.statuses = list(statuses)
        self.logs = list(logs)
        self.jobs: dict[str, dict[str, Any]] = {j["metadata"]["name"]: j for j in existing}
        self.replay = replay
        self.admit_after = admit_after
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.requests: list[str] = []
        self.selectors: list[str] = []
        self.gets = 0
        self._lock = threading.Lock()

    def _job(self, name: str) -> dict[str, Any]:
        with self._lock:
            held = self.jobs.get(name)
            if held is not None and name != self.replay:
                return held
            self.gets += 1
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            job = held or (dict(self.created[-1]) if self.created else {"metadata": {"name": name}})
            if self.admit_after is not None and self.gets > self.admit_after:
                _unsuspend(job)
            job = {**job, "status": status if isinstance(status, dict) else {"conditions": status}}
            if held is not None:
                self.jobs[name] = job
            return job

    def _create(self, body: dict[str, Any]) -> bool:
        """Hold the job; False when its name is taken."""
        with self._lock:
            name = body["metadata"]["name"]
            if name in self.jobs:
                return False
            self.jobs[name] = copy.deepcopy(body)  # Kueue's admission changes the held copy only
            self.replay = name
            self.created.append(body)
            return True

    def _list(self, selector: str) -> list[dict[str, Any]]:
        wanted = dict(item.partition("=")[::2] for item in selector.split(",") if item)
        with self._lock:
            return [
                job
                for job in self.jobs.values()
                if all((job["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
            ]

    def _log(self) -> str:
        with self._lock:
            chunk = self.logs.pop(0) if self.logs else []
        return "".join(
            f"2026-01-01T00:00:{i:02d}.{len(self.requests):06d}Z {line}\n" for i, line in enumerate(chunk)
        )

    def handler(self) -> type[BaseHTTPRequestHandler]:
        kube = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                kube.requests.append(f"POST {self.path}")
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not kube._create(body):
                    message = f'"{body["metadata"]["name"]}" already exists'
                    conflict = {"kind": "Status", "code": 409, "reason": "AlreadyExists", "message": message}
                    self._send(409, conflict)
                    return
                if kube.on_create:
                    kube.on_create(body)
                self._send(201, body)

            def do_DELETE(self) -> None:
                kube.requests.append(f"DELETE {self.path}")
                kube.deleted.append(urlparse(self.path).path.rsplit("/", 1)[-1])
                self._send(200, {"kind": "Status", "status": "Success"})

            def do_GET(self) -> None:
                kube.requests.append(f"GET {self.path}")
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")
                if url.path.startswith(JOB_PREFIXES) and parts[-2] in PLURALS:
                    self._send(200, kube._job(parts[-1]))
                elif url.path.startswith(JOB_PREFIXES) and parts[-1] in PLURALS:
                    selector = parse_qs(url.query).get("labelSelector", [""])[0]
                    self._send(200, {"kind": "List", "metadata": {}, "items": kube._list(selector)})
                elif url.path.endswith("/log"):
                    self._send(200, kube._log(), "text/plain")
                elif url.path.endswith("/pods"):
                    selector = parse_qs(url.query).get("labelSelector", [""])[0]
                    kube.selectors.append(selector)
                    labels = dict(item.partition("=")[::2] for item in selector.split(","))
                    job = labels.get("training.kubeflow.org/job-name") or labels.get(
                        "jobset.sigs.k8s.io/jobset-name", ""
                    )
                    pod = {"metadata": {"name": f"{job}-master-0", "namespace": parts[3]}}
                    self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [pod]})
                else:
                    self._send(404, {"kind": "Status", "code": 404})

        return Handler


def _unsuspend(job: dict[str, Any]) -> None:
    """Set the job's ``suspend`` flag false, as Kueue does when it admits the job."""
    for path in SUSPEND_PATHS:
        node = job
        for key in path[:-1]:
            node = node.get(key) or {}
        if path[-1] in node:
            node[path[-1]] = False


@contextmanager
def serve(kube: FakeKube, kubeconfig: Path) -> Iterator[FakeKube]:
    """Serve ``kube`` on a free loopback port and write a kubeconfig that points at it."""
    with serve_api(kube.handler(), kubeconfig, namespace="detpipe"):
        yield kube
