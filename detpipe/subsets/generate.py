"""``generate``: the study's steps 1-3, from a COCO annotation file to an output directory.

    from detpipe.subsets import SubsetsConfig, generate
    summary = generate(SubsetsConfig(annotations="data/annotations/instances_train2017.json",
                                     out="runs/subsets"))

Loads and validates the file (:func:`detpipe.data.coco.load_coco`: the same checks and
messages as ``detpipe data validate``), drops images without annotations (step 1), draws
every (strategy, fraction) subset (step 2) and writes the lists, ``class_distribution.csv``,
``summary.json`` and the plots (step 3) into a temp sibling of ``out`` that replaces ``out``
only once complete.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from detpipe.data.coco import load_coco
from detpipe.errors import InvalidInput
from detpipe.io import atomic_dir, write_json
from detpipe.subsets.config import SubsetsConfig, default_prefix, split_name, subset_size
from detpipe.subsets.counts import count_instances, filter_images, subset_stats
from detpipe.subsets.outputs import Subset, build_summary, write_class_csv, write_lists
from detpipe.subsets.strategies import METHODS, draw

log = logging.getLogger(__name__)

_BIG_FILE = 64 * 2**20  # announce the loading of files at least this large


def generate(config: SubsetsConfig) -> dict[str, Any]:
    """Run steps 1-3 and write everything into ``config.out`` atomically.

    Args:
        config: what to read, which subsets to draw and where to write them.

    Returns:
        The summary (also written as ``summary.json``), with ``timings`` in seconds.

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
    subsets: list[Subset] = []
    bar = tqdm(
        total=len(cfg.strategies) * len(sizes),
        desc="subsets",
        unit="subset",
        disable=None if cfg.progress else True,
    )
    try:
        for strategy in cfg.strategies:
            bar.set_postfix_str(strategy)
            start = bar.n
            rows = draw(
                strategy, counts, sizes, seed=cfg.seed, nested=cfg.nested, on_subset=lambda _n: bar.update()
            )
            bar.update(start + len(sizes) - bar.n)  # fractions that round to one size count once
            for pct, r in zip(cfg.fractions, rows, strict=True):
                subsets.append(Subset(strategy, pct, r, subset_stats(counts, r)))
    finally:
        bar.close()
    timings["draw"] = time.perf_counter() - t

    split = split_name(annotations)
    prefix = cfg.image_prefix if cfg.image_prefix is not None else default_prefix(split)
    lines = [prefix + ds.file_names[i] for i in filtered.images.tolist()]
    t = time.perf_counter()
    with atomic_dir(out) as tmp:
        files = write_lists(tmp, subsets, lines, split)
        write_class_csv(tmp / "class_distribution.csv", subsets, counts)
        summary = build_summary(
            annotations=annotations,
            split=split,
            image_prefix=prefix,
            seed=cfg.seed,
            nested=cfg.nested,
            filtered=filtered,
            counts=counts,
            subsets=subsets,
            files=files,
            methods=METHODS,
        )
        write_json(tmp / "summary.json", summary)
        timings["write"] = time.perf_counter() - t
        if cfg.plots:
            from detpipe.subsets.plots import write_plots  # matplotlib only when plotting

            t = time.perf_counter()
            summary["plots"] = [p.name for p in write_plots(summary, tmp)]
            timings["plots"] = time.perf_counter() - t
            write_json(tmp / "summary.json", summary)
    summary["timings"] = {k: round(v, 3) for k, v in timings.items()}
    log.info("wrote %d lists to %s", len(files), out)
    return summary
