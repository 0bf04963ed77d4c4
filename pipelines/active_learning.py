"""active_learning: does picking images with a strategy need fewer labels than picking at random?

    data -> plan -> ParallelFor(strategies x seeds)[cell: seed set, then rounds of
            mine -> reveal -> merge -> train -> evaluate] -> report

Each cell starts from a labeled seed set (``seed_fraction`` % of the training images with
annotations, drawn proportionally like the subsets; the same for every strategy with the same
seed) and runs ``rounds`` rounds: pick ``budget`` of the unlabeled training images with the
cell's strategy (``detpipe mine``: uncertainty, entropy, diversity, random), "label" them by
revealing their ground truth, merge them in (``detpipe data merge``), retrain (from scratch, or
``finetune`` from the previous round) and evaluate on the fixed val split. ``random`` is always
run: it is the baseline. The cells file their round records under ``runs``; the report plots
mAP50-95 against labeled images per strategy (mean ± std over seeds), gives each strategy's
label saving against random with its uncertainty across seeds and overlays the power law of a
data-scaling sweep (``sweep_report``, or ``power_law`` ``[a, b, alpha]``). The rounds of a cell
run in one step (each round depends on the last); on a cluster that step is a GPU step.
"""

from collections.abc import Callable
from typing import Any

from kfp import dsl

from detpipe.components.active_learning import al_cell_op, al_plan_op, al_report_op
from detpipe.components.data import data_op
from detpipe.pipelines.settings import PipelineSettings
from detpipe.pipelines.tasks import configure

REPORT_ARGUMENTS = ("runs", "sweep_report", "sweep_model", "power_law", "full_images")
"""The arguments the report step takes (locally a second pipeline run, as the sweep's)."""


def build_active_learning(settings: PipelineSettings, fan_in: bool | None = None) -> Callable[..., Any]:
    """The ``active_learning`` pipeline function for ``settings``.

    Args:
        fan_in: put the report step in this pipeline, after the ParallelFor (default: on the
            cluster only; Kubeflow's local runner cannot run a step that depends on a loop,
            so ``detpipe pipeline run`` runs the report as a second local pipeline).
    """
    fan_in = settings.target == "cluster" if fan_in is None else fan_in

    @dsl.pipeline(
        name="active-learning",
        description="Active learning as an experiment: per strategy x seed, a labeled seed set, then "
        "rounds of pick (detpipe mine) -> reveal ground truth -> merge -> retrain -> evaluate; a report of "
        "mAP50-95 vs labeled images, the label saving against random and the sweep's power law.",
    )
    def active_learning(
        runs: str = "s3://detpipe/al/yolo12n",
        coco_root: str = "",
        synth_images: int = 320,
        synth_imgsz: int = 64,
        synth_classes: int = 3,
        strategies: list = ["uncertainty", "entropy", "diversity", "random"],  # noqa: B006
        seeds: list = [0, 1, 2],  # noqa: B006
        rounds: int = 5,
        budget: int = 1000,
        seed_fraction: float = 5.0,
        finetune: bool = False,
        finetune_epochs: int = 0,
        arch: str = "yolo12n.yaml",
        epochs: int = 100,
        imgsz: int = 640,
        batch: int = 16,
        device: str = "auto",
        workers: int = 8,
        train_overrides: dict = {},  # noqa: B006
        sweep_report: str = "",
        sweep_model: str = "",
        power_law: list = [],  # noqa: B006
        full_images: int = 0,
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
        plan = configure(al_plan_op(strategies=strategies, seeds=seeds), settings, name="plan")
        with dsl.ParallelFor(plan.outputs["Output"], parallelism=settings.sweep_parallelism) as cell:
            run = configure(
                al_cell_op(
                    dataset=data.outputs["dataset"],
                    cell=cell,
                    runs=runs,
                    rounds=rounds,
                    budget=budget,
                    seed_fraction=seed_fraction,
                    finetune=finetune,
                    finetune_epochs=finetune_epochs,
                    arch=arch,
                    epochs=epochs,
                    imgsz=imgsz,
                    batch=batch,
                    device=device,
                    workers=workers,
                    train_overrides=train_overrides,
                ),
                settings,
                gpu=True,
                store=True,
                cache=False,
                name="cell",
            )
        if fan_in:
            report = configure(
                al_report_op(
                    runs=runs,
                    sweep_report=sweep_report,
                    sweep_model=sweep_model,
                    power_law=power_law,
                    full_images=full_images,
                ),
                settings,
                store=True,
                name="report",
            )
            report.after(run)

    return active_learning


def build_al_report(settings: PipelineSettings) -> Callable[..., Any]:
    """A one-step pipeline running the experiment's report (the local runner's fan-in)."""

    @dsl.pipeline(name="active-learning-report")
    def al_report(
        runs: str,
        sweep_report: str = "",
        sweep_model: str = "",
        power_law: list = [],  # noqa: B006
        full_images: int = 0,
    ) -> None:
        configure(
            al_report_op(
                runs=runs,
                sweep_report=sweep_report,
                sweep_model=sweep_model,
                power_law=power_law,
                full_images=full_images,
            ),
            settings,
            store=True,
            name="report",
        )

    return al_report
