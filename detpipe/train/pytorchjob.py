"""Render a training run as a Kubeflow Training Operator PyTorchJob (``kubeflow.org/v1``).

One Master pod and ``nnodes - 1`` Worker pods, each running
``torchrun -m detpipe.train.worker <the run's flags>``. The operator gives torchrun its
layout through ``PET_NNODES``/``PET_NPROC_PER_NODE``/``PET_NODE_RANK``/``PET_MASTER_ADDR``
(from ``spec.nprocPerNode`` and the replica counts), and torchrun gives each process
WORLD_SIZE/RANK/LOCAL_RANK. Per pod: ``nvidia.com/gpu`` = processes per node, an in-memory
``/dev/shm`` for the dataloader workers, the dataset PVC read-only at ``/data``, a scratch
run directory, MinIO settings from the ``detpipe-config`` ConfigMap, credentials from the
``detpipe-minio`` Secret (``secretKeyRef``; no key is ever written into the manifest) and the
CA of a private store certificate from the optional ConfigMap ``detpipe-store-ca``
(``DETPIPE_S3_CA_BUNDLE``, as the serving pods read it).

With a Kueue queue (``JobConfig.queue``) the job is labelled ``kueue.x-k8s.io/queue-name`` and
created with ``spec.runPolicy.suspend: true``; Kueue unsuspends it when it admits it.

``restartPolicy: OnFailure`` plus ``--resume s3://.../prefix`` makes a preempted or failed
pod continue: the run is mirrored to the prefix after every epoch and a restarted pod
downloads ``last.pt`` from it::

    job = JobConfig(name="train-yolo12n-5p", nnodes=4, nproc_per_node=4, gpus_per_node=4,
                    image="ghcr.io/detpipe/detpipe-train:0.1.0")
    print(to_yaml(render(cfg, job)))          # what `detpipe train --launcher pytorchjob --dry-run` prints
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from detpipe.errors import InvalidInput
from detpipe.io import read_json
from detpipe.train import checkpoints as ck
from detpipe.train.config import TrainConfig, parse_device
from detpipe.train.jobwatch import ATTEMPT_LABEL, PYTORCHJOB, QUEUE_LABEL, RUN_LABEL
from detpipe.train.summary import model_name

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL, KIND = PYTORCHJOB.group, PYTORCHJOB.version, PYTORCHJOB.plural, PYTORCHJOB.kind
CONTAINER = PYTORCHJOB.container
WORKER_COMMAND = ["torchrun", "-m", "detpipe.train.worker"]  # layout from the operator's PET_* env
SCRATCH = "/scratch"  # per-pod emptyDir: the run directory and ultralytics' settings
POD_RUN_DIR = f"{SCRATCH}/run"
GPU_RESOURCE = "nvidia.com/gpu"
# The store (detpipe.store.config) reads these; the values come from the Secret, by reference.
CREDENTIAL_ENV = (("AWS_ACCESS_KEY_ID", "accesskey"), ("AWS_SECRET_ACCESS_KEY", "secretkey"))
# The store's CA (public: a ConfigMap, key ca.crt), where k8s/serving's pods mount it too.
STORE_CA_DIR = "/etc/detpipe/store-ca"
_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?\Z")
MAX_NAME = 40  # pods are <name>-worker-<n>, services likewise: stay well below 63
_QUEUE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
MAX_QUEUE = 63  # a label value


@dataclass(frozen=True)
class Toleration:
    """A pod toleration: ``key[=value]:effect`` (operator ``Equal`` with a value, else ``Exists``)."""

    key: str
    effect: str = "NoSchedule"
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Toleration:
        """``"nvidia.com/gpu:NoSchedule"``, ``"dedicated=train:NoExecute"``."""
        head, sep, effect = text.rpartition(":")
        if not sep:
            head, effect = text, "NoSchedule"
        key, eq, value = head.partition("=")
        if not key or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise InvalidInput(
                f"--toleration {text}: expected KEY[=VALUE]:NoSchedule|PreferNoSchedule|NoExecute"
            )
        return cls(key=key, effect=effect, value=value if eq else None)

    def to_k8s(self) -> dict[str, str]:
        out = {
            "key": self.key,
            "operator": "Equal" if self.value is not None else "Exists",
            "effect": self.effect,
        }
        if self.value is not None:
            out["value"] = self.value
        return out


@dataclass(frozen=True)
class JobConfig:
    """Cluster-side shape of the job.

    Attributes:
        name: PyTorchJob name (a DNS label, at most 40 characters).
        image: training image (docker/Dockerfile.train).
        namespace: namespace of the job, the Secret and the ConfigMap.
        nnodes: pods: 1 Master + nnodes-1 Workers.
        nproc_per_node: torchrun processes per pod.
        gpus_per_node: ``nvidia.com/gpu`` per pod (0 for a CPU job).
        shm_size: size of the in-memory /dev/shm.
        cpu: CPU request per pod.
        memory: memory request and limit per pod.
        node_selector: pod node selector.
        tolerations: pod tolerations.
        secret: Secret with ``accesskey``/``secretkey``.
        config_map: ConfigMap with DETPIPE_S3_ENDPOINT etc.
        store_ca: ConfigMap with the store's CA certificate (``ca.crt``), mounted if it exists
            (``None``: not mounted, the system's CAs).
        data_pvc: PVC with the datasets (``None``: the image holds the data).
        data_mount: where the PVC is mounted.
        backoff_limit: pod restarts before the job fails.
        active_deadline_s: the operator fails the job after this long (``None``: never).
        ttl_after_finished_s: the operator deletes a finished job after this long.
        queue: Kueue LocalQueue (in ``namespace``) to submit to: the job is labelled
            ``kueue.x-k8s.io/queue-name`` and created suspended, for Kueue to admit (``None``:
            no queue, the job starts at once).
        run: the run this job is an attempt of (label ``detpipe.io/run``; ``None``: ``name``).
        attempt: which attempt of the run (label ``detpipe.io/attempt``).
    """

    name: str
    image: str
    namespace: str = "detpipe"
    nnodes: int = 1
    nproc_per_node: int = 1
    gpus_per_node: int = 1
    shm_size: str = "16Gi"
    cpu: str | None = "8"
    memory: str | None = "64Gi"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = (Toleration(GPU_RESOURCE),)
    secret: str = "detpipe-minio"
    config_map: str = "detpipe-config"
    store_ca: str | None = "detpipe-store-ca"
    data_pvc: str | None = "detpipe-datasets"
    data_mount: str = "/data"
    backoff_limit: int = 10
    active_deadline_s: int | None = None
    ttl_after_finished_s: int | None = 7 * 24 * 3600
    queue: str | None = None
    run: str | None = None
    attempt: int = 1

    def __post_init__(self) -> None:
        if len(self.name) > MAX_NAME or not _NAME_RE.match(self.name):
            raise InvalidInput(
                f"--job-name {self.name}: must be a lowercase DNS label of at most {MAX_NAME} characters"
            )
        if self.nnodes < 1 or self.nproc_per_node < 1 or self.gpus_per_node < 0:
            raise InvalidInput("--nnodes and --nproc-per-node must be >= 1")
        if not self.image:
            raise InvalidInput("--image: empty image name")
        if self.queue is not None and (len(self.queue) > MAX_QUEUE or not _QUEUE_RE.match(self.queue)):
            raise InvalidInput(
                f"--queue {self.queue}: a LocalQueue name is a lowercase DNS label of at most "
                f"{MAX_QUEUE} characters"
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace, cfg: TrainConfig) -> JobConfig:
        """Build from ``detpipe train`` flags (the cluster job group)."""
        nproc = args.nproc_per_node or 1
        cpu_job = parse_device(cfg.device)[0] == "cpu"
        selector = {}
        for item in args.node_selector:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise InvalidInput(f"--node-selector {item}: expected KEY=VALUE")
            selector[key] = value
        tolerations = tuple(Toleration.parse(t) for t in args.toleration) or (
            () if cpu_job else (Toleration(GPU_RESOURCE),)
        )
        return cls(
            name=args.job_name or default_job_name(cfg),
            image=args.image or default_image(),
            namespace=args.namespace,
            nnodes=args.nnodes,
            nproc_per_node=nproc,
            gpus_per_node=0 if cpu_job else nproc,
            shm_size=args.shm_size,
            cpu=args.cpu,
            memory=args.memory,
            node_selector=selector,
            tolerations=tolerations,
            data_pvc=args.data_pvc or None,
            data_mount=args.data_mount,
            active_deadline_s=args.timeout,
            queue=args.queue or None,
        )


def default_image() -> str:
    """The training image, from the one place images are named (:mod:`detpipe.images`)."""
    from detpipe.images import TRAIN_IMAGE

    return TRAIN_IMAGE


def default_job_name(cfg: TrainConfig) -> str:
    """``train-<model>-<8 hex of the run's flags>``: stable for the same run, distinct otherwise."""
    digest = hashlib.sha256("\0".join(cfg.to_argv()).encode()).hexdigest()[:8]
    model = re.sub(r"[^a-z0-9]+", "-", model_name(cfg.model).lower()).strip("-")[: MAX_NAME - 15] or "model"
    return f"train-{model}-{digest}"


def pod_config(cfg: TrainConfig, launcher: str = "pytorchjob") -> TrainConfig:
    """The run as the pods see it: scratch run directory, device by local rank.

    Raises:
        InvalidInput: no ``--resume s3://...`` mirror (a pod's disk is gone after the job), or
            local-only inputs.
    """
    if not cfg.resume or not cfg.resume.startswith("s3://"):
        raise InvalidInput(
            f"--launcher {launcher} needs --resume s3://BUCKET/PREFIX: the run is mirrored there, "
            "pods continue from it after a restart, and the outputs are fetched from it"
        )
    device = "cpu" if parse_device(cfg.device)[0] == "cpu" else "cuda"
    return replace(cfg, out=POD_RUN_DIR, device=device)


def render(cfg: TrainConfig, job: JobConfig) -> dict[str, Any]:
    """The PyTorchJob manifest (a plain dict, ready for the API or YAML).

    Raises:
        InvalidInput: see :func:`pod_config`; a data YAML outside the dataset mount.
    """
    pod_cfg = pod_config(cfg)
    check_data_mount(cfg, job)
    labels = job_labels(cfg)
    replicas = {"Master": _replica(1, pod_cfg, job, labels)}
    if job.nnodes > 1:
        replicas["Worker"] = _replica(job.nnodes - 1, pod_cfg, job, labels)
    run_policy: dict[str, Any] = {"cleanPodPolicy": "None", "backoffLimit": job.backoff_limit}
    if job.queue:
        run_policy["suspend"] = True  # Kueue unsuspends it on admission
    if job.active_deadline_s:
        run_policy["activeDeadlineSeconds"] = job.active_deadline_s
    if job.ttl_after_finished_s is not None:
        run_policy["ttlSecondsAfterFinished"] = job.ttl_after_finished_s
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": job_metadata(cfg, job),
        "spec": {
            "nprocPerNode": str(job.nproc_per_node),
            "runPolicy": run_policy,
            "pytorchReplicaSpecs": replicas,
        },
    }


