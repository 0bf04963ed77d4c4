"""Configuration of ``detpipe subsets`` and the arithmetic of its fractions.

    cfg = SubsetsConfig(annotations="annotations/instances_train2017.json", out="runs/subsets")
    subset_size(0.3125, 117_266)   # -> 366  (round half up of 0.3125 % x 117,266, at least 1)
    format_pct(0.3125), format_pct(5.0), format_pct(100)   # -> '0.3125', '5', '100'

Fractions are percentages of the images left after step 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from detpipe.errors import InvalidInput

DEFAULT_FRACTIONS: tuple[float, ...] = (
    0.3125, 0.625, 1.25, 2.5, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100,
)  # fmt: skip
"""The study's fractions, in percent of the non-empty images."""

STRATEGIES: tuple[str, ...] = ("p", "random", "topn")
"""``p``: proportional (class-balanced); ``random``: uniform; ``topn``: first N of the filtered list."""

PER_CLASS_STRATEGY = "p"
"""The strategy whose subsets ``p_per_class.png`` shows, class by class."""

DEFAULT_SPLIT = "train2017"


@dataclass(frozen=True)
class SubsetsConfig:
    """Everything ``generate`` needs; the CLI and the Kubeflow component both build one.

    Attributes:
        annotations: COCO ``instances_<split>.json``.
        out: output directory, written atomically (replaced when it exists).
        fractions: percentages of the non-empty images, each in (0, 100].
        strategies: any of :data:`STRATEGIES`, in output order.
        seed: makes ``p`` and ``random`` reproducible; the root lists are drawn with it.
        draw_seeds: more subset seeds, each an independent draw of every strategy but ``topn``
            under ``draws/seed-<s>/``, with the overlap between draws
            (:mod:`detpipe.subsets.draws`); repeats and ``seed`` itself are drawn once.
        nested: each smaller subset of a strategy is contained in the next larger one.
        image_prefix: prepended to each ``file_name`` in the lists; None derives
            ``./images/<split>/`` from the annotation file name.
        drop_crowd_only: also drop images whose only annotations are ``iscrowd`` ones (their
            crowd regions are then not counted as instances anywhere).
        images_dir: when given, every image file must exist there (as in ``data validate``).
        plots: write the PNG plots.
        progress: show progress bars on stderr.
        plot_worker: for files of 64 MiB and up, draw the plots in a spawned process
            (:mod:`detpipe.subsets.plot_worker`). The CLI sets it; a library caller's
            ``__main__`` must then be safe to import (multiprocessing's ``spawn`` rule).
    """

    annotations: Path | str
    out: Path | str
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    strategies: tuple[str, ...] = STRATEGIES
    seed: int = 0
    draw_seeds: tuple[int, ...] = ()
    nested: bool = True
    image_prefix: str | None = None
    drop_crowd_only: bool = False
    images_dir: Path | str | None = None
    plots: bool = True
    progress: bool = True
    plot_worker: bool = False

    def checked(self) -> SubsetsConfig:
        """This config with fractions sorted and de-duplicated; InvalidInput when unusable."""
        if not self.fractions:
            raise InvalidInput("no fractions given")
        for f in self.fractions:
            if not 0 < f <= 100:
                raise InvalidInput(f"fraction {f:g} is outside (0, 100] (fractions are percentages)")
        if not self.strategies:
            raise InvalidInput("no strategies given")
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise InvalidInput(f"unknown strategy {unknown[0]!r}; choose from {', '.join(STRATEGIES)}")
        for s in (self.seed, *self.draw_seeds):
            if isinstance(s, bool) or int(s) != s or s < 0:
                raise InvalidInput(f"seed {s!r} is not a non-negative integer")
        return replace(  # replace, not a new config: no field can be forgotten here
            self,
            annotations=Path(self.annotations),
            out=Path(self.out),
            fractions=tuple(sorted({float(f) for f in self.fractions})),
            strategies=tuple(dict.fromkeys(self.strategies)),
            seed=int(self.seed),
            draw_seeds=tuple(int(s) for s in self.draw_seeds),
            images_dir=None if self.images_dir is None else Path(self.images_dir),
        )


def split_name(annotations: Path | str) -> str:
    """``train2017`` for ``instances_train2017.json``; :data:`DEFAULT_SPLIT` for other names."""
    m = re.fullmatch(r"instances_(.+)\.json", Path(annotations).name)
    return m.group(1) if m else DEFAULT_SPLIT


def default_prefix(split: str) -> str:
    """The image-path prefix of the lists: ``./images/<split>/``."""
    return f"./images/{split}/"


def format_pct(pct: float) -> str:
    """A percentage written minimally: ``0.3125``, ``5``, ``100`` (no exponent, no trailing 0)."""
    text = format(Decimal(repr(float(pct))).normalize(), "f")
    return text


def pct_number(pct: float) -> int | float:
    """A percentage as the JSON number written minimally: 5 -> 5, 0.3125 -> 0.3125."""
    pct = float(pct)
    return int(pct) if pct.is_integer() else pct


def subset_size(pct: float, total: int) -> int:
    """Images in a ``pct`` % subset of ``total``: round half up of ``pct/100 x total``, in [1, total].

    The product is computed exactly (the percentage is taken as the decimal it is written as),
    so 0.3125 % of 117,266 = 366.45625 gives 366 and 2.5 % of 20 = 0.5 gives 1.
    """
    exact = Fraction(Decimal(repr(float(pct)))) * total / 100
    n = int(exact + Fraction(1, 2))  # floor(x + 1/2) for x >= 0
    return min(max(n, 1), total)


SUBSET_NAME_RE = re.compile(r"train2017_(?P<pct>\d+(?:\.\d+)?)_(?P<strategy>[A-Za-z0-9]+)")
"""A subset's name (``train2017_0.3125_p``) inside a file name, path or run name."""


def parse_subset_name(text: str) -> tuple[float, str] | None:
    """Find ``train2017_<pct>_<strategy>`` in ``text``; returns ``(percent, strategy)`` or None."""
    match = SUBSET_NAME_RE.search(str(text))
    return (float(match["pct"]), match["strategy"]) if match else None


def list_name(split: str, pct: float, strategy: str) -> str:
    """File name of one subset list: ``train2017_0.3125_p.txt``."""
    return f"{split}_{format_pct(pct)}_{strategy}.txt"
