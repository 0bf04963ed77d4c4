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
    draw_seeds: list = [],  # noqa: B006
) -> None:
    """Generate ``train2017_<pct>_<strategy>.txt`` lists, class_distribution.csv, summary and plots.

    Empty images are dropped first; ``p`` (class-balanced), ``random`` and ``topn`` subsets
    are nested. ``draw_seeds``: more independent draws (every strategy but ``topn``, one per
    seed) under ``draws/seed-<s>/``, with ``overlap.json`` between the draws
    (``detpipe.subsets.draws.draw_dir`` finds a seed's lists). Logs, per strategy, the mean
    per-class share deviation at 5 % and, with draws, the mean image overlap between draws
    at the smallest fraction (``draw_overlap_pct_<strategy>``, against
    ``draw_overlap_pct_expected_random``).
    """
    import time

    from detpipe.data.layout import TRAIN_SPLIT, coco_paths
    from detpipe.subsets.config import SubsetsConfig
    from detpipe.subsets.draws import smallest_fraction_overlap
    from detpipe.subsets.generate import generate

    start = time.perf_counter()
    annotations, _ = coco_paths(dataset.path, TRAIN_SPLIT)
    cfg = SubsetsConfig(
        annotations=annotations,
        out=subsets.path,
        fractions=tuple(float(f) for f in fractions),
        strategies=tuple(strategies),
        seed=seed,
        draw_seeds=tuple(int(s) for s in draw_seeds),
        progress=False,
    )
    summary = generate(cfg)
    for row in summary["subsets"]:
        if row["pct"] == 5:
            metrics.log_metric(f"mean_rel_dev_5pct_{row['strategy']}", row["mean_rel_deviation"])
    subsets.metadata["lists"] = len(summary["subsets"])
    if "draws" in summary:
        subsets.metadata["draw_seeds"] = summary["draws"]["seeds"]
    found = smallest_fraction_overlap(summary["overlap"]) if "overlap" in summary else None
    if found is not None:
        pct, rows = found
        subsets.metadata["draw_overlap_pct_at"] = float(pct)
        for strategy, row in rows.items():
            metrics.log_metric(f"draw_overlap_pct_{strategy}", row["mean_overlap_pct"])
        metrics.log_metric(
            "draw_overlap_pct_expected_random", next(iter(rows.values()))["expected_random_pct"]
        )
    metrics.log_metric("wall_time_s", round(time.perf_counter() - start, 3))
