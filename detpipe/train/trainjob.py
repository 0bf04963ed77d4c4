"""Render a training run as a Kubeflow Trainer v2 TrainJob (``trainer.kubeflow.org/v1alpha1``).

The same run as :mod:`detpipe.train.pytorchjob`, for clusters that install Kubeflow Trainer
(the Training Operator's successor): ``spec.runtimeRef`` names the ``torch-distributed``
ClusterTrainingRuntime (manifests/base/runtimes/torch_distributed.yaml in kubeflow/trainer),
``spec.trainer`` gives image, command, flags, ``numNodes``/``numProcPerNode`` and resources
per node, and one ``runtimePatches`` entry (manager ``detpipe.io/launcher``) adds what the
runtime's pod template lacks: /dev/shm, scratch, the dataset PVC, security contexts, node
selector and tolerations. The runtime's torch plugin sets ``PET_NNODES``/``PET_NODE_RANK``/
``PET_MASTER_ADDR`` for torchrun, as the Training Operator does.

Trainer v2 has no ``envFrom``: the store settings come from the ConfigMap key by key
(:data:`CONFIG_KEYS`), the credentials from the Secret (``secretKeyRef``); the store's CA
bundle (optional ConfigMap ``detpipe-store-ca``) is mounted by the runtime patch and named by
``DETPIPE_S3_CA_BUNDLE`` in the trainer's env. With a Kueue queue (``job.queue``) the
TrainJob is labelled ``kueue.x-k8s.io/queue-name`` and created with ``spec.suspend: true``::

    manifest = render(cfg, JobConfig(name="train-yolo12n-5p", image=TRAIN_IMAGE, nnodes=4,
                                     nproc_per_node=4, gpus_per_node=4))
    print(to_yaml(manifest))           # what `detpipe train --launcher trainjob --dry-run` prints
"""

from __future__ import annotations

from typing import Any

from detpipe.train.config import TrainConfig
from detpipe.train.jobwatch import TRAINJOB
from detpipe.train.pytorchjob import (
    CONTAINER_SECURITY,
    WORKER_COMMAND,
    JobConfig,
    check_data_mount,
    job_labels,
    job_metadata,
    node_resources,
    pod_config,
    pod_metadata,
    pod_placement,
    pod_volumes,
    secret_env,
    to_yaml,
)

__all__ = ["CONFIG_KEYS", "PATCH_MANAGER", "RUNTIME", "render", "to_yaml"]

RUNTIME = "torch-distributed"
"""The ClusterTrainingRuntime Kubeflow Trainer installs for PyTorch (kubeflow/trainer v2.3.0)."""
REPLICATED_JOB = "node"  # the runtime's one replicated job (and its container's name)
PATCH_MANAGER = "detpipe.io/launcher"
CONFIG_KEYS = ("DETPIPE_S3_ENDPOINT", "DETPIPE_S3_SECURE", "DETPIPE_S3_REGION")
"""ConfigMap keys passed to the pods (optional refs: a missing key leaves the variable unset)."""


def render(cfg: TrainConfig, job: JobConfig) -> dict[str, Any]:
    """The TrainJob manifest (a plain dict, ready for the API or YAML).

    ``job.backoff_limit`` and ``job.ttl_after_finished_s`` belong to the runtime in Trainer v2
    (its JobSet template) and are not rendered; ``job.active_deadline_s`` is.

    Raises:
        InvalidInput: no ``--resume s3://`` mirror; a data YAML outside the dataset mount.
    """
    pod_cfg = pod_config(cfg, launcher="trainjob")
    check_data_mount(cfg, job)
    labels = job_labels(cfg)
    env = secret_env(job) + [
        {
            "name": key,
            "valueFrom": {"configMapKeyRef": {"name": job.config_map, "key": key, "optional": True}},
        }
        for key in CONFIG_KEYS
    ]
    trainer: dict[str, Any] = {
        "image": job.image,
        "command": list(WORKER_COMMAND),
        "args": pod_cfg.to_argv(),
        "env": env,
        "numNodes": job.nnodes,
        "numProcPerNode": job.nproc_per_node,
        "resourcesPerNode": node_resources(job),
    }
    volumes, mounts = pod_volumes(job)
    pod_spec = {
        **pod_placement(job),
        "volumes": volumes,
        "containers": [
            {"name": TRAINJOB.container, "volumeMounts": mounts, "securityContext": dict(CONTAINER_SECURITY)}
        ],
    }
    patch = {
        "manager": PATCH_MANAGER,
        "trainingRuntimeSpec": {
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {
                            "name": REPLICATED_JOB,
                            "template": {
                                "spec": {"template": {"metadata": pod_metadata(labels), "spec": pod_spec}}
                            },
                        }
                    ]
                }
            }
        },
    }
    spec: dict[str, Any] = {
        "runtimeRef": {"apiGroup": TRAINJOB.group, "kind": "ClusterTrainingRuntime", "name": RUNTIME},
        "trainer": trainer,
        "runtimePatches": [patch],
    }
    if job.active_deadline_s:
        spec["activeDeadlineSeconds"] = job.active_deadline_s
    if job.queue:
        spec["suspend"] = True  # Kueue unsuspends it on admission
    return {
        "apiVersion": TRAINJOB.api_version,
        "kind": TRAINJOB.kind,
        "metadata": job_metadata(cfg, job),
        "spec": spec,
    }
