"""Subsets of a COCO training set at the study's fractions (steps 1-3 of the data-scaling study).

    from detpipe.subsets import SubsetsConfig, generate
    summary = generate(SubsetsConfig(annotations="instances_train2017.json", out="runs/subsets",
                                     fractions=(0.3125, 5, 100), strategies=("p", "random")))
    summary["subsets"][0]["mean_rel_deviation"]

Modules: :mod:`~detpipe.subsets.config` (the frozen config, fraction arithmetic),
:mod:`~detpipe.subsets.counts` (step 1 and per-image counts), :mod:`~detpipe.subsets.strategies`
and :mod:`~detpipe.subsets.proportional` (step 2), :mod:`~detpipe.subsets.outputs` and
:mod:`~detpipe.subsets.plots` (step 3), :mod:`~detpipe.subsets.generate` (all of it).
"""

from __future__ import annotations

from typing import Any

from detpipe.subsets.config import DEFAULT_FRACTIONS, STRATEGIES, SubsetsConfig

__all__ = ["DEFAULT_FRACTIONS", "STRATEGIES", "SubsetsConfig", "generate"]


def __getattr__(name: str) -> Any:  # generate pulls in scipy: imported on first use, so that
    if name == "generate":  # importing detpipe.subsets.config (the CLI's parsers do) stays light
        from detpipe.subsets.generate import generate

        return generate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