def _replica(count: int, cfg: TrainConfig, job: JobConfig, labels: Mapping[str, str]) -> dict[str, Any]:
    return {"replicas": count, "restartPolicy": "OnFailure", "template": _pod_template(cfg, job, labels)}


def check_data_mount(cfg: TrainConfig, job: JobConfig) -> None:
    """The pods read ``--data`` from the dataset PVC, so it must lie under its mount.

    Raises:
        InvalidInput: a data YAML outside the mount.
    """
    if job.data_pvc and not PurePosixPath(cfg.data).is_relative_to(job.data_mount):
        raise InvalidInput(
            f"--data {cfg.data}: pods see datasets under {job.data_mount} (the PVC {job.data_pvc})"
        )


def job_labels(cfg: TrainConfig) -> dict[str, str]:
    """Labels of the job and its pods."""
    return {
        "app.kubernetes.io/part-of": "detpipe",
        "app.kubernetes.io/component": "train",
        "detpipe.io/model": re.sub(r"[^A-Za-z0-9_.-]", "-", model_name(cfg.model))[:63],
    }


def job_metadata(cfg: TrainConfig, job: JobConfig) -> dict[str, Any]:
    """The job object's metadata: name, namespace, the pods' labels plus run, attempt and queue."""
    labels = {**job_labels(cfg), RUN_LABEL: job.run or job.name, ATTEMPT_LABEL: str(job.attempt)}
    if job.queue:
        labels[QUEUE_LABEL] = job.queue
    return {"name": job.name, "namespace": job.namespace, "labels": labels}


