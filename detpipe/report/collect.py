"""Collect training results for the data-scaling report.

Two sources, both giving one :class:`Run` per trained model:

* a directory of training runs: every ``train_summary.json`` below it (found recursively;
  hidden directories such as in-progress ``.out.tmp`` dirs are skipped);
* a CSV table with the header ``model,fraction,best_map5095`` and optionally
  ``best_map50,best_epoch,last_epoch,seed,strategy,subset_seed,epochs_policy,epochs``; blank
  lines and lines starting with ``#`` are ignored.

``train_summary.json`` keys read here (written by ``detpipe train``; other keys are ignored):

==============  =====  ========  ============================================================
key             type   needed    meaning
==============  =====  ========  ============================================================
model           str    required  architecture, e.g. ``"yolo12n"`` (``yolo12n.yaml`` or a path
                                 is reduced to ``yolo12n``)
fraction        float  optional  training-set fraction in percent, 0 < f <= 100. When absent it
                                 is parsed from the subset name ``train2017_<pct>_<strategy>``
                                 found in ``subset``, ``data`` (the data YAML) or the path of
                                 the summary itself, in that order
best_map5095    float  required  best validation mAP50-95 of the run, in [0, 1]
best_map50      float  optional  validation mAP50 (same epoch), in [0, 1]
best_epoch      int    optional  1-based epoch at which best_map5095 was reached
last_epoch      int    optional  1-based last epoch trained (< epochs when stopped early)
seed            int    optional  training seed; several seeds per (model, fraction) are averaged
strategy        str    optional  subset strategy (``p``, ``random``, ``topn``); else parsed from
                                 the subset name like ``fraction``
subset_seed     int    optional  which independent subset draw the run trained on (the seed of
                                 the subsets' ``summary.json``; ``detpipe train`` copies it from
                                 the data YAML)
==============  =====  ========  ============================================================

A sweep cell's ``cell.json`` beside its ``train_summary.json`` (the sweep's record step files
it, contract 2 of issue 12) says how the cell was planned; its ``strategy``, ``subset_seed``,
``epochs_policy`` and ``epochs`` override the summary's, and ``epochs_scale`` and ``capped``
are read from it too (other keys are ignored):

==============  =====  ===========================================================================
key             type   meaning
==============  =====  ===========================================================================
epochs_policy   str    ``fixed`` (the study's: the same epochs at every fraction) or ``iterations``
                       (epochs scaled so every cell sees the 100 % run's optimizer steps)
epochs          int    planned epochs of the cell (>= 1)
epochs_scale    float  planned epochs / base epochs (> 0)
capped          bool   the scale hit the sweep's ``max_epochs_scale``
==============  =====  ===========================================================================

Usage::

    runs = load_runs(Path("runs/sweep"))      # or load_table(Path("results.csv"))
    groups = group_runs(runs)                 # {(model, "5"): [Run, ...]}, duplicates refused

Choosing the main analysis' runs among several strategies and policies is
:mod:`detpipe.report.select`'s.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePath
from typing import Any

from detpipe.errors import InvalidInput
from detpipe.io import read_json
from detpipe.subsets.config import format_pct, parse_subset_name
from detpipe.sweep.record import CELL, SUMMARY
from detpipe.sweep.schedule import POLICIES as EPOCHS_POLICIES

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("model", "fraction", "best_map5095")
OPTIONAL_COLUMNS = (
    "best_map50",
    "best_epoch",
    "last_epoch",
    "seed",
    "strategy",
    "subset_seed",
    "epochs_policy",
    "epochs",
)
_MODEL_SUFFIXES = (".yaml", ".yml", ".pt")

fraction_key = format_pct
"""A fraction in percent written minimally (0.3125, 5, 100), as in the subset list names."""


@dataclass(frozen=True)
class Run:
    """One training run's result.

    Attributes:
        model: Architecture name, e.g. ``yolo12n``.
        fraction: Training-set fraction in percent (0 < fraction <= 100).
        best_map5095: Best validation mAP50-95, in [0, 1].
        best_map50: Validation mAP50, in [0, 1], when known.
        best_epoch: 1-based epoch of the best score, when known.
        last_epoch: 1-based last epoch trained, when known.
        seed: Training seed, when known.
        strategy: Subset strategy, when known.
        source: Where the run came from (``file`` or ``file:line``), for messages.
        subset_seed: Which independent subset draw the run trained on, when known.
        epochs_policy: ``fixed`` or ``iterations``, when known.
        epochs: Planned epochs, when known (a run with ``last_epoch < epochs`` stopped early).
        epochs_scale: Planned epochs / base epochs of the sweep, when known.
        capped: Whether the iteration-matched scale hit the sweep's cap, when known.
    """

    model: str
    fraction: float
    best_map5095: float
    best_map50: float | None = None
    best_epoch: int | None = None
    last_epoch: int | None = None
    seed: int | None = None
    strategy: str | None = None
    source: str = ""
    subset_seed: int | None = None
    epochs_policy: str | None = None
    epochs: int | None = None
    epochs_scale: float | None = None
    capped: bool | None = None

    @property
    def identity(self) -> tuple[int | None, int | None]:
        """What tells runs of one group apart: (training seed, subset draw)."""
        return (self.seed, self.subset_seed)


def _model_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{where}: 'model' must be a non-empty string, got {value!r}")
    name = PurePath(value.strip()).name
    for suffix in _MODEL_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def _number(value: Any, key: str, where: str, text: bool = False) -> float:
    if text and isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise InvalidInput(f"{where}: '{key}' is not a number: {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{where}: '{key}' is not a number: {value!r}")
    if not math.isfinite(value):
        raise InvalidInput(f"{where}: '{key}' must be finite, got {value}")
    return float(value)


def _integer(value: Any, key: str, where: str, text: bool = False) -> int:
    number = _number(value, key, where, text)
    if not number.is_integer():
        raise InvalidInput(f"{where}: '{key}' must be an integer, got {value!r}")
    return int(number)


def _check_map(value: float, key: str, where: str) -> float:
    if not 0.0 <= value <= 1.0:
        hint = " (mAP as a fraction, not percent)" if 1.0 < value <= 100.0 else ""
        raise InvalidInput(f"{where}: '{key}' = {value:g} is outside [0, 1]{hint}")
    return value


def make_run(record: Mapping[str, Any], where: str, names: Iterable[str] = (), text: bool = False) -> Run:
    """Validate one record (a summary dict or a CSV row) into a :class:`Run`.

    Args:
        record: Keys as in the module docstring; ``None`` or ``""`` mean absent.
        where: ``file`` or ``file:line``, prefixed to every error message.
        names: Strings searched for a ``train2017_<pct>_<strategy>`` subset name when
            ``fraction`` or ``strategy`` is absent.
        text: Values are strings to parse (a CSV row); otherwise numbers must be JSON numbers.

    Returns:
        The validated run.

    Raises:
        InvalidInput: A required key is missing or a value is malformed or out of range.
    """

    def get(key: str) -> Any:
        value = record.get(key)
        return None if value is None or (isinstance(value, str) and not value.strip()) else value

    if get("model") is None:
        raise InvalidInput(f"{where}: missing 'model'")
    model = _model_name(get("model"), where)
    if get("best_map5095") is None:
        raise InvalidInput(f"{where}: missing 'best_map5095'")
    best = _check_map(_number(get("best_map5095"), "best_map5095", where, text), "best_map5095", where)
    map50 = get("best_map50")
    if map50 is not None:
        map50 = _check_map(_number(map50, "best_map50", where, text), "best_map50", where)

    parsed = next((p for p in map(parse_subset_name, names) if p is not None), None)
    if get("fraction") is not None:
        fraction = _number(get("fraction"), "fraction", where, text)
    elif parsed is not None:
        fraction = parsed[0]
    else:
        raise InvalidInput(f"{where}: missing 'fraction' and no train2017_<pct>_<strategy> name to parse")
    if not 0.0 < fraction <= 100.0:
        raise InvalidInput(f"{where}: 'fraction' = {fraction:g} must be in (0, 100] (percent)")

    epochs = {}
    for key in ("best_epoch", "last_epoch"):
        if get(key) is not None:
            epochs[key] = _integer(get(key), key, where, text)
            if epochs[key] < 1:
                raise InvalidInput(f"{where}: '{key}' = {epochs[key]} must be >= 1 (epochs are 1-based)")
    if len(epochs) == 2 and epochs["best_epoch"] > epochs["last_epoch"]:
        raise InvalidInput(
            f"{where}: best_epoch {epochs['best_epoch']} is after last_epoch {epochs['last_epoch']}"
        )
    seed = None if get("seed") is None else _integer(get("seed"), "seed", where, text)
    strategy = get("strategy")
    if strategy is not None and not isinstance(strategy, str):
        raise InvalidInput(f"{where}: 'strategy' must be a string, got {strategy!r}")
    if strategy is None and parsed is not None:
        strategy = parsed[1]
    subset_seed = (
        None if get("subset_seed") is None else _integer(get("subset_seed"), "subset_seed", where, text)
    )
    planned = None if get("epochs") is None else _integer(get("epochs"), "epochs", where, text)
    if planned is not None and planned < 1:
        raise InvalidInput(f"{where}: 'epochs' = {planned} must be >= 1")
    return Run(
        model=model,
        fraction=fraction,
        best_map5095=best,
        best_map50=map50,
        best_epoch=epochs.get("best_epoch"),
        last_epoch=epochs.get("last_epoch"),
        seed=seed,
        strategy=strategy.strip() if strategy else None,
        source=where,
        subset_seed=subset_seed,
        epochs_policy=_policy(get("epochs_policy"), where),
        epochs=planned,
    )


def _policy(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.strip() not in EPOCHS_POLICIES:
        raise InvalidInput(
            f"{where}: 'epochs_policy' must be one of {', '.join(EPOCHS_POLICIES)}, got {value!r}"
        )
    return value.strip()


def read_cell(path: Path) -> dict[str, Any]:
    """The planning keys of a sweep cell's ``cell.json`` (see the module docstring), validated.

    Returns:
        Only the keys present and not null, among ``strategy``, ``subset_seed``,
        ``epochs_policy``, ``epochs``, ``epochs_scale`` and ``capped``.

    Raises:
        InvalidInput: Not a JSON object, or a key of the wrong type or out of range.
    """
    cell = read_json(path)
    if not isinstance(cell, dict):
        raise InvalidInput(f"{path}: expected a JSON object, got {type(cell).__name__}")
    where = str(path)
    keys: dict[str, Any] = {}
    if cell.get("strategy") is not None:
        if not isinstance(cell["strategy"], str) or not cell["strategy"].strip():
            raise InvalidInput(f"{where}: 'strategy' must be a non-empty string, got {cell['strategy']!r}")
        keys["strategy"] = cell["strategy"].strip()
    for key in ("subset_seed", "epochs"):
        if cell.get(key) is not None:
            keys[key] = _integer(cell[key], key, where)
    if keys.get("epochs", 1) < 1:
        raise InvalidInput(f"{where}: 'epochs' = {keys['epochs']} must be >= 1")
    if cell.get("epochs_policy") is not None:
        keys["epochs_policy"] = _policy(cell["epochs_policy"], where)
    if cell.get("epochs_scale") is not None:
        keys["epochs_scale"] = _number(cell["epochs_scale"], "epochs_scale", where)
        if keys["epochs_scale"] <= 0:
            raise InvalidInput(f"{where}: 'epochs_scale' = {keys['epochs_scale']:g} must be > 0")
    if cell.get("capped") is not None:
        if not isinstance(cell["capped"], bool):
            raise InvalidInput(f"{where}: 'capped' must be true or false, got {cell['capped']!r}")
        keys["capped"] = cell["capped"]
    return keys


def load_table(path: Path) -> list[Run]:
    """Read runs from a CSV table (see the module docstring for the columns).

    Raises:
        InvalidInput: Unreadable file, missing/unknown/duplicate columns, ragged rows, bad values.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path}: is a directory, expected a CSV file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{path}: cannot read CSV table ({e.__class__.__name__})") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    lines = [(n, line) for n, line in lines if not line.lstrip().startswith("#")]
    if not lines:
        raise InvalidInput(f"{path}: empty table (need a header {','.join(REQUIRED_COLUMNS)})")
    rows = list(csv.reader(line for _, line in lines))
    header = [name.strip() for name in rows[0]]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InvalidInput(
            f"{path}: missing column(s) {','.join(missing)} (need {','.join(REQUIRED_COLUMNS)})"
        )
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        raise InvalidInput(
            f"{path}: unknown column(s) {','.join(unknown)} (allowed: "
            f"{','.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)})"
        )
    if len(set(header)) != len(header):
        raise InvalidInput(f"{path}: duplicate column names in the header")
    runs = []
    for (lineno, _), row in zip(lines[1:], rows[1:], strict=True):
        where = f"{path}:{lineno}"
        if len(row) != len(header):
            raise InvalidInput(f"{where}: expected {len(header)} fields, got {len(row)}")
        runs.append(make_run(dict(zip(header, row, strict=True)), where, text=True))
    if not runs:
        raise InvalidInput(f"{path}: the table has a header but no rows")
    log.info("%s: %d runs", path, len(runs))
    return runs


