"""Train as a cluster job: render, submit, follow and fetch a PyTorchJob or a TrainJob.

One path for ``detpipe train --launcher pytorchjob|trainjob`` and for the pipeline's train
step with ``nnodes > 1``::

    summary = run_job(cfg, job, "trainjob", timeout_s=72 * 3600)   # outputs now in cfg.out

A launch first claims its job (:mod:`detpipe.train.attempts`): the run's live job is adopted,
after a failed one the next attempt gets its own name, so a retried step never fails on the
name. With ``job.queue`` the job waits in that Kueue queue (``queue_timeout_s``) before its
``timeout_s`` starts.

The step also stages its dataset where the pods can read it (the shared dataset PVC) and
names the run's mirror in the store (:func:`mirror_uri`); :func:`train_step` does all of it.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from detpipe.errors import InvalidInput
from detpipe.train import pytorchjob, trainjob
from detpipe.train.attempts import DIGEST_ANNOTATION, Claim, claim_job, spec_digest
from detpipe.train.config import TrainConfig, parse_device
from detpipe.train.jobwatch import (
    PYTORCHJOB,
    TRAINJOB,
    JobApi,
    JobKind,
    KubernetesJobApi,
    job_state,
    watch,
)

log = logging.getLogger(__name__)

Renderer = Callable[[TrainConfig, pytorchjob.JobConfig], dict[str, Any]]
LAUNCHERS: dict[str, tuple[JobKind, Renderer]] = {
    "pytorchjob": (PYTORCHJOB, pytorchjob.render),
    "trainjob": (TRAINJOB, trainjob.render),
}
"""Cluster launchers: Training Operator v1 (PyTorchJob) and Kubeflow Trainer v2 (TrainJob)."""
JOBS_DIR = "jobs"  # under the dataset mount: one staging directory per job
MIRRORS_DIR = "train-jobs"  # under the store: one mirror prefix per job


def launcher(name: str) -> tuple[JobKind, Renderer]:
    """The job kind and renderer of a cluster launcher.

    Raises:
        InvalidInput: not ``pytorchjob`` or ``trainjob``.
    """
    try:
        return LAUNCHERS[name]
    except KeyError:
        raise InvalidInput(f"launcher {name!r}: choose from {', '.join(LAUNCHERS)}") from None


def render(name: str, cfg: TrainConfig, job: pytorchjob.JobConfig) -> dict[str, Any]:
    """The manifest of ``cfg`` as launcher ``name``'s job."""
    return launcher(name)[1](cfg, job)


def run_job(
    cfg: TrainConfig,
    job: pytorchjob.JobConfig,
    name: str,
    *,
    timeout_s: float,
    queue_timeout_s: float | None = None,
    poll_s: float = 10.0,
    api: JobApi | None = None,
    prepare: Callable[[Claim], None] | None = None,
) -> dict[str, Any]:
    """Claim the run's job, create it (unless adopted), follow it to Succeeded, download its
    outputs into ``cfg.out``.

    Args:
        name: ``pytorchjob`` or ``trainjob``.
        timeout_s: the job may run this long once admitted.
        queue_timeout_s: the job may wait this long in its queue (``None``: no limit).
        api: the cluster access (default: the Kubernetes API from in-cluster config or kubeconfig).
        prepare: called with the claim before the job is created (the step stages its data).

    Returns:
        The run's ``train_summary.json``.

    Raises:
        InvalidInput: a bad manifest input, the API refused the job, or the name is taken.
        Unavailable: no cluster configured.
        JobFailed, JobTimeout: see :func:`detpipe.train.jobwatch.watch`; KeyboardInterrupt on
            Ctrl-C or SIGTERM (the job is deleted).
    """
    kind, _ = launcher(name)
    api = api or KubernetesJobApi.connect(job.namespace, job.name, kind)
    job_api = submit(cfg, job, name, api, prepare)
    watch(job_api, timeout_s=timeout_s, queue_timeout_s=queue_timeout_s, poll_s=poll_s)
    return pytorchjob.fetch_outputs(cfg)


