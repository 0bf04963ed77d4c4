"""The subsets step: the study's nested train lists at every fraction and strategy."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from detpipe.components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def subsets_op(
    dataset: Input[Dataset],
    subsets: Output[Dataset],
    metrics: Output[Metrics],
    fractions: list = [0.3125, 0.625, 1.25, 2.5, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100],  # noqa: B006
    strategies: list = ["p", "random", "topn"],  # noqa: B006
    seed: int = 0,
) -> None:
    """Generate ``train2017_<pct>_<strategy>.txt`` lists, class_distribution.csv, summary and plots.

    Empty images are dropped first; ``p`` (class-balanced), ``random`` and ``topn`` subsets
    are nested. Logs, per strategy, the mean per-class share deviation at 5 %.
    """
    import time

    from detpipe.data.layout import TRAIN_SPLIT, coco_paths
    from detpipe.subsets.config import SubsetsConfig
    from detpipe.subsets.generate import generate

    start = time.perf_counter()
    annotations, _ = coco_paths(dataset.path, TRAIN_SPLIT)
    cfg = SubsetsConfig(
        annotations=annotations,
        out=subsets.path,
        fractions=tuple(float(f) for f in fractions),
        strategies=tuple(strategies),
        seed=seed,
        progress=False,
    )
    summary = generate(cfg)
    for row in summary["subsets"]:
        if row["pct"] == 5:
            metrics.log_metric(f"mean_rel_dev_5pct_{row['strategy']}", row["mean_rel_deviation"])
    subsets.metadata["lists"] = len(summary["subsets"])
    metrics.log_metric("wall_time_s", round(time.perf_counter() - start, 3))
