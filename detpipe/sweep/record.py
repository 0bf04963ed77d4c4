"""Filing a trained sweep cell where the report reads it.

    record_cell("model/", "evaluation/", "s3://detpipe/sweeps/yolo12", cell)
    # -> "s3://detpipe/sweeps/yolo12/yolo12n_5_p_s0"  holding train_summary.json, metrics.json, cell.json

``cell.json`` is the plan's cell (:func:`detpipe.sweep.plan.plan_cells`): the report takes the
run's strategy, subset draw and schedule policy from it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from detpipe.io import read_json
from detpipe.subsets.config import format_pct

CELL = "cell.json"
"""The cell's record beside its ``train_summary.json`` (the report reads both)."""
SUMMARY = "train_summary.json"
"""The train summary a cell's record holds (:mod:`detpipe.train.summary`)."""
_INTEGERS = ("seed", "subset_seed", "epochs", "base_epochs", "images", "steps_per_epoch")


def cell_name(summary: Mapping[str, Any], cell: Mapping[str, Any]) -> str:
    """``<model>_<pct>_<strategy>_s<seed>``, + ``_d<subset_seed>`` for other draws, + ``_iters``
    for iteration-matched schedules (what ran, from the train summary; the draw and policy from
    the cell)."""
    pct = format_pct(summary["fraction"]) if summary.get("fraction") is not None else "full"
    name = f"{summary['model']}_{pct}_{summary.get('strategy') or 'all'}_s{summary.get('seed', 0)}"
    if int(cell.get("subset_seed") or 0):
        name += f"_d{int(cell['subset_seed'])}"
    if cell.get("epochs_policy") == "iterations":
        name += "_iters"
    return name


def normalized(cell: Mapping[str, Any]) -> dict[str, Any]:
    """The cell with integer fields as ints again (Kubeflow passes loop items' numbers as floats)."""
    out = dict(cell)
    for key in _INTEGERS:
        if isinstance(out.get(key), float) and out[key].is_integer():
            out[key] = int(out[key])
    return out


def record_cell(model_dir: str | Path, evaluation_dir: str | Path, runs: str, cell: Mapping[str, Any]) -> str:
    """Put the cell's train_summary.json, COCO metrics.json and cell.json under ``runs``; returns its URI."""
    from detpipe.store import open_store

    model_dir, evaluation_dir = Path(model_dir), Path(evaluation_dir)
    summary = read_json(model_dir / SUMMARY)
    cell = normalized(cell)
    name = cell_name(summary, cell)
    store = open_store(runs)
    store.put_file(f"{name}/{SUMMARY}", model_dir / SUMMARY)
    store.put_file(f"{name}/metrics.json", evaluation_dir / "metrics.json")
    if cell:
        body = json.dumps(cell, indent=2, sort_keys=True).encode("utf-8") + b"\n"
        store.put_bytes(f"{name}/{CELL}", body, content_type="application/json")
    return f"{store.uri}/{name}"
