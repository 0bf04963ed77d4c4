"""small_data_sweep: the data-scaling study as a pipeline.

    data -> subsets -> plan -> ParallelFor(planned cells) [train -> evaluate -> record -> logs] -> report

The plan step crosses the ``cells`` grid (model x fraction x training seed) with the subset
``strategies`` (``p``, ``random``, ``topn``: the study trained ``p`` and proposed comparing
them) and the ``subset_seeds`` (independent subset draws, so the report can tell the variance
of the draw from the variance of training), and schedules every cell by ``epochs_policy``:
``fixed`` (the study: every fraction ``epochs``) or ``iterations`` (epochs scaled so every
cell takes the same optimizer steps, at most ``max_epochs_scale`` x; warm-up alike).

Each cell records its ``train_summary.json`` and COCO ``metrics.json`` under ``runs`` (a
store prefix), and its training-log analysis (``detpipe logs analyze``) under the cell's
``logs/``; the report step reads them all and links the analyses. With ``nnodes`` > 1 every
cell trains as a cluster job (``launcher``: ``pytorchjob`` or ``trainjob``) whose run is mirrored under
``job_store``/train-jobs/ (kept apart from ``runs``, which the report reads);
:data:`detpipe.pipelines.profiles.STUDY_4X4` is the study's 4 nodes x 4 GPUs layout.

The default grid is the study's: YOLOv12 n/s/m/l/x on the proportional subsets at every
fraction, with three seeds in the 0.3125-5 % range where run-to-run variance matters most.
"""

from collections.abc import Callable, Sequence
from typing import Any

from kfp import dsl

from detpipe.components.data import data_op
from detpipe.components.logs import logs_op
from detpipe.components.report import report_op
from detpipe.components.subsets import subsets_op
from detpipe.components.sweep import plan_op, record_op
from detpipe.pipelines.settings import PipelineSettings
from detpipe.pipelines.tasks import configure, train_and_evaluate

STUDY_FRACTIONS = (0.3125, 0.625, 1.25, 2.5, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
STUDY_MODELS = ("yolo12n.yaml", "yolo12s.yaml", "yolo12m.yaml", "yolo12l.yaml", "yolo12x.yaml")
VARIANCE_MAX_FRACTION = 5.0
"""Fractions up to this get several seeds (the cliff region); larger ones one."""


def sweep_grid(
    models: Sequence[str] = STUDY_MODELS,
    fractions: Sequence[float] = STUDY_FRACTIONS,
    seeds: Sequence[int] = (0, 1, 2),
) -> list[dict[str, Any]]:
    """The sweep cells: every model x fraction, with all ``seeds`` up to 5 % and the first above."""
    return [
        {"arch": m, "fraction": float(f), "seed": s}
        for m in models
        for f in fractions
        for s in (seeds if f <= VARIANCE_MAX_FRACTION else seeds[:1])
    ]


STUDY_GRID = sweep_grid()


def build_small_data_sweep(settings: PipelineSettings, fan_in: bool | None = None) -> Callable[..., Any]:
    """The ``small_data_sweep`` pipeline function for ``settings``.

    Args:
        fan_in: put the report step in this pipeline, after the ParallelFor (default: on the
            cluster only; Kubeflow's local runner cannot run a step that depends on a loop,
            so ``detpipe pipeline run`` runs the report as a second local pipeline).
    """
    fan_in = settings.target == "cluster" if fan_in is None else fan_in

    @dsl.pipeline(
        name="small-data-sweep",
        description="Train and evaluate YOLO models on nested COCO subsets (0.3125-100 %) and report "
        "mAP vs data: retention, the accuracy cliff and a power-law fit.",
    )
    def small_data_sweep(
        runs: str = "s3://detpipe/sweeps/yolo12",
        cells: list = STUDY_GRID,
        coco_root: str = "",
        synth_images: int = 240,
        synth_imgsz: int = 320,
        synth_classes: int = 6,
        strategies: list = ["p"],  # noqa: B006
        subset_seeds: list = [0],  # noqa: B006
        epochs_policy: str = "fixed",
        max_epochs_scale: float = 10.0,
        epochs: int = 600,
        imgsz: int = 640,
        batch: int = 16,
        device: str = "auto",
        workers: int = 8,
        nproc_per_node: int = 1,
        train_overrides: dict = {},  # noqa: B006
        nnodes: int = 1,
        launcher: str = "pytorchjob",
        job_store: str = "s3://detpipe",
        job_timeout_s: int = 72 * 3600,
        queue_name: str = "",  # Kueue LocalQueue of the multi-node job: created suspended (empty: none)
        queue_timeout_s: int = 24 * 3600,  # how long it may wait for admission (0: no limit)
        target: float = 0.4,
        fit_min_fraction: float = 0.0,
    ) -> None:
        data = configure(
            data_op(
                coco_root=coco_root,
                synth_images=synth_images,
                synth_imgsz=synth_imgsz,
                synth_classes=synth_classes,
            ),
            settings,
            retry=True,
            name="data",
        )
        dataset = data.outputs["dataset"]
        subsets = configure(subsets_op(dataset=dataset, draw_seeds=subset_seeds), settings, name="subsets")
        plan = configure(
            plan_op(
                subsets=subsets.outputs["subsets"],
                cells=cells,
                runs=runs,
                strategies=strategies,
                subset_seeds=subset_seeds,
                epochs_policy=epochs_policy,
                epochs=epochs,
                batch=batch,
                train_overrides=train_overrides,
                max_epochs_scale=max_epochs_scale,
            ),
            settings,
            store=True,
            name="plan",
        )
        with dsl.ParallelFor(plan.outputs["Output"], parallelism=settings.sweep_parallelism) as cell:
            train, evaluation = train_and_evaluate(
                settings,
                dataset,
                subsets.outputs["subsets"],
                arch=cell.arch,
                fraction=cell.fraction,
                strategy=cell.strategy,
                subset_seed=cell.subset_seed,
                epochs=cell.epochs,
                warmup_epochs=cell.warmup_epochs,
                imgsz=imgsz,
                batch=batch,
                seed=cell.seed,
                device=device,
                workers=workers,
                nproc_per_node=nproc_per_node,
                train_overrides=train_overrides,
                nnodes=nnodes,
                launcher=launcher,
                job_store=job_store,
                job_timeout_s=job_timeout_s,
                queue_name=queue_name,
                queue_timeout_s=queue_timeout_s,
            )
            record = configure(
                record_op(
                    model=train.outputs["model"],
                    evaluation=evaluation.outputs["evaluation"],
                    runs=runs,
                    cell=cell,
                ),
                settings,
                store=True,
                retry=True,
                name="record",
            )
            logs = configure(
                logs_op(model=train.outputs["model"], cell=record.output), settings, store=True, name="logs"
            )
        if fan_in:
            report = configure(
                report_op(runs=runs, target=target, fit_min_fraction=fit_min_fraction),
                settings,
                store=True,
                name="report",
            )
            report.after(record, logs)

    return small_data_sweep


def build_sweep_report(settings: PipelineSettings) -> Callable[..., Any]:
    """A one-step pipeline running the sweep's report (the local runner's fan-in)."""

    @dsl.pipeline(name="small-data-sweep-report")
    def sweep_report(runs: str, target: float = 0.4, fit_min_fraction: float = 0.0) -> None:
        configure(
            report_op(runs=runs, target=target, fit_min_fraction=fit_min_fraction),
            settings,
            store=True,
            name="report",
        )

    return sweep_report
