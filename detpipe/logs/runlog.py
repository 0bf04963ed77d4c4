"""Read one training run directory: ultralytics' ``results.csv`` and what lies beside it.

A run directory is what ``detpipe train --out`` (or ultralytics' ``save_dir``) holds:

==================  ========  ==============================================================
file                needed    read for
==================  ========  ==============================================================
results.csv         required  one row per epoch: ``epoch, time`` (seconds since the session
                              began; restarts at 0 after a resume), ``train/{box,cls,dfl}_loss``,
                              ``metrics/{precision,recall,mAP50,mAP50-95}(B)``,
                              ``val/{box,cls,dfl}_loss``, ``lr/pg0..2`` (ultralytics 8.4's
                              ``BaseTrainer.save_metrics``); NaN values are kept
args.yaml           optional  the planned ``epochs`` and ``patience`` (ultralytics writes it)
train_summary.json  optional  detpipe's record: ``config.epochs``/``config.patience`` (preferred
                              over args.yaml), ``images_per_s``; its presence means training
                              finished (a run without one crashed or is still running)
weights/best.pt     optional  the parameter count (else ``weights/last.pt``)
==================  ========  ==============================================================

Usage::

    run = load_run(Path("runs/yolo12n_5p"))
    run.rows[0]["train/box_loss"], run.planned_epochs, run.params
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from detpipe.errors import InvalidInput
from detpipe.io import read_json

log = logging.getLogger(__name__)

RESULTS = "results.csv"
ARGS = "args.yaml"
SUMMARY = "train_summary.json"
WEIGHTS = ("weights/best.pt", "weights/last.pt")

LOSSES = (
    "train/box_loss",
    "train/cls_loss",
    "train/dfl_loss",
    "val/box_loss",
    "val/cls_loss",
    "val/dfl_loss",
)
"""The loss columns ultralytics' detection trainer writes (``DetectionTrainer.loss_names``)."""
METRICS = {
    "precision": "metrics/precision(B)",
    "recall": "metrics/recall(B)",
    "map50": "metrics/mAP50(B)",
    "map5095": "metrics/mAP50-95(B)",
}
"""analysis.json's metric names -> results.csv columns (``DetMetrics.keys``)."""
LR = "lr/pg0"
"""The weights' parameter group: warms up from 0 to lr0, then follows the schedule."""


@dataclass(frozen=True)
class RunLog:
    """One run's log and context.

    Attributes:
        name: The run's name in the analysis (the directory name, unless two runs share it).
        path: The run directory.
        rows: One dict per epoch line of results.csv (column -> float, NaN kept).
        planned_epochs: Epochs the run was configured for, when known.
        patience: Early-stopping patience in epochs (0: off), when known.
        finished: ``train_summary.json`` exists (detpipe wrote it after the last epoch).
        images_per_s: Training throughput detpipe recorded, when known.
        params: Parameters of the trained model, when its weights are present.
    """

    name: str
    path: Path
    rows: list[dict[str, float]] = field(repr=False)
    planned_epochs: int | None = None
    patience: int | None = None
    finished: bool = False
    images_per_s: float | None = None
    params: int | None = None

    def column(self, name: str) -> list[float] | None:
        """The column as a list (NaN where a row lacks it), or None when no row has it."""
        if not any(name in r for r in self.rows):
            return None
        return [r.get(name, math.nan) for r in self.rows]

    @property
    def epochs(self) -> list[int]:
        """The 1-based epoch of every row."""
        return [int(r["epoch"]) for r in self.rows]


def read_results_csv(path: Path) -> list[dict[str, float]]:
    """results.csv as rows of floats (``nan``/``inf`` kept; blank cells left out).

    Raises:
        InvalidInput: A missing file, a non-number cell, no ``epoch`` column, no rows, or
            epochs that do not increase.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file (not a training run directory)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{path}: cannot read ({e.__class__.__name__})") from None
    rows = []
    for lineno, raw in enumerate(csv.DictReader(io.StringIO(text)), 2):
        row = {}
        for key, value in raw.items():
            if key is None or value is None or not value.strip():
                continue
            try:
                row[key.strip()] = float(value)
            except ValueError:
                raise InvalidInput(f"{path}:{lineno}: {key.strip()!r} is not a number: {value!r}") from None
        rows.append(row)
    if not rows:
        raise InvalidInput(f"{path}: no epochs recorded")
    if any("epoch" not in r or not math.isfinite(r["epoch"]) for r in rows):
        raise InvalidInput(f"{path}: every row needs an 'epoch'")
    epochs = [r["epoch"] for r in rows]
    if any(b <= a for a, b in itertools.pairwise(epochs)):
        raise InvalidInput(f"{path}: epochs must increase row by row")
    return rows


def _planned(path: Path) -> tuple[int | None, int | None, bool, float | None]:
    """(epochs, patience, finished, images_per_s) from train_summary.json, else args.yaml."""
    summary_path, args_path = path / SUMMARY, path / ARGS
    if summary_path.is_file():
        summary = read_json(summary_path)
        if not isinstance(summary, dict):
            raise InvalidInput(f"{summary_path}: expected a JSON object")
        config = summary.get("config") or {}
        return _int(config.get("epochs")), _int(config.get("patience")), True, summary.get("images_per_s")
    if args_path.is_file():
        try:
            args = yaml.safe_load(args_path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            args = {}
        if isinstance(args, dict):
            return _int(args.get("epochs")), _int(args.get("patience")), False, None
    return None, None, False, None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def count_params(weights: Path) -> int | None:
    """Parameters of an ultralytics checkpoint's model (EMA when saved), None if unreadable."""
    from ultralytics.utils.patches import torch_load

    try:
        ckpt = torch_load(weights, map_location="cpu")
    except Exception as e:  # any unpickling failure: no count, the analysis goes on
        log.warning("%s: cannot read the parameter count (%s)", weights, type(e).__name__)
        return None
    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    return None if model is None else int(sum(p.numel() for p in model.parameters()))


def load_run(path: Path, name: str | None = None, params: bool = True) -> RunLog:
    """Read a run directory (see the module docstring).

    Args:
        path: The run directory (or its results.csv).
        name: The run's name; default: the directory name.
        params: Count the model's parameters from its weights (imports torch).

    Raises:
        InvalidInput: No readable results.csv (see :func:`read_results_csv`).
    """
    path = Path(path)
    if path.name == RESULTS and path.is_file():
        path = path.parent
    if not path.is_dir():
        raise InvalidInput(f"{path}: not a directory")
    rows = read_results_csv(path / RESULTS)
    epochs, patience, finished, ips = _planned(path)
    weights = next((path / w for w in WEIGHTS if (path / w).is_file()), None)
    return RunLog(
        name=name or path.resolve().name,
        path=path,
        rows=rows,
        planned_epochs=epochs,
        patience=patience,
        finished=finished,
        images_per_s=ips if isinstance(ips, int | float) else None,
        params=count_params(weights) if params and weights is not None else None,
    )


def run_names(paths: list[Path]) -> list[str]:
    """Names for runs: directory names, or their paths where two directories share a name."""
    names = [
        Path(p).resolve().name if Path(p).name != RESULTS else Path(p).resolve().parent.name for p in paths
    ]
    if len(set(names)) == len(names):
        return names
    return [str(p) for p in paths]
