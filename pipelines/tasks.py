"""Per-task platform settings, applied in one place for every pipeline.

Locally nothing is added (kfp.local runs subprocesses). On a cluster every task gets the
detpipe image, the store settings from the ConfigMap and the credentials from the Secret
(as env references: no value ever lands in the compiled YAML), and the store's CA (the
optional ConfigMap ``detpipe-store-ca``, mounted read-only, ``DETPIPE_S3_CA_BUNDLE``); GPU
tasks also get a GPU limit, node selector, tolerations and an in-memory /dev/shm.
"""

from __future__ import annotations

from typing import Any

from kfp import kubernetes
from kfp.dsl import PipelineTask

from detpipe.components.evaluate import evaluate_op
from detpipe.components.train import train_op
from detpipe.deploy.objects import STORE_CA_CONFIGMAP, STORE_CA_DIR
from detpipe.pipelines.settings import PipelineSettings

STORE_ENV = ("DETPIPE_S3_ENDPOINT", "DETPIPE_S3_SECURE")
SECRET_ENV = {"accesskey": "MINIO_ACCESS_KEY", "secretkey": "MINIO_SECRET_KEY"}
# The CA of a private store certificate (public: a ConfigMap), as the serving pods read it.
STORE_CA_BUNDLE = f"{STORE_CA_DIR}/ca.crt"


def configure(
    task: PipelineTask,
    settings: PipelineSettings,
    *,
    gpu: bool = False,
    store: bool = False,
    cache: bool = True,
    retry: bool = False,
    name: str | None = None,
) -> PipelineTask:
    """Apply ``settings`` to ``task``; returns it for chaining.

    Args:
        gpu: the task trains or runs models (GPU, node placement, /dev/shm).
        store: the task talks to the artifact store (Secret + ConfigMap env, the CA bundle).
        cache: allow KFP to reuse a previous identical execution.
        retry: retry transient failures (``settings.retries`` times, with backoff).
        name: display name in the KFP UI.
    """
    if name:
        task.set_display_name(name)
    if settings.target != "cluster":
        return task
    task.set_container_image(settings.image)
    task.set_caching_options(cache and settings.caching)
    if retry and settings.retries:
        task.set_retry(num_retries=settings.retries, backoff_duration="30s", backoff_factor=2.0)
    if store:
        kubernetes.use_secret_as_env(task, secret_name=settings.minio_secret, secret_key_to_env=SECRET_ENV)
        kubernetes.use_config_map_as_env(
            task, config_map_name=settings.config_map, config_map_key_to_env={k: k for k in STORE_ENV}
        )
        # optional: a plain-HTTP development store has none (the client then never reads it)
        kubernetes.use_config_map_as_volume(
            task, config_map_name=STORE_CA_CONFIGMAP, mount_path=STORE_CA_DIR, optional=True
        )
        task.set_env_variable("DETPIPE_S3_CA_BUNDLE", STORE_CA_BUNDLE)
    if gpu and settings.gpus > 0:
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(settings.gpus)
        for key, value in settings.gpu_node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for key in settings.gpu_tolerations:
            kubernetes.add_toleration(task, key=key, operator="Exists", effect="NoSchedule")
        kubernetes.empty_dir_mount(
            task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=settings.shm_size
        )
    return task


def job_settings(settings: PipelineSettings) -> dict[str, Any]:
    """``train_op``'s cluster-job parameters fixed at build time (image, placement, dataset PVC)."""
    return {
        "job_image": settings.image,
        "job_node_selector": dict(settings.gpu_node_selector),
        "job_tolerations": [f"{key}:NoSchedule" for key in settings.gpu_tolerations],
        "job_data_pvc": settings.data_pvc,
        "job_data_mount": settings.data_mount,
    }


def train_and_evaluate(
    settings: PipelineSettings, dataset: Any, subsets: Any, **train_args: Any
) -> tuple[PipelineTask, PipelineTask]:
    """The train step and the evaluate step on its model, as both pipelines use them.

    ``train_args`` are ``train_op``'s parameters (arch, fraction, epochs, imgsz, device,
    nnodes, launcher, job_store, job_timeout_s ...). On a cluster the train step also mounts
    the dataset PVC (where it stages data for a multi-node job) and gets the store's
    credentials (to fetch the job's outputs); it launches jobs as the run's service account
    (``detpipe-pipeline``, k8s/base/rbac.yaml).
    """
    train = configure(
        train_op(dataset=dataset, subsets=subsets, **job_settings(settings), **train_args),
        settings,
        gpu=not settings.launch_only_train,
        store=True,
        cache=settings.cache_training,
        retry=True,  # a retry adopts the run's live job, or makes the next attempt's (detpipe.train)
        name="train",
    )
    if settings.target == "cluster":
        kubernetes.mount_pvc(train, pvc_name=settings.data_pvc, mount_path=settings.data_mount)
    evaluation = configure(
        evaluate_op(
            model=train.outputs["model"],
            dataset=dataset,
            imgsz=train_args["imgsz"],
            device=train_args["device"],
        ),
        settings,
        gpu=True,
        name="evaluate",
    )
    return train, evaluation
