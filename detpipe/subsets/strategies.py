"""Step 2: the three subset strategies behind one function.

    rows = draw("random", counts, sizes=[366, 733], seed=0, nested=True)

- ``p``: proportional, class-balanced (:mod:`detpipe.subsets.proportional`).
- ``random``: uniform without replacement. Nested: the first ``n`` of one seeded permutation
  of the filtered list; not nested: an independent draw per size.
- ``topn``: the first ``n`` images of the filtered list (file order); nested by nature.

Each subset is returned as sorted row indices into the filtered list, so list files keep
the annotation file's order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from detpipe.subsets.counts import ImageCounts
from detpipe.subsets.proportional import proportional_subsets

log = logging.getLogger(__name__)

METHODS: dict[str, str] = {
    "p": "proportional: stratified systematic seeding by each image's rarest classes (implicit "
    "stratification), then swap refinement of per-class instance shares and small/medium/large "
    "mixes toward the full set's; nested subsets grow from the smallest up; every class present "
    "once a subset has at least as many images as there are classes; below that, greedy maximum "
    "class coverage first",
    "random": "uniform random sample without replacement",
    "topn": "first N images of the filtered list, in annotation-file order",
}

_RANDOM_STREAM = 0x72616E64  # keeps the random strategy's stream apart from p's


def draw(
    strategy: str,
    counts: ImageCounts,
    sizes: Sequence[int],
    seed: int = 0,
    nested: bool = True,
    on_subset: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """Draw one subset per size with a strategy.

    Args:
        strategy: ``p``, ``random`` or ``topn``.
        counts: per-image counts of the filtered set (its rows are the filtered list).
        sizes: images per subset, each in [1, N].
        seed: makes ``p`` and ``random`` reproducible.
        nested: each smaller subset inside the next larger one (``topn`` always is).
        on_subset: called once per finished size (progress).

    Returns:
        Sorted row indices, one array per entry of ``sizes``.

    Raises:
        ValueError: unknown strategy.
    """
    if strategy == "p":
        return proportional_subsets(counts, sizes, seed=seed, nested=nested, on_subset=on_subset)
    n_images = counts.num_images
    out = []
    if strategy == "random":
        perm = np.random.default_rng([seed, _RANDOM_STREAM]).permutation(n_images)
        for n in sizes:
            if not nested:
                perm = np.random.default_rng([seed, _RANDOM_STREAM, n]).permutation(n_images)
            out.append(np.sort(perm[:n]))
            if on_subset is not None:
                on_subset(n)
        return out
    if strategy == "topn":
        for n in sizes:
            out.append(np.arange(n))
            if on_subset is not None:
                on_subset(n)
        return out
    raise ValueError(f"unknown strategy {strategy!r}")