def submit(
    cfg: TrainConfig,
    job: pytorchjob.JobConfig,
    name: str,
    api: JobApi,
    prepare: Callable[[Claim], None] | None = None,
) -> JobApi:
    """Adopt the run ``job.name``'s live job or create its next attempt; the access to that job."""
    renderer = launcher(name)[1]
    digest = spec_digest(renderer(cfg, job))
    claimed = claim_job(api, job.name, digest)
    if prepare:
        prepare(claimed)
    job_api = api.renamed(claimed.name)
    if claimed.adopted is not None:
        log.info(
            "adopting %s %s (attempt %d of run %s)", api.kind.kind, claimed.name, claimed.attempt, job.name
        )
        return job_api
    attempt = replace(job, name=claimed.name, run=job.name, attempt=claimed.attempt)
    manifest = renderer(cfg, attempt)
    manifest["metadata"]["annotations"] = {DIGEST_ANNOTATION: digest}
    if claimed.attempt > 1:
        log.info("attempt %d of run %s: %s %s", claimed.attempt, job.name, api.kind.kind, claimed.name)
    job_api.create(manifest)
    return job_api


def mirror_uri(job_store: str, job_name: str) -> str:
    """``<job_store>/train-jobs/<job>``: where the job's pods mirror the run (and resume from).

    Raises:
        InvalidInput: ``job_store`` is not an ``s3://`` URI (pods cannot reach anything else).
    """
    if not job_store.startswith("s3://"):
        raise InvalidInput(
            f"job_store {job_store!r}: the job's pods mirror the run to S3; give s3://BUCKET[/PREFIX]"
        )
    return f"{job_store.rstrip('/')}/{MIRRORS_DIR}/{job_name}"


def stage_dataset(
    dataset_root: str | Path, subsets_dir: str | Path | None, stage: Path, mount: str | Path
) -> Path:
    """Write the YOLO layout the pods read into ``stage`` (on the dataset PVC); its root.

    A COCO root that already lies on the mount (``coco_root`` on the PVC) is linked; one
    elsewhere (a synthetic set in the step's artifact) is copied under ``stage`` first, since
    the pods see only the PVC.

    Raises:
        InvalidInput: ``stage`` is not under ``mount``.
    """
    from detpipe.data.layout import yolo_dataset

    mount = Path(mount)
    if not stage.resolve().is_relative_to(mount.resolve()):
        raise InvalidInput(f"{stage}: job staging must lie on the dataset mount {mount}")
    coco = (Path(dataset_root) / "images").resolve().parent
    if not coco.is_relative_to(mount.resolve()):
        log.info("copying the dataset to %s for the job's pods", stage / "coco")
        shutil.copytree(coco, stage / "coco", symlinks=False)
        coco = stage / "coco"
    yolo_dataset(coco, stage / "yolo", subsets_dir=subsets_dir)
    return stage / "yolo"