def pod_volumes(job: JobConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, volume mounts): in-memory /dev/shm, scratch, the dataset PVC and the store's CA
    read-only."""
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": job.shm_size}},
        {"name": "scratch", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "scratch", "mountPath": SCRATCH},
    ]
    if job.data_pvc:
        volumes.append(
            {"name": "datasets", "persistentVolumeClaim": {"claimName": job.data_pvc, "readOnly": True}}
        )
        mounts.append({"name": "datasets", "mountPath": job.data_mount, "readOnly": True})
    if job.store_ca:
        # optional: a plain-HTTP development store has none (the client then never reads it)
        volumes.append({"name": "store-ca", "configMap": {"name": job.store_ca, "optional": True}})
        mounts.append({"name": "store-ca", "mountPath": STORE_CA_DIR, "readOnly": True})
    return volumes, mounts


def secret_env(job: JobConfig) -> list[dict[str, Any]]:
    """Store credentials as references to the Secret, the CA bundle, the scratch cache directory."""
    env: list[dict[str, Any]] = [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": job.secret, "key": key}}}
        for var, key in CREDENTIAL_ENV
    ]
    if job.store_ca:
        env.append({"name": "DETPIPE_S3_CA_BUNDLE", "value": f"{STORE_CA_DIR}/ca.crt"})  # read for HTTPS only
    env.append({"name": "XDG_CACHE_HOME", "value": f"{SCRATCH}/cache"})  # ultralytics settings, fonts
    return env


def node_resources(job: JobConfig) -> dict[str, dict[str, str]]:
    """Requests/limits per pod: CPU, memory, ``nvidia.com/gpu``."""
    resources: dict[str, dict[str, str]] = {"requests": {}, "limits": {}}
    if job.cpu:
        resources["requests"]["cpu"] = job.cpu
    if job.memory:
        resources["requests"]["memory"] = resources["limits"]["memory"] = job.memory
    if job.gpus_per_node:
        resources["requests"][GPU_RESOURCE] = resources["limits"][GPU_RESOURCE] = str(job.gpus_per_node)
    return {k: v for k, v in resources.items() if v}


CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
POD_SECURITY = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def pod_placement(job: JobConfig) -> dict[str, Any]:
    """Pod spec fields shared by both launchers: security context, node selector, tolerations."""
    spec: dict[str, Any] = {"securityContext": dict(POD_SECURITY)}
    if job.node_selector:
        spec["nodeSelector"] = dict(job.node_selector)
    if job.tolerations:
        spec["tolerations"] = [t.to_k8s() for t in job.tolerations]
    return spec


def pod_metadata(labels: Mapping[str, str]) -> dict[str, Any]:
    """Pod labels, and no Istio sidecar: proxies break torchrun's rendezvous between pods."""
    return {"labels": dict(labels), "annotations": {"sidecar.istio.io/inject": "false"}}


