"""Kubeflow pipelines built from detpipe's components (installed as ``detpipe.pipelines``).

- ``train_to_edge``: data -> subsets -> train -> evaluate -> export -> gate -> bench -> publish.
- ``small_data_sweep``: the data-scaling study: train + evaluate over fractions x models x
  seeds (ParallelFor), then ``detpipe report``.
- ``active_learning``: per strategy x seed, a labeled seed set and rounds of mine -> reveal ->
  merge -> retrain -> evaluate (ParallelFor), then the report (``detpipe al report``).

``build(name, settings)`` returns the pipeline function for a target (local or cluster);
:mod:`.local_run` runs it with Kubeflow's own local runner, :mod:`.compile` writes the IR
YAML and :mod:`.submit` sends it to a Kubeflow Pipelines cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from detpipe.errors import InvalidInput
from detpipe.pipelines.settings import PipelineSettings

PIPELINES = ("train_to_edge", "small_data_sweep", "active_learning")


def build(name: str, settings: PipelineSettings | None = None) -> Callable[..., Any]:
    """The pipeline function ``name`` built for ``settings`` (default: local)."""
    settings = settings or PipelineSettings()
    if name == "train_to_edge":
        from detpipe.pipelines.train_to_edge import build_train_to_edge

        return build_train_to_edge(settings)
    if name == "small_data_sweep":
        from detpipe.pipelines.small_data_sweep import build_small_data_sweep

        return build_small_data_sweep(settings)
    if name == "active_learning":
        from detpipe.pipelines.active_learning import build_active_learning

        return build_active_learning(settings)
    raise InvalidInput(f"unknown pipeline {name!r}; choose from {', '.join(PIPELINES)}")
