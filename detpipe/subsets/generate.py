"""``generate``: the study's steps 1-3, from a COCO annotation file to an output directory.

    from detpipe.subsets import SubsetsConfig, generate
    summary = generate(SubsetsConfig(annotations="data/annotations/instances_train2017.json",
                                     out="runs/subsets"))

Loads and validates the file (:func:`detpipe.data.coco.load_coco`: the same checks and
messages as ``detpipe data validate``), drops images without annotations (step 1), draws
every (strategy, fraction) subset (step 2) and writes the lists, ``class_distribution.csv``,
``summary.json`` and the plots (step 3) into a temp sibling of ``out`` that replaces ``out``
only once complete. With ``draw_seeds``, the same temp directory also gets every other
seed's draw under ``draws/seed-<s>/`` and the overlap between the draws (``overlap.json``,
``overlap.csv``, ``overlap.png``; :mod:`detpipe.subsets.draws`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from detpipe.data.coco import load_coco
from detpipe.errors import InvalidInput
from detpipe.io import atomic_dir, fsync_path, write_json
from detpipe.subsets.config import (
    PER_CLASS_STRATEGY,
    SubsetsConfig,
    default_prefix,
    list_name,
    split_name,
    subset_size,
)
from detpipe.subsets.counts import FilterResult, ImageCounts, count_instances, filter_images, subset_stats
from detpipe.subsets.draws import DRAWS_DIR, draw_seeds, overlap_table, seed_dirname, write_overlap
from detpipe.subsets.outputs import Subset, build_summary, write_class_csv, write_lists
from detpipe.subsets.plot_worker import PlotWorker
from detpipe.subsets.strategies import METHODS, draw

log = logging.getLogger(__name__)

_BIG_FILE = 64 * 2**20  # announce the loading of files at least this large
_BACKGROUND_PLOTS = 64 * 2**20  # from this file size, a worker process draws the plots (plot_worker)


def generate(config: SubsetsConfig) -> dict[str, Any]:
    """Run steps 1-3 and write everything into ``config.out`` atomically.

    Args:
        config: what to read, which subsets to draw and where to write them.

    Returns:
        The summary (also written as ``summary.json``), with ``timings`` in seconds and, when
        draws were compared, ``overlap`` (the content of ``overlap.json``) added.

    Raises:
        InvalidInput: bad configuration, unreadable file, or no image with annotations.
        ValidationFailed: the annotation file has problems (``.problems`` lists them).
    """
    cfg = config.checked()
    annotations, out = Path(cfg.annotations), Path(cfg.out)
    if out.exists() and not out.is_dir():  # fail before the long part, not after it
        raise InvalidInput(f"{out}: exists and is not a directory")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    size = annotations.stat().st_size if annotations.is_file() else 0
    worker = PlotWorker() if cfg.plots and cfg.plot_worker and size >= _BACKGROUND_PLOTS else None
    try:
        return _generate(cfg, annotations, out, size, timings, t0, worker)
    finally:
        if worker is not None:
            worker.close()


def _generate(
    cfg: SubsetsConfig,
    annotations: Path,
    out: Path,
    size: int,
    timings: dict[str, float],
    t0: float,
    worker: PlotWorker | None,
) -> dict[str, Any]:
    """:func:`generate` after its checks; ``worker`` (if any) draws the plots."""
    # parsing a COCO-train-sized file takes a while and cannot report progress: say so
    log.log(
        logging.INFO if size >= _BIG_FILE else logging.DEBUG,
        "loading %s (%.0f MiB)",
        annotations,
        size / 2**20,
    )
    ds = load_coco(annotations, cfg.images_dir)
    timings["load_validate"] = time.perf_counter() - t0

    t = time.perf_counter()
    filtered = filter_images(ds, drop_crowd_only=cfg.drop_crowd_only)
    if not len(filtered.images):
        raise InvalidInput(f"{annotations}: no image has annotations, nothing to draw subsets from")
    counts = count_instances(ds, filtered.images, include_crowd=not cfg.drop_crowd_only)
    n_kept = counts.num_images
    sizes = [subset_size(f, n_kept) for f in cfg.fractions]
    log.info(
        "kept %d of %d images (%d without annotations%s dropped)",
        n_kept,
        filtered.images_in,
        filtered.dropped_empty,
        f", {filtered.dropped_crowd_only} crowd-only" if cfg.drop_crowd_only else "",
    )
    seeds = draw_seeds(cfg.seed, cfg.draw_seeds)
    seeded = [s for s in cfg.strategies if s != "topn"]  # topn is the same list for every seed
    if len(seeds) > 1 and "topn" in cfg.strategies:
        log.info(
            "topn does not depend on the seed: drawn once, not for draw seeds %s", _seeds_text(seeds[1:])
        )
    if len(seeds) > 1 and not seeded:
        seeds = seeds[:1]
    split = split_name(annotations)
    prefix = cfg.image_prefix if cfg.image_prefix is not None else default_prefix(split)
    with atomic_dir(out) as tmp:

        def summarize(chosen: list[Subset], names: list[str], seed: int) -> dict[str, Any]:
            return _summary(cfg, annotations, split, prefix, filtered, counts, chosen, names, seed)

        def drawn(strategy: str, chosen: list[Subset]) -> None:
            """The per-class plot needs only its strategy's rows: the worker starts it now."""
            if worker is not None and strategy == PER_CLASS_STRATEGY:
                names = [list_name(split, x.pct, x.strategy) for x in chosen]
                worker.submit_per_class(summarize(chosen, names, cfg.seed), tmp)

        try:
            subsets, others = _draw_seeds(cfg, counts, sizes, seeds, seeded, drawn)
            timings["draw"] = time.perf_counter() - t
            t = time.perf_counter()
            files = [list_name(split, x.pct, x.strategy) for x in subsets]
            summary = summarize(subsets, files, cfg.seed)
            table = None
            if cfg.draw_seeds:
                summary["draws"] = {
                    "seeds": seeds,
                    "dirs": {str(cfg.seed): ".", **{str(s): seed_dirname(s) for s in others}},
                }
                if others:
                    table = overlap_table(
                        {cfg.seed: [x for x in subsets if x.strategy in seeded], **others}, counts
                    )
            if worker is not None:
                worker.submit(summary, tmp, table)
            lines = [prefix + ds.file_names[i] for i in filtered.images.tolist()]
            _write_outputs(tmp, subsets, others, lines, split, counts, table, summarize)
            write_json(tmp / "summary.json", summary)
            timings["write"] = time.perf_counter() - t
            if cfg.plots:
                t = time.perf_counter()
                if worker is not None:  # drawn while the other strategies were drawn and the lists written
                    plots = worker.result(summary, tmp, table)
                else:
                    from detpipe.subsets.plots import write_plots  # matplotlib only when plotting

                    plots = write_plots(summary, tmp, overlap=table)
                summary["plots"] = [p.name for p in plots]
                timings["plots"] = time.perf_counter() - t
                write_json(tmp / "summary.json", summary)
        finally:
            if worker is not None:  # never let the child write into a directory being removed
                worker.wait()
    summary["timings"] = {k: round(v, 3) for k, v in timings.items()}
    if table is not None:
        summary["overlap"] = table  # returned for the callers (CLI, component), not in summary.json
    log.info("wrote %d lists to %s", len(files), out)
    if others:
        log.info("wrote the draws of seeds %s to %s/%s", _seeds_text(list(others)), out, DRAWS_DIR)
    return summary


