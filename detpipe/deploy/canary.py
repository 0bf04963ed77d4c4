"""Roll a canary out: render its objects and, unless a dry run, apply them (CLI and pipeline).

::

    docs = roll_out(CanaryConfig(model_uri="s3://detpipe/models/yolov8n-coco/0.2.0"), dry_run=True)
    write_manifests(docs, Path("canary.yaml"))
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from detpipe.deploy.config import CanaryConfig
from detpipe.deploy.render import render, to_yaml
from detpipe.io import write_text

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
    for doc in docs:
        kube.apply(doc)
    log.info("canary %s %s applied (%s, %d objects)", cfg.model_name, cfg.version, cfg.strategy, len(docs))
    return docs


def write_manifests(docs: list[dict[str, Any]], path: Path) -> Path:
    """The objects as multi-document YAML at ``path`` (atomically)."""
    return write_text(path, to_yaml(docs))
