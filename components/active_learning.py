"""The active-learning experiment's steps: plan the cells, run one cell's rounds, report."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Output

from detpipe.components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def al_plan_op(metrics: Output[Metrics], strategies: list, seeds: list) -> list:
    """The cells: every strategy x seed (``{"strategy", "seed"}``), ``random`` added when missing
    (it is the baseline the label saving is measured against)."""
    from detpipe.activelearning.config import plan_cells

    cells = plan_cells(strategies, seeds)
    metrics.log_metric("cells", len(cells))
    return cells


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def al_cell_op(
    dataset: Input[Dataset],
    result: Output[Artifact],
    metrics: Output[Metrics],
    cell: dict,
    runs: str,
    rounds: int = 3,
    budget: int = 30,
    seed_fraction: float = 10.0,
    finetune: bool = False,
    finetune_epochs: int = 0,
    arch: str = "yolov8-pico.yaml",
    epochs: int = 30,
    imgsz: int = 64,
    batch: int = 16,
    device: str = "auto",
    workers: int = 0,
    train_overrides: dict = {},  # noqa: B006
) -> str:
    """One cell (``cell``: its strategy and seed): label a seed set of ``seed_fraction`` % of the
    training images with annotations (drawn proportionally), train ``arch`` and evaluate on val2017;
    then ``rounds`` times pick ``budget`` images with ``detpipe mine`` (the cell's strategy), reveal
    their ground truth, merge them in, retrain (from scratch, or from the previous round's weights
    for ``finetune_epochs`` with ``finetune``) and evaluate. The artifact holds the cell directory
    (``cell.json``, ``round-<k>.json``, each round's labeled set, run, evaluation and picks); the
    records are filed under ``runs`` (a directory or store prefix) for the report. Returns their URI.
    """
    import time
    from pathlib import Path

    from detpipe.activelearning.cell import run_cell
    from detpipe.activelearning.config import CellConfig
    from detpipe.activelearning.records import file_cell
    from detpipe.sweep.record import normalized

    start = time.perf_counter()
    cell = normalized(cell)  # loop items' numbers arrive as floats
    cfg = CellConfig(
        data=Path(dataset.path),
        out=Path(result.path),
        strategy=cell["strategy"],
        seed=int(cell["seed"]),
        rounds=rounds,
        budget=budget,
        seed_fraction=seed_fraction,
        finetune=finetune,
        finetune_epochs=finetune_epochs,
        model=arch,
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        device=device,
        workers=workers,
        train_overrides=train_overrides,
    )
    summary = run_cell(cfg)
    for r in summary["rounds"]:
        metrics.log_metric(f"map50_95_round_{r['round']}", r["map50_95"])
    final = summary["rounds"][-1]
    metrics.log_metric("labeled_images", final["labeled_images"])
    metrics.log_metric("map50_95", final["map50_95"])
    result.metadata.update({"strategy": cfg.strategy, "seed": cfg.seed, "name": cfg.name})
    uri = file_cell(Path(result.path), runs)
    metrics.log_metric("wall_time_s", round(time.perf_counter() - start, 3))
    return uri


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def al_report_op(
    runs: str,
    report: Output[Artifact],
    page: Output[HTML],
    summary: Output[Markdown],
    metrics: Output[Metrics],
    sweep_report: str = "",
    sweep_model: str = "",
    power_law: list = [],  # noqa: B006
    full_images: int = 0,
) -> None:
    """The active-learning report over every cell under ``runs``: mAP50-95 against labeled images
    per strategy (mean ± std over seeds, ``curves.png``), each strategy's label saving against
    random with its uncertainty across seeds, and the sweep's power law overlaid: ``sweep_report``
    (a data-scaling ``report.json``, file or store URI; ``sweep_model`` its model, default the
    cells') or ``power_law`` ``[a, b, alpha]``; ``full_images`` the sweep's 100 % (0: the sweep
    report's, else the cells' training images with annotations).

    ``report`` holds ``report.json``, ``report.md``, ``report.html`` and ``curves.png``; ``page``
    is the report as one self-contained HTML page, ``summary`` its markdown.
    """
    from pathlib import Path

    from detpipe.activelearning.render import render_markdown
    from detpipe.activelearning.report import ReportConfig, write_report
    from detpipe.io import write_bytes, write_text

    law = tuple(float(v) for v in power_law) if power_law else None
    result = write_report(
        ReportConfig(
            runs=runs,
            out=Path(report.path),
            sweep_report=sweep_report or None,
            sweep_model=sweep_model or None,
            power_law=law,  # type: ignore[arg-type]
            full_images=full_images or None,
        )
    )
    for strategy, entry in result["saving"].items():
        if entry["saving"] is not None:
            metrics.log_metric(f"saving_{strategy}", entry["saving"])
    write_bytes(page.path, (Path(report.path) / "report.html").read_bytes())
    write_text(summary.path, render_markdown(result))