def _pod_template(cfg: TrainConfig, job: JobConfig, labels: Mapping[str, str]) -> dict[str, Any]:
    volumes, mounts = pod_volumes(job)
    container = {
        "name": CONTAINER,
        "image": job.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(WORKER_COMMAND),
        "args": cfg.to_argv(),
        "env": secret_env(job),
        "envFrom": [{"configMapRef": {"name": job.config_map}}],
        "resources": node_resources(job),
        "volumeMounts": mounts,
        "securityContext": dict(CONTAINER_SECURITY),
    }
    spec: dict[str, Any] = {"containers": [container], "volumes": volumes, **pod_placement(job)}
    return {"metadata": pod_metadata(labels), "spec": spec}


def to_yaml(manifest: Mapping[str, Any]) -> str:
    """The manifest as YAML (block style, keys in the order written)."""
    return yaml.safe_dump(dict(manifest), sort_keys=False, default_flow_style=False, width=120)


def fetch_outputs(cfg: TrainConfig, keys: Sequence[str] = (*ck.OUTPUTS, ck.SUMMARY)) -> dict[str, Any]:
    """Download a finished job's run from its mirror into the local ``--out``; the summary."""
    mirror = ck.RunMirror.open(str(cfg.resume))
    out = Path(cfg.out)
    mirror.download(out, keys, missing_ok=True)
    return read_json(out / ck.SUMMARY)
