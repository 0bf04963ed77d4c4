"""Subsets of a COCO training set at the study's fractions (steps 1-3 of the data-scaling study).

    from detpipe.subsets import SubsetsConfig, generate
    summary = generate(SubsetsConfig(annotations="instances_train2017.json", out="runs/subsets",
                                     fractions=(0.3125, 5, 100), strategies=("p", "random")))
    summary["subsets"][0]["mean_rel_deviation"]

Modules: :mod:`~detpipe.subsets.config` (the frozen config, fraction arithmetic),
:mod:`~detpipe.subsets.counts` (step 1 and per-image counts), :mod:`~detpipe.subsets.strategies`
and :mod:`~detpipe.subsets.proportional` (step 2), :mod:`~detpipe.subsets.outputs` and
:mod:`~detpipe.subsets.plots` (step 3; :mod:`~detpipe.subsets.plot_worker` draws them in a
second process for big files), :mod:`~detpipe.subsets.generate` (all of it).
"""

from detpipe.subsets.config import DEFAULT_FRACTIONS, STRATEGIES, SubsetsConfig
from detpipe.subsets.generate import generate

__all__ = ["DEFAULT_FRACTIONS", "STRATEGIES", "SubsetsConfig", "generate"]