def find_summaries(root: Path) -> list[Path]:
    """Every ``train_summary.json`` under ``root``, sorted, skipping hidden directories."""
    found = []
    for path in sorted(Path(root).rglob(SUMMARY)):
        if not any(part.startswith(".") for part in path.relative_to(root).parts[:-1]) and path.is_file():
            found.append(path)
    return found


def load_runs(root: Path) -> list[Run]:
    """Read one run per ``train_summary.json`` found under ``root``.

    Raises:
        InvalidInput: ``root`` is not a directory, holds no summaries, or a summary is malformed.
    """
    root = Path(root)
    if not root.is_dir():
        raise InvalidInput(f"{root}: not a directory")
    paths = find_summaries(root)
    if not paths:
        raise InvalidInput(f"{root}: no {SUMMARY} found (searched recursively)")
    runs = []
    for path in paths:
        summary = read_json(path)
        if not isinstance(summary, dict):
            raise InvalidInput(f"{path}: expected a JSON object, got {type(summary).__name__}")
        names = [summary.get(k) for k in ("subset", "data")] + [path.relative_to(root).as_posix()]
        run = make_run(summary, str(path), [n for n in names if isinstance(n, str)])
        cell = path.with_name(CELL)
        if cell.is_file():
            run = replace(run, **read_cell(cell))
            if run.best_epoch is not None and run.epochs is not None and run.best_epoch > run.epochs:
                raise InvalidInput(f"{cell}: 'epochs' = {run.epochs} is before best_epoch {run.best_epoch}")
        runs.append(run)
    log.info("%s: %d train summaries", root, len(runs))
    return runs


