"""Compose the Kubernetes objects of a canary from a :class:`CanaryConfig`, and print them as YAML.

``--strategy rollout`` (Argo Rollouts):

* Services ``<name>`` (every serving pod), ``<name>-stable`` and ``<name>-canary`` (Argo adds
  the pod-template hash to the last two selectors);
* one AnalysisTemplate per check (``<name>-error-rate``, ``<name>-latency-p95-ratio`` and,
  with a shadow, ``<name>-shadow-agreement``);
* the Rollout: setWeight / pause / analysis per step; a failed analysis aborts it;
* HPA ``<name>-rollout`` (``replicas`` .. ``max_replicas``): the Rollout carries no replica
  count of its own, so applying a new canary never scales warm pods away.

``--strategy gateway`` (Gateway API, no controller beyond the Gateway's):

* Services ``<name>-stable`` / ``<name>-canary`` by ``detpipe.io/track``;
* Deployment ``<name>-canary`` on the new release (and ``<name>``, the stable track, when a
  stable release is given; else k8s/serving's ``detpipe-serve`` is the stable track);
* HTTPRoute ``<name>`` with the first step's weights; ``deploy promote`` moves them.

``--strategy kserve`` (KServe Serverless mode; :mod:`detpipe.deploy.kserve`):

* ServiceAccount ``<name>-storage`` (KServe's S3 annotations, the credentials Secret by name);
* ServingRuntime ``detpipe`` and InferenceService ``<name>`` with ``canaryTrafficPercent``.

Objects come in apply order (what a Rollout refers to exists before it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from detpipe.deploy import objects as o
from detpipe.deploy.config import CanaryConfig

ARG_MODEL, ARG_VERSION = "{{args.model}}", "{{args.version}}"


def render(cfg: CanaryConfig) -> list[dict[str, Any]]:
    """Every object of the canary, in apply order."""
    if cfg.strategy == "kserve":
        from detpipe.deploy.kserve import render_kserve

        return render_kserve(cfg)
    return _rollout(cfg) if cfg.strategy == "rollout" else _gateway(cfg)


def _labels(cfg: CanaryConfig) -> dict[str, str]:
    return {"app.kubernetes.io/name": cfg.name, "app.kubernetes.io/component": "inference"}


def _pod(cfg: CanaryConfig, selector: Mapping[str, str], model_uri: str, version: str) -> dict[str, Any]:
    labels = {**_labels(cfg), **selector, "detpipe.io/model": cfg.model_name, o.VERSION_LABEL: version}
    container = o.serve_container(cfg.image, model_uri, cfg.model_format, gpu=cfg.gpu)
    return o.pod_template(labels, container, gpu=cfg.gpu)


def analysis_templates(cfg: CanaryConfig) -> list[dict[str, Any]]:
    """One AnalysisTemplate per check, queries with ``{{args.model}}``/``{{args.version}}``."""
    return [
        o.analysis_template(
            f"{cfg.name}-{check.name}",
            cfg.namespace,
            check,
            cfg.prometheus_url,
            interval=cfg.analysis_interval,
            count=cfg.analysis_count,
            labels=_labels(cfg),
        )
        for check in cfg.checks(ARG_MODEL, ARG_VERSION)
    ]


def _rollout(cfg: CanaryConfig) -> list[dict[str, Any]]:
    selector = {"app.kubernetes.io/name": cfg.name, o.STRATEGY_LABEL: "rollout"}
    templates = analysis_templates(cfg)
    names = [t["metadata"]["name"] for t in templates]
    shadow = [n for n in names if n.endswith("-shadow-agreement")]
    steps = o.canary_steps(
        cfg.steps,
        cfg.pause,
        [n for n in names if n not in shadow],
        {"model": cfg.model_name, "version": cfg.version},
        pre_templates=shadow,
    )
    labels = _labels(cfg)
    return [
        o.service(cfg.name, cfg.namespace, {"app.kubernetes.io/name": cfg.name}, labels),
        o.service(f"{cfg.name}-stable", cfg.namespace, selector, labels),
        o.service(f"{cfg.name}-canary", cfg.namespace, selector, labels),
        *templates,
        o.rollout(
            cfg.name,
            cfg.namespace,
            None,  # the HPA's: a new canary never scales warm pods away
            selector,
            _pod(cfg, selector, cfg.model_uri, cfg.version),
            steps,
            labels,
        ),
        o.hpa(
            f"{cfg.name}-rollout",
            cfg.namespace,
            {"apiVersion": o.ARGO, "kind": "Rollout", "name": cfg.name},
            cfg.replicas,
            cfg.max_replicas,
            labels,
        ),
    ]


def track_selector(name: str, track: str) -> dict[str, str]:
    """Pods of one track of a Gateway API canary (k8s/serving's Deployment is track stable)."""
    return {"app.kubernetes.io/name": name, o.TRACK_LABEL: track}


def _gateway(cfg: CanaryConfig) -> list[dict[str, Any]]:
    from detpipe.deploy.config import release_identity

    labels = _labels(cfg)
    stable, canary = track_selector(cfg.name, "stable"), track_selector(cfg.name, "canary")
    out = [
        o.service(f"{cfg.name}-stable", cfg.namespace, stable, labels),
        o.service(f"{cfg.name}-canary", cfg.namespace, canary, labels),
    ]
    if cfg.stable_model_uri:
        _, stable_version = release_identity(cfg.stable_model_uri)
        pod = _pod(cfg, stable, cfg.stable_model_uri, stable_version)
        out.append(o.deployment(cfg.name, cfg.namespace, cfg.replicas, stable, pod, {**labels, **stable}))
    canary_dep = o.deployment(
        f"{cfg.name}-canary",
        cfg.namespace,
        cfg.replicas,
        canary,
        _pod(cfg, canary, cfg.model_uri, cfg.version),
        {**labels, **canary},
    )
    canary_dep["metadata"]["annotations"] = {o.MODEL_URI_ANNOTATION: cfg.model_uri}
    out.append(canary_dep)
    first = cfg.steps[0]
    annotations = {o.STEPS_ANNOTATION: ",".join(map(str, cfg.steps)), o.MODEL_URI_ANNOTATION: cfg.model_uri}
    out.append(o.http_route(cfg.name, cfg.namespace, cfg.gateway, 100 - first, first, labels, annotations))
    return out


def rollout_variant(cfg: CanaryConfig) -> list[dict[str, Any]]:
    """k8s/serving/rollout: the canary's objects, less the Service k8s/serving has."""
    return [d for d in _rollout(cfg) if not (d["kind"] == "Service" and d["metadata"]["name"] == cfg.name)]


def gpu_variant(cfg: CanaryConfig) -> list[dict[str, Any]]:
    """k8s/serving/gpu: the stable Deployment on GPU pods (release from the ConfigMap) and its HPA.

    Same name and selector as k8s/serving's Deployment, so applying it replaces that one in place.
    """
    stable = track_selector(cfg.name, "stable")
    labels = {**_labels(cfg), **stable}
    container = o.serve_container(cfg.image, "$(MODEL_URI)", "$(MODEL_FORMAT)", gpu=True)
    pod = o.pod_template(labels, container, gpu=True)
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": cfg.name}
    return [
        o.deployment(cfg.name, cfg.namespace, cfg.replicas, stable, pod, labels),
        o.hpa(cfg.name, cfg.namespace, target, cfg.replicas, cfg.max_replicas, _labels(cfg)),
    ]


def to_yaml(docs: Iterable[Mapping[str, Any]]) -> str:
    """Multi-document YAML (block style, keys in the order written), as ``kubectl apply -f`` takes."""
    return yaml.safe_dump_all(
        [dict(d) for d in docs], sort_keys=False, default_flow_style=False, width=120, explicit_start=True
    )
