"""Roll a canary out: render its objects and, unless a dry run, apply them (CLI and pipeline).

::

    docs = roll_out(CanaryConfig(model_uri="s3://detpipe/models/yolov8n-coco/0.2.0"), dry_run=True)
    write_manifests(docs, Path("canary.yaml"))
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detpipe.deploy.config import CanaryConfig
from detpipe.deploy.render import render, to_yaml
from detpipe.io import write_text

if TYPE_CHECKING:
    from detpipe.deploy.kserve_auto import AutoResult

log = logging.getLogger(__name__)


def roll_out(
    cfg: CanaryConfig, *, dry_run: bool, context: str | None = None, kubeconfig: str | None = None
) -> list[dict[str, Any]]:
    """The canary's objects, applied server-side in order unless ``dry_run``.

    Raises:
        Unavailable: no cluster configured (not for a dry run).
        ClusterError: the API server refused an object.
    """
    docs = render(cfg)
    if dry_run:
        return docs
    from detpipe.deploy.cluster import Kube

    kube = Kube.connect(context, kubeconfig)
    if cfg.strategy == "kserve":  # keeps a running canary's traffic share (kserve_actions)
        from detpipe.deploy.kserve_actions import apply_canary

        return apply_canary(kube, cfg).docs
    for doc in docs:
        kube.apply(doc)
    log.info("canary %s %s applied (%s, %d objects)", cfg.model_name, cfg.version, cfg.strategy, len(docs))
    return docs


def roll_out_auto(
    cfg: CanaryConfig,
    *,
    context: str | None = None,
    kubeconfig: str | None = None,
    report: Callable[[str], None] = print,
) -> AutoResult:
    """Apply a KServe canary, judge each step on Prometheus, and promote or roll back by itself.

    Raises:
        InvalidInput: not ``--strategy kserve``, ``--pause manual``, or Standard mode.
        Unavailable: no cluster configured, or no KServe on it.
        ClusterError: the API server refused an object.
    """
    from detpipe.deploy.cluster import Kube
    from detpipe.deploy.kserve_actions import apply_canary
    from detpipe.deploy.kserve_auto import check_auto, run_auto

    check_auto(cfg)
    kube = Kube.connect(context, kubeconfig)
    applied = apply_canary(kube, cfg)
    for doc in applied.docs:
        report(f"applied {doc['kind']} {cfg.namespace}/{doc['metadata']['name']}")
    return run_auto(kube, cfg, applied, report)


def write_manifests(docs: list[dict[str, Any]], path: Path) -> Path:
    """The objects as multi-document YAML at ``path`` (atomically)."""
    return write_text(path, to_yaml(docs))
