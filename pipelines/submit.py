"""Submit a compiled pipeline to a Kubeflow Pipelines cluster with kfp.Client.

    run_id = submit(SubmitConfig(host="https://kfp.example.com/pipeline", pipeline="train_to_edge",
                                 arguments={"epochs": 300}))

The API token, when the cluster needs one, comes from ``KF_PIPELINES_TOKEN`` (or the
in-cluster service-account token kfp.Client finds itself); it is never printed.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detpipe.errors import DetpipeError, InvalidInput
from detpipe.pipelines.compile import compile_pipeline
from detpipe.pipelines.settings import PipelineSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubmitConfig:
    """What to submit where.

    Attributes:
        host: the KFP API endpoint (``http(s)://.../pipeline``).
        pipeline: ``train_to_edge`` or ``small_data_sweep``.
        arguments: pipeline parameters.
        experiment: KFP experiment (created when missing).
        run_name: run display name (default: pipeline name + timestamp by KFP).
        namespace: Kubeflow profile namespace (multi-user clusters).
        service_account: the run's service account (``detpipe-pipeline`` has the RBAC to launch
            PyTorchJobs, see k8s/base/rbac.yaml).
        settings: build settings (image, GPUs, Secret names...).
    """

    host: str
    pipeline: str = "train_to_edge"
    arguments: dict[str, Any] = field(default_factory=dict)
    experiment: str = "detpipe"
    run_name: str | None = None
    namespace: str | None = None
    service_account: str = "detpipe-pipeline"
    settings: PipelineSettings = field(default_factory=lambda: PipelineSettings(target="cluster"))

    def __post_init__(self) -> None:
        if not self.host.startswith(("http://", "https://")):
            raise InvalidInput(f"--host {self.host!r}: expected an http(s):// URL of the KFP API")


def plan(cfg: SubmitConfig) -> dict[str, Any]:
    """What ``submit`` would send (for --dry-run): everything but the token."""
    return {
        "host": cfg.host,
        "pipeline": cfg.pipeline,
        "experiment": cfg.experiment,
        "run_name": cfg.run_name,
        "namespace": cfg.namespace,
        "service_account": cfg.service_account,
        "image": cfg.settings.image,
        "arguments": cfg.arguments,
        "token": "from KF_PIPELINES_TOKEN" if os.environ.get("KF_PIPELINES_TOKEN") else None,
    }


def submit(cfg: SubmitConfig) -> str:
    """Compile for the cluster and create a run; returns the run id.

    Raises:
        DetpipeError: the cluster refused or could not be reached.
    """
    import kfp

    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(cfg.pipeline, cfg.settings, Path(tmp) / f"{cfg.pipeline}.yaml")
        try:
            client = kfp.Client(
                host=cfg.host, namespace=cfg.namespace, existing_token=os.environ.get("KF_PIPELINES_TOKEN")
            )
            run = client.create_run_from_pipeline_package(
                str(package),
                arguments=cfg.arguments,
                run_name=cfg.run_name,
                experiment_name=cfg.experiment,
                namespace=cfg.namespace,
                service_account=cfg.service_account,
            )
        except Exception as e:  # kfp/urllib3/kfp_server_api raise many unrelated types
            raise DetpipeError(f"submitting to {cfg.host} failed: {type(e).__name__}: {e}") from None
    log.info("submitted run %s to %s", run.run_id, cfg.host)
    return run.run_id