def check_unique(runs: Iterable[Run]) -> None:
    """Runs of one (model, fraction, strategy, epochs policy) must differ in (seed, subset_seed).

    Raises:
        InvalidInput: Two runs share all of them; the message names their sources.
    """
    seen: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        seen[run.model, fraction_key(run.fraction), run.strategy, run.epochs_policy, run.identity].append(run)
    for (model, key, *_), members in seen.items():
        if len(members) == 1:
            continue
        sources = ", ".join(r.source for r in members)
        seed, draw = members[0].identity
        if seed is None and draw is None:
            raise InvalidInput(f"duplicate rows for {model} at {key} % without seeds ({sources})")
        what = f"seed {seed}" if draw is None else f"seed {seed}, subset seed {draw}"
        raise InvalidInput(f"duplicate seed for {model} at {key} % ({what}: {sources})")


def group_runs(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    """Group runs by (model, fraction key); a group's runs must differ in (seed, subset_seed).

    Raises:
        InvalidInput: Two runs of a group share their seed and subset seed (or both lack them).
    """
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.model, fraction_key(run.fraction)].append(run)
    for members in groups.values():
        if len(members) > 1:
            check_unique(replace(r, strategy=None, epochs_policy=None) for r in members)
    return dict(groups)


LOGS_ANALYSIS = "logs/analysis.json"
"""Where a sweep cell's training-log analysis lies, beside its train_summary.json (the
pipeline's logs step files it there; ``detpipe logs analyze --out <cell>/logs`` does too)."""


