"""The training step: one YOLO model on one subset: in the pod (local trainer or torchrun), or
as a PyTorchJob / Kubeflow Trainer v2 TrainJob across ``nnodes`` pods."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from detpipe.components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def train_op(
    dataset: Input[Dataset],
    subsets: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    arch: str = "yolov8n.yaml",
    fraction: float = 100.0,
    strategy: str = "p",
    subset_seed: int = 0,
    epochs: int = 100,
    warmup_epochs: float = -1.0,
    imgsz: int = 640,
    batch: int = 16,
    seed: int = 0,
    device: str = "auto",
    workers: int = 8,
    nproc_per_node: int = 1,
    train_overrides: dict = {},  # noqa: B006
    nnodes: int = 1,
    launcher: str = "pytorchjob",
    job_store: str = "s3://detpipe",
    job_timeout_s: int = 72 * 3600,
    job_image: str = "",
    job_namespace: str = "detpipe",
    job_node_selector: dict = {},  # noqa: B006
    job_tolerations: list = [],  # noqa: B006
    job_data_pvc: str = "detpipe-datasets",
    job_data_mount: str = "/data",
    queue_name: str = "",
    queue_timeout_s: int = 24 * 3600,
) -> None:
    """Train ``arch`` from scratch on the ``train2017_<fraction>_<strategy>`` subset of draw ``subset_seed``.

    ``subset_seed`` picks an independent subset draw of the subsets step (``draw_seeds``; the
    seed the step drew its main lists with, 0 by default, is those lists). ``warmup_epochs`` >= 0
    sets the warm-up (a sweep's iteration-matched schedule); negative leaves it to
    ``train_overrides`` or ultralytics.

    ``train_overrides`` takes any other ultralytics train argument (``lr0``, ``optimizer``,
    ``mosaic``, ``nbs`` ...), as ``detpipe train --set`` does.

    With ``nnodes`` = 1 the COCO dataset is converted to YOLO labels in the step's scratch
    space and trained here; ``nproc_per_node`` > 1 runs torchrun (one DDP process per GPU of
    the pod). With ``nnodes`` > 1 (a cluster only) the step stages the dataset on the
    ``job_data_pvc`` PVC, submits a ``launcher`` job (``pytorchjob``: Training Operator v1,
    ``trainjob``: Kubeflow Trainer v2) of ``nnodes`` pods x ``nproc_per_node`` processes
    mirroring its run to ``job_store``/train-jobs/<job>, follows its conditions and node 0's
    log, deletes it on cancel or after ``job_timeout_s``, and downloads its outputs. The step
    needs the RBAC of k8s/base/rbac.yaml (service account ``detpipe-pipeline``).
    ``queue_name`` (a Kueue LocalQueue, k8s/kueue) submits the job to that queue, suspended until
    Kueue admits it; it may wait ``queue_timeout_s`` (0: no limit) and ``job_timeout_s`` counts
    from admission. A retry of the step follows the job its predecessor left live, or starts
    the next attempt (``<job>-a2``, resuming from the mirror) after a failed one.
    The artifact holds ``weights/{best,last}.pt``, ``results.csv`` and ``train_summary.json``.
    """
    import tempfile
    import time
    from pathlib import Path

    from detpipe.data.layout import TRAIN_SPLIT, yolo_dataset
    from detpipe.subsets.config import list_name
    from detpipe.subsets.draws import draw_dir
    from detpipe.train import launch
    from detpipe.train.config import build_config
    from detpipe.ultralytics_env import configure_offline

    start = time.perf_counter()
    data_name = Path(list_name(TRAIN_SPLIT, fraction, strategy)).with_suffix(".yaml").name
    flags = {
        "epochs": epochs,
        "imgsz": imgsz,
        "batch": batch,
        "seed": seed,
        "workers": workers,
        "plots": False,
    }
    if warmup_epochs >= 0:
        train_overrides = {**train_overrides, "warmup_epochs": warmup_epochs}
    lists = draw_dir(subsets.path, subset_seed)
    if queue_name and nnodes == 1:
        print(f"queue_name {queue_name!r}: ignored with nnodes = 1 (the step trains in its own pod)")
    if nnodes > 1:
        from detpipe.train import cluster

        step = cluster.StepJob(
            launcher=launcher,
            nnodes=nnodes,
            nproc_per_node=nproc_per_node,
            job_store=job_store,
            timeout_s=job_timeout_s,
            image=job_image,
            namespace=job_namespace,
            node_selector=job_node_selector,
            tolerations=tuple(job_tolerations),
            data_pvc=job_data_pvc,
            data_mount=job_data_mount,
            queue=queue_name,
            queue_timeout_s=queue_timeout_s,
        )
        cfg = build_config(data_name, arch, model.path, flags=flags, sets=train_overrides, device=device)
        summary = cluster.train_step(step, cfg, dataset.path, lists)
    else:
        configure_offline()  # before anything imports ultralytics (the cluster path trains nothing here)
        scratch = Path(tempfile.mkdtemp(prefix="detpipe-yolo-"))
        yolo_dataset(dataset.path, scratch / "yolo", subsets_dir=lists)
        data_yaml = scratch / "yolo" / data_name
        cfg = build_config(str(data_yaml), arch, model.path, flags=flags, sets=train_overrides, device=device)
        launch.check_inputs(cfg, nproc_per_node)
        if nproc_per_node > 1:
            summary = launch.run_torchrun(cfg, launch.TorchrunOptions(nproc_per_node=nproc_per_node))
        else:
            summary = launch.run_local(cfg)
    assert summary is not None  # rank 0 runs in this pod, or the job's outputs were fetched
    for key in ("best_map5095", "best_map50", "best_epoch", "images_per_s"):
        if summary.get(key) is not None:
            metrics.log_metric(key, summary[key])
    model.metadata.update(
        {"arch": arch, "fraction": fraction, "strategy": strategy, "seed": seed, "subset_seed": subset_seed}
    )
    model.metadata["nodes"] = nnodes
    if nnodes > 1:
        model.metadata["launcher"] = launcher
    model.metadata["framework"] = "ultralytics"
    metrics.log_metric("wall_time_s", round(time.perf_counter() - start, 3))
