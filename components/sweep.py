"""The data-scaling sweep's own steps: plan the cells, and file each trained cell for the report."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from detpipe.components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def plan_op(
    subsets: Input[Dataset],
    metrics: Output[Metrics],
    cells: list,
    runs: str,
    strategies: list = ["p"],  # noqa: B006
    subset_seeds: list = [0],  # noqa: B006
    epochs_policy: str = "fixed",
    epochs: int = 600,
    batch: int = 16,
    train_overrides: dict = {},  # noqa: B006
    max_epochs_scale: float = 10.0,
) -> list:
    """The cells to train: ``cells`` (arch x fraction x seed) x ``strategies`` x ``subset_seeds``.

    Each planned cell carries its schedule: ``epochs_policy`` ``fixed`` trains every cell
    ``epochs``; ``iterations`` scales epochs (and warm-up, from ``train_overrides`` or
    ultralytics' 3.0) by steps_per_epoch(100 %) / steps_per_epoch(cell), at most
    ``max_epochs_scale`` times. Files the subsets' ``summary.json`` (and ``overlap.json``
    between the subset draws) under ``runs``/subsets/ for the report.
    """
    from pathlib import Path

    from detpipe.io import read_json
    from detpipe.store import open_store
    from detpipe.sweep import ScheduleConfig, plan_cells, subset_sizes

    summary_path = Path(subsets.path) / "summary.json"
    config = ScheduleConfig.for_training(epochs_policy, epochs, batch, train_overrides, max_epochs_scale)
    planned = plan_cells(cells, strategies, subset_seeds, subset_sizes(read_json(summary_path)), config)
    store = open_store(runs)
    for name in ("summary.json", "overlap.json"):
        if (Path(subsets.path) / name).is_file():
            store.put_file(f"subsets/{name}", Path(subsets.path) / name)
    metrics.log_metric("cells", len(planned))
    metrics.log_metric("epochs_total", sum(c["epochs"] for c in planned))
    metrics.log_metric("capped_cells", sum(c["capped"] for c in planned))
    return planned


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def record_op(model: Input[Model], evaluation: Input[Artifact], runs: str, cell: dict = {}) -> str:  # noqa: B006
    """File one sweep cell's ``train_summary.json``, COCO ``metrics.json`` and planned ``cell.json``
    under ``runs`` (a directory or store URI prefix the report reads). Returns where it went."""
    from detpipe.sweep import record_cell

    return record_cell(model.path, evaluation.path, runs, cell)