def find_log_analyses(runs: list[Run], root: Path) -> list[dict[str, Any]]:
    """The training-log analyses beside the runs' summaries, one entry per run that has one.

    Each entry: ``model``, ``fraction``, ``seed``, ``strategy``, ``subset_seed``,
    ``epochs_policy``, ``analysis`` (the analysis.md path relative
    to ``root``), and the run's ``status``, ``reason`` and ``stable_epoch`` from analysis.json.
    An unreadable analysis is skipped with a warning (it never fails the report).
    """
    found = []
    for run in runs:
        path = Path(run.source).parent / LOGS_ANALYSIS
        if not path.is_file():
            continue
        try:
            entries = list(read_json(path)["runs"].values())
            entry = entries[0]
        except (InvalidInput, KeyError, TypeError, IndexError, AttributeError):
            log.warning("%s: not a training-log analysis, not linked", path)
            continue
        found.append(
            {
                "model": run.model,
                "fraction": fraction_key(run.fraction),
                "seed": run.seed,
                "strategy": run.strategy,
                "subset_seed": run.subset_seed,
                "epochs_policy": run.epochs_policy,
                "analysis": path.with_suffix(".md").relative_to(root).as_posix(),
                "status": entry.get("status"),
                "reason": entry.get("reason"),
                "stable_epoch": entry.get("stable_epoch"),
            }
        )
    return found
