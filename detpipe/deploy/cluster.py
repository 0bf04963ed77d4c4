"""The Kubernetes API calls of ``detpipe deploy``: server-side apply, get, and patches.

Objects are applied the way ``kubectl apply --server-side --field-manager detpipe
--force-conflicts`` does it: ``PATCH`` with ``application/apply-patch+yaml``, so a re-run
with the same objects changes nothing and detpipe owns the fields it sets. Kinds map to
their API paths in :data:`KINDS` (no discovery round trip)::

    kube = Kube.connect()
    for obj in render(cfg):
        kube.apply(obj)
    kube.patch("Rollout", "detpipe", "detpipe-serve", {"status": {"abort": True}}, subresource="status")
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from detpipe.errors import DetpipeError, InvalidInput, NotFound, Unavailable

log = logging.getLogger(__name__)

FIELD_MANAGER = "detpipe"
# kind -> (API group path, plural) of every kind detpipe deploy writes or reads.
KINDS: dict[str, tuple[str, str]] = {
    "Service": ("/api/v1", "services"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "Rollout": ("/apis/argoproj.io/v1alpha1", "rollouts"),
    "AnalysisTemplate": ("/apis/argoproj.io/v1alpha1", "analysistemplates"),
    "HTTPRoute": ("/apis/gateway.networking.k8s.io/v1", "httproutes"),
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "ServingRuntime": ("/apis/serving.kserve.io/v1alpha1", "servingruntimes"),
    "InferenceService": ("/apis/serving.kserve.io/v1beta1", "inferenceservices"),
}
# What to install when a kind's API is missing.
_INSTALL = {
    "argoproj.io": ": install Argo Rollouts, or use --strategy gateway",
    "gateway.networking.k8s.io": ": install the Gateway API CRDs (standard channel) and a Gateway controller",
    "serving.kserve.io": ": install KServe (Serverless mode, with Knative Serving), or another --strategy",
}
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"  # built-in kinds only (Deployment, Service)
APPLY = "application/apply-patch+yaml"


class ClusterError(DetpipeError):
    """The API server refused a request (the reason is the server's)."""


def object_path(kind: str, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    """``/apis/argoproj.io/v1alpha1/namespaces/detpipe/rollouts/detpipe-serve[/status]``."""
    try:
        prefix, plural = KINDS[kind]
    except KeyError:
        raise InvalidInput(f"detpipe deploy does not handle kind {kind}") from None
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


class Kube:
    """A thin client over ``kubernetes.client.ApiClient`` for the calls above."""

    def __init__(self, api_client: Any) -> None:
        self._api = api_client

    @classmethod
    def connect(cls, context: str | None = None, kubeconfig: str | None = None) -> Kube:
        """The in-cluster service account, else a kubeconfig (``kubeconfig`` or ``$KUBECONFIG``/
        ``~/.kube/config``; ``context`` or its current one). Naming either skips the in-cluster account.

        Raises:
            Unavailable: no cluster configured here.
        """
        from kubernetes import client, config

        if context is None and kubeconfig is None:
            try:
                config.load_incluster_config()
                return cls(client.ApiClient())
            except config.ConfigException:
                pass
        try:
            return cls(config.new_client_from_config(config_file=kubeconfig, context=context))
        except (config.ConfigException, FileNotFoundError) as e:
            raise Unavailable(f"no Kubernetes cluster configured (in-cluster or kubeconfig): {e}") from None

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str | None = None,
        query: list[tuple[str, Any]] | None = None,
    ) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            data = self._api.call_api(
                path,
                method,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                response_type="object",
                _return_http_data_only=True,
            )
        except ApiException as e:
            if e.status == 404:
                raise NotFound(f"{path}: not found ({_message(e)})") from None
            raise ClusterError(f"{method} {path}: {e.status} {e.reason}: {_message(e)}") from None
        except HTTPError as e:
            raise Unavailable(f"{method} {path}: cluster unreachable: {e}") from None
        return data or {}

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply of one object (field manager ``detpipe``, conflicts forced)."""
        meta = obj["metadata"]
        path = object_path(obj["kind"], meta["namespace"], meta["name"])
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        try:
            out = self._call("PATCH", path, dict(obj), APPLY, query)
        except NotFound:  # apply creates missing objects: a 404 means the API has no such kind
            group = obj["apiVersion"].split("/")[0]
            raise Unavailable(
                f"the cluster has no {obj['apiVersion']} {obj['kind']} API{_INSTALL.get(group, '')}"
            ) from None
        log.info("applied %s %s/%s", obj["kind"], meta["namespace"], meta["name"])
        return out

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """The object; raises NotFound when there is none."""
        return self._call("GET", object_path(kind, namespace, name))

    def patch(
        self,
        kind: str,
        namespace: str,
        name: str,
        body: Mapping[str, Any],
        *,
        subresource: str | None = None,
        content_type: str = MERGE,
    ) -> dict[str, Any]:
        """A merge patch (or ``content_type``) of the object or of its ``subresource``."""
        path = object_path(kind, namespace, name, subresource)
        out = self._call("PATCH", path, dict(body), content_type)
        log.debug("patched %s: %s", path, json.dumps(body))
        return out


def _message(e: Any) -> str:
    try:
        return str(json.loads(e.body).get("message", ""))[:300] or str(e.reason)
    except (TypeError, ValueError, AttributeError):
        return str(e.reason)
