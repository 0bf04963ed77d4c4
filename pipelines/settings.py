"""Where a pipeline runs and with what: one frozen settings object per compile/run.

Locally (``target="local"``) tasks run as subprocesses of Kubeflow's own local runner and
the Kubernetes settings are left out. On a cluster (``target="cluster"``) every task gets
the image, MinIO credentials from the ``detpipe-minio`` Secret, the shared ConfigMap, and
the training/benchmark tasks get GPUs, node selectors, tolerations and a /dev/shm volume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from detpipe.components.images import DEFAULT_IMAGE


@dataclass(frozen=True)
class PipelineSettings:
    """Build-time settings of a pipeline (they shape the compiled YAML, not run parameters).

    Attributes:
        target: ``local`` (kfp.local subprocesses) or ``cluster`` (Kubeflow Pipelines).
        image: the detpipe image every task runs in.
        minio_secret: k8s Secret with ``accesskey``/``secretkey`` (never copied into the YAML).
        config_map: k8s ConfigMap with DETPIPE_S3_ENDPOINT etc.
        gpus: GPUs for the train/export/bench tasks on the cluster (0: CPU only).
        gpu_node_selector: node labels the GPU tasks must land on.
        gpu_tolerations: taint keys the GPU tasks tolerate (effect NoSchedule, operator Exists).
        shm_size: size of the in-memory /dev/shm volume for dataloader workers.
        retries: retries of the steps that can fail transiently (store I/O, data).
        caching: let KFP reuse outputs of identical steps. Explicit per step: data, subsets,
            evaluation, export and the report may be reused; training only with
            ``cache_training``; the deploy and edge steps never are.
        cache_training: also reuse a training step with identical inputs (off: a re-run
            trains again, which is what a seed study wants).
        launch_only_train: the train step only launches and watches a multi-node job
            (PyTorchJob/TrainJob, ``nnodes > 1``): its own pod gets no GPU. Leave it off when
            runs train in the step's pod (``nnodes = 1``).
        sweep_parallelism: sweep cells trained at the same time.
        data_pvc: ReadWriteMany PVC the train step stages a multi-node job's dataset on
            (k8s/base/dataset-pvc.yaml); the job's pods mount it read-only.
        data_mount: where that PVC is mounted, in the step and in the job's pods.
        edge_keys_secret: k8s Secret with the OTA signing keys (targets/snapshot/timestamp .pem,
            root.json; never root.pem), mounted as files into the edge-publish step only.
        edge_keys_mount: where that Secret is mounted.
        release_key_mount: where the release signing key's Secret (the pipeline's
            ``signing_key`` parameter names it) is mounted in the publish step (its
            ``release.key``), and where the edge-publish step gets ``release.pub``.
        release_pub_config_map: the ConfigMap with ``release.pub`` (what serving pods verify
            releases with), mounted into the edge-publish step.
    """

    target: Literal["local", "cluster"] = "local"
    image: str = DEFAULT_IMAGE
    minio_secret: str = "detpipe-minio"
    config_map: str = "detpipe-config"
    gpus: int = 1
    gpu_node_selector: dict[str, str] = field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    gpu_tolerations: tuple[str, ...] = ("nvidia.com/gpu",)
    shm_size: str = "8Gi"
    retries: int = 2
    caching: bool = True
    cache_training: bool = False
    launch_only_train: bool = False
    sweep_parallelism: int = 4
    data_pvc: str = "detpipe-datasets"
    data_mount: str = "/data"
    edge_keys_secret: str = "detpipe-edge-keys"
    edge_keys_mount: str = "/var/run/secrets/detpipe/edge-keys"
    release_key_mount: str = "/var/run/secrets/detpipe/release-key"
    release_pub_config_map: str = "detpipe-release-pub"