def _write_outputs(
    tmp: Path,
    subsets: list[Subset],
    others: dict[int, list[Subset]],
    lines: list[str],
    split: str,
    counts: ImageCounts,
    table: dict[str, Any] | None,
    summarize: Callable[[list[Subset], list[str], int], dict[str, Any]],
) -> None:
    """The lists and ``class_distribution.csv`` of the main draw, then those of each other seed."""
    write_lists(tmp, subsets, lines, split)
    write_class_csv(tmp / "class_distribution.csv", subsets, counts)
    for s, seed_subsets in others.items():
        where = tmp / seed_dirname(s)
        where.mkdir(parents=True)
        names = write_lists(where, seed_subsets, lines, split)
        write_class_csv(where / "class_distribution.csv", seed_subsets, counts)
        write_json(where / "summary.json", summarize(seed_subsets, names, s))
    if others:
        fsync_path(tmp / DRAWS_DIR)
    if table is not None:
        write_overlap(tmp, table)


def _seeds_text(seeds: list[int]) -> str:
    return ", ".join(str(s) for s in seeds)


def _draw_seeds(
    cfg: SubsetsConfig,
    counts: ImageCounts,
    sizes: list[int],
    seeds: list[int],
    seeded: list[str],
    on_strategy: Callable[[str, list[Subset]], None],
) -> tuple[list[Subset], dict[int, list[Subset]]]:
    """The main seed's subsets (``on_strategy`` called as each strategy is done), then each other seed's."""
    bar = tqdm(
        total=(len(cfg.strategies) + len(seeded) * (len(seeds) - 1)) * len(sizes),
        desc="subsets",
        unit="subset",
        disable=None if cfg.progress else True,
    )
    with bar:
        subsets = _draw_all(
            cfg.strategies, counts, cfg.fractions, sizes, cfg.seed, cfg.nested, bar, on_strategy
        )
        others = {
            s: _draw_all(seeded, counts, cfg.fractions, sizes, s, cfg.nested, bar, label=f" seed {s}")
            for s in seeds[1:]
        }
    return subsets, others


def _draw_all(
    strategies: Sequence[str],
    counts: ImageCounts,
    fractions: Sequence[float],
    sizes: Sequence[int],
    seed: int,
    nested: bool,
    bar: tqdm,
    on_strategy: Callable[[str, list[Subset]], None] | None = None,
    label: str = "",
) -> list[Subset]:
    """Every (strategy, fraction) subset drawn with ``seed``, in strategy then fraction order.

    ``on_strategy(strategy, its subsets)`` is called as each strategy is done.
    """
    subsets = []
    for strategy in strategies:
        bar.set_postfix_str(strategy + label)
        start = bar.n
        rows = draw(strategy, counts, sizes, seed=seed, nested=nested, on_subset=lambda _n: bar.update())
        bar.update(start + len(sizes) - bar.n)  # fractions that round to one size count once
        chosen = [
            Subset(strategy, pct, r, subset_stats(counts, r)) for pct, r in zip(fractions, rows, strict=True)
        ]
        subsets.extend(chosen)
        if on_strategy is not None:
            on_strategy(strategy, chosen)
    return subsets


def _summary(
    cfg: SubsetsConfig,
    annotations: Path,
    split: str,
    prefix: str,
    filtered: FilterResult,
    counts: ImageCounts,
    subsets: list[Subset],
    files: list[str],
    seed: int,
) -> dict[str, Any]:
    return build_summary(
        annotations=annotations,
        split=split,
        image_prefix=prefix,
        seed=seed,
        nested=cfg.nested,
        filtered=filtered,
        counts=counts,
        subsets=subsets,
        files=files,
        methods=METHODS,
    )
