"""The cells a sweep trains: its grid crossed with subset strategies and subset draws.

A grid cell is ``{arch, fraction, seed}`` (the study's grid: every model x fraction, several
training seeds where variance matters). The plan crosses every grid cell with each subset
``strategy`` and each subset draw (``subset_seeds``: independent subsets drawn with other
seeds, see :mod:`detpipe.subsets.draws`) and gives each cell its schedule
(:mod:`detpipe.sweep.schedule`). Draws other than the first are planned only where they
differ: below 100 % (every draw of the full set is the full set) and not for ``topn`` (the
first N images, whatever the seed)::

    sizes = subset_sizes(read_json("subsets/summary.json"))     # {("p", "5"): 7, ...}
    cells = plan_cells([{"arch": "yolo12n.yaml", "fraction": 5.0, "seed": 0}], ["p", "random"], [0, 1],
                       sizes, ScheduleConfig(policy="iterations", epochs=600, batch=16))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from detpipe.errors import InvalidInput
from detpipe.subsets.config import STRATEGIES, format_pct
from detpipe.sweep.schedule import ScheduleConfig, schedule
from detpipe.train.summary import model_name

FULL = 100.0
SEEDLESS = ("topn",)
"""Strategies whose lists do not depend on the subset seed."""


def subset_sizes(summary: Mapping[str, Any]) -> dict[tuple[str, str], int]:
    """``{(strategy, pct): images}`` of a ``detpipe subsets`` summary.json (pct written minimally)."""
    try:
        return {(row["strategy"], format_pct(row["pct"])): int(row["images"]) for row in summary["subsets"]}
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidInput(f"not a detpipe subsets summary ({e.__class__.__name__}: {e})") from None


def _grid_cell(cell: Any, n: int) -> tuple[str, float, int]:
    if not isinstance(cell, Mapping) or not {"arch", "fraction", "seed"} <= set(cell):
        raise InvalidInput(f"cells[{n}] must be a mapping with arch, fraction and seed, got {cell!r}")
    try:
        arch, fraction, seed = str(cell["arch"]), float(cell["fraction"]), cell["seed"]
    except (TypeError, ValueError):
        raise InvalidInput(f"cells[{n}]: fraction must be a number, got {cell['fraction']!r}") from None
    if isinstance(seed, bool) or not isinstance(seed, int | float) or not float(seed).is_integer():
        raise InvalidInput(f"cells[{n}]: seed must be an integer, got {seed!r}")
    if not 0 < fraction <= FULL:
        raise InvalidInput(f"cells[{n}]: fraction {fraction:g} is outside (0, 100] (percent)")
    return arch, fraction, int(seed)


def _seeds(values: Sequence[Any], what: str) -> list[int]:
    out: list[int] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not float(v).is_integer():
            raise InvalidInput(f"{what}: {v!r} is not an integer")
        if int(v) not in out:
            out.append(int(v))
    if not out:
        raise InvalidInput(f"{what}: give at least one")
    return out


def plan_cells(
    grid: Sequence[Mapping[str, Any]],
    strategies: Sequence[str],
    subset_seeds: Sequence[Any],
    sizes: Mapping[tuple[str, str], int],
    config: ScheduleConfig,
) -> list[dict[str, Any]]:
    """Every cell to train, in grid order, with its strategy, draw and schedule.

    Args:
        grid: ``{arch, fraction, seed}`` cells.
        strategies: subset strategies to train (``p``, ``random``, ``topn``).
        subset_seeds: subset draws to train; the first is the one every cell trains.
        sizes: images per (strategy, pct) list, as from :func:`subset_sizes`.
        config: the schedule policy, base epochs and batch.

    Returns:
        One dict per cell: ``arch, model, fraction, seed, strategy, subset_seed, epochs_policy,
        epochs, base_epochs, epochs_scale, capped, warmup_epochs, images, steps_per_epoch``.

    Raises:
        InvalidInput: an unknown strategy, a bad cell, or a fraction the subsets do not have.
    """
    config = config.checked()
    if not strategies:
        raise InvalidInput("strategies: give at least one")
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise InvalidInput(f"strategies: unknown {unknown[0]!r}; choose from {', '.join(STRATEGIES)}")
    draws = _seeds(subset_seeds, "subset_seeds")
    if not grid:
        raise InvalidInput("cells: the grid is empty")
    full = {s: n for (s, pct), n in sizes.items() if pct == format_pct(FULL)}
    cells: list[dict[str, Any]] = []
    for n, raw in enumerate(grid):
        arch, fraction, seed = _grid_cell(raw, n)
        pct = format_pct(fraction)
        for strategy in dict.fromkeys(strategies):
            images = sizes.get((strategy, pct))
            if images is None:
                have = ", ".join(sorted({p for s, p in sizes if s == strategy}, key=float)) or "none"
                raise InvalidInput(f"cells[{n}]: no {strategy} subset at {pct} %; the subsets have {have}")
            if strategy not in full:
                raise InvalidInput(f"the subsets have no 100 % {strategy} list to scale epochs against")
            plan = schedule(config, images, full[strategy])
            seeds = draws if fraction < FULL and strategy not in SEEDLESS else draws[:1]
            for subset_seed in seeds:
                cells.append(
                    {
                        "arch": arch,
                        "model": model_name(arch),
                        "fraction": fraction,
                        "seed": seed,
                        "strategy": strategy,
                        "subset_seed": subset_seed,
                        "epochs_policy": config.policy,
                        "epochs": plan.epochs,
                        "base_epochs": config.epochs,
                        "epochs_scale": plan.scale,
                        "capped": plan.capped,
                        "warmup_epochs": plan.warmup_epochs,
                        "images": images,
                        "steps_per_epoch": plan.steps_per_epoch,
                    }
                )
    return cells