@dataclass(frozen=True)
class StepJob:
    """The cluster side of the pipeline's train step (from the pipeline's settings).

    Attributes:
        launcher: ``pytorchjob`` or ``trainjob``.
        nnodes: pods (nodes) of the job.
        nproc_per_node: processes (GPUs) per pod.
        job_store: ``s3://`` prefix for the run's mirror.
        timeout_s: the job is deleted and the step fails after this long.
        image, namespace, node_selector, tolerations, data_pvc, data_mount: see
            :class:`detpipe.train.pytorchjob.JobConfig` (``namespace`` empty: the step's own,
            from its service account, else ``detpipe``; tolerations as ``KEY[=VALUE]:EFFECT``).
        queue: Kueue LocalQueue of the job ("": none).
        queue_timeout_s: the job is deleted and the step fails after waiting this long in
            the queue (0: no limit).
        poll_s: seconds between status polls.
    """

    launcher: str
    nnodes: int
    nproc_per_node: int
    job_store: str
    timeout_s: int
    image: str = ""
    namespace: str = ""
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[str, ...] = ()
    data_pvc: str = "detpipe-datasets"
    data_mount: str = "/data"
    queue: str = ""
    queue_timeout_s: int = 24 * 3600
    poll_s: float = 10.0

    def __post_init__(self) -> None:
        launcher(self.launcher)
        mirror_uri(self.job_store, "check")
        if self.timeout_s < 1:
            raise InvalidInput(f"job_timeout_s {self.timeout_s}: must be >= 1")
        if self.queue_timeout_s < 0:
            raise InvalidInput(f"queue_timeout_s {self.queue_timeout_s}: must be >= 0 (0: no limit)")

    def job_config(self, cfg: TrainConfig, name: str) -> pytorchjob.JobConfig:
        """The job's shape for ``cfg`` (GPUs per pod = processes, none for a CPU run)."""
        cpu = parse_device(cfg.device)[0] == "cpu"
        tolerations = () if cpu else tuple(pytorchjob.Toleration.parse(t) for t in self.tolerations)
        return pytorchjob.JobConfig(
            name=name,
            image=self.image or pytorchjob.default_image(),
            namespace=self.namespace or current_namespace(),
            nnodes=self.nnodes,
            nproc_per_node=self.nproc_per_node,
            gpus_per_node=0 if cpu else self.nproc_per_node,
            node_selector=dict(self.node_selector),
            tolerations=tolerations,
            data_pvc=self.data_pvc,
            data_mount=self.data_mount,
            active_deadline_s=self.timeout_s,
            queue=self.queue or None,
        )


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def current_namespace(default: str = "detpipe") -> str:
    """The namespace this pod runs in (its service account's), else ``default``."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or default
    except OSError:
        return default


def train_step(
    step: StepJob,
    cfg: TrainConfig,
    dataset_root: str | Path,
    subsets_dir: str | Path | None,
    api_factory: Callable[[str, str, JobKind], JobApi] | None = None,
) -> dict[str, Any]:
    """Train ``cfg`` as a cluster job from a pipeline step; outputs land in ``cfg.out``.

    ``cfg.data`` names the dataset YAML relative to the YOLO layout (``train2017_5_p.yaml``).
    The run is named after its flags (``cfg.out`` is the step's output artifact: one run per
    step, the same on a Kubeflow retry of it); a retry adopts the job its predecessor left
    live (and the data staged for it), or starts the next attempt after a failed one, which
    resumes from the run's mirror. The staged dataset is removed when the step ends.

    Returns:
        The run's ``train_summary.json``.
    """
    kind, _ = launcher(step.launcher)
    world = step.nnodes * step.nproc_per_node
    if cfg.batch % world:
        raise InvalidInput(f"batch {cfg.batch} (global) does not split evenly over {world} processes")
    name = pytorchjob.default_job_name(cfg)
    job = step.job_config(cfg, name)
    api = (api_factory or KubernetesJobApi.connect)(job.namespace, name, kind)  # no cluster: fail first
    stage = Path(step.data_mount) / JOBS_DIR / name
    yolo = stage / "yolo"  # what stage_dataset writes
    claimed: list[Claim] = []

    def prepare(claim: Claim) -> None:
        claimed.append(claim)
        if claim.adopted is not None and (yolo.is_dir() or job_state(claim.adopted, kind).done):
            return  # the adopted job reads this staging (or needs none any more)
        shutil.rmtree(stage, ignore_errors=True)  # a killed attempt's leftovers
        stage_dataset(dataset_root, subsets_dir, stage, step.data_mount)

    job_cfg = replace(cfg, data=str(yolo / cfg.data), resume=mirror_uri(step.job_store, name))
    try:
        return run_job(
            job_cfg,
            job,
            step.launcher,
            timeout_s=step.timeout_s,
            queue_timeout_s=step.queue_timeout_s or None,
            poll_s=step.poll_s,
            api=api,
            prepare=prepare,
        )
    finally:
        if claimed:  # else the staging is not this launch's (a refused claim)
            shutil.rmtree(stage, ignore_errors=True)
