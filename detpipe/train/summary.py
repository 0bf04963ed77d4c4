"""``train_summary.json``: one machine-readable record per training run.

Keys (the report stage reads ``model``, ``fraction``, ``best_map5095``, ``best_map50``,
``best_epoch``, ``last_epoch`` and ``seed``)::

    model            "yolo12n"
    fraction         percent from a train2017_<pct>_<strategy> subset name, else null
    strategy         "p" | "random" | "topn" | null;  subset: the subset name or null
    subset_seed      the subset draw trained on: the data YAML's ``subset_seed`` (written by
                     ``detpipe data yolo --subsets``, issue 12 §1), else null
    seed, best_epoch, last_epoch (1-based), best_map5095, best_map50 (at best_epoch)
    wall_time_s      seconds of training epochs (results.csv ``time``, summed over resumed sessions)
    images_per_s     training images per second, all processes together, this session
    gpu_mem_peak_gb  largest peak reserved CUDA memory of any process; null on CPU
    config           every ultralytics argument the run used
    dataset_hash     sha256 over the train image list and the label files' contents
    world_size       processes in the job; ranks: per-process batches/images/sampler
    weights          {"best": "weights/best.pt", "last": "weights/last.pt"} (relative to the run dir)

"best" is the epoch with the highest mAP50-95 (ultralytics' fitness), the earliest on ties,
which is the epoch ``best.pt`` was saved at.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

import yaml

from detpipe.errors import InvalidInput
from detpipe.io import write_text
from detpipe.subsets.config import SUBSET_NAME_RE, parse_subset_name

MAP5095 = "metrics/mAP50-95(B)"
MAP50 = "metrics/mAP50(B)"


def _data_yaml(path: Path) -> dict[str, Any]:
    """A dataset YAML's mapping; an unreadable or odd file reads as empty."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        data = {}
    return data if isinstance(data, dict) else {}


def subset_seed(data_yaml: str | Path) -> int | None:
    """The subset draw a dataset YAML trains on: its ``subset_seed`` key, else None."""
    seed = _data_yaml(Path(data_yaml)).get("subset_seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def subset_name(data_yaml: str | Path) -> str | None:
    """The subset a dataset YAML trains on: its ``train`` list's name, else the YAML's own name."""
    path = Path(data_yaml)
    train = _data_yaml(path).get("train")
    candidates = [*(train if isinstance(train, list) else [train] if train else []), path.name]
    for candidate in candidates:
        name = PurePath(str(candidate)).name
        match = SUBSET_NAME_RE.search(name)
        if match:
            return match.group(0)
    return None


def read_results(path: str | Path) -> list[dict[str, float]]:
    """ultralytics' ``results.csv`` as a list of rows (numbers), one per epoch line."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for raw in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))):
        rows.append({k.strip(): float(v) for k, v in raw.items() if k is not None and v not in (None, "")})
    return rows


def trim_results(path: str | Path, epochs_done: int) -> int:
    """Drop ``results.csv`` rows after epoch ``epochs_done`` (atomically); returns rows kept.

    A run killed between writing an epoch's row and saving its checkpoint would otherwise
    repeat that epoch's row after ``--resume``.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        return 0
    kept = [lines[0]] + [
        line for line in lines[1:] if line.strip() and float(line.split(",")[0]) <= epochs_done
    ]
    if len(kept) != len(lines):
        write_text(path, "\n".join(kept) + "\n")
    return len(kept) - 1


def best_row(rows: Sequence[Mapping[str, float]]) -> Mapping[str, float] | None:
    """The row with the highest mAP50-95, the earliest on ties (as ``best.pt`` is kept)."""
    best = None
    for row in rows:
        if MAP5095 in row and (best is None or row[MAP5095] > best[MAP5095]):
            best = row
    return best


def training_seconds(rows: Sequence[Mapping[str, float]]) -> float:
    """Seconds of training over all sessions: ``time`` restarts from 0 after each resume."""
    total, previous = 0.0, 0.0
    for row in rows:
        t = row.get("time", 0.0)
        if t < previous:  # a new session began
            total += previous
        previous = t
    return round(total + previous, 3)


def dataset_hash(
    image_files: Iterable[str | Path], label_files: Iterable[str | Path], root: str | Path
) -> str:
    """sha256 over the train images (paths relative to ``root``) and their label files' bytes.

    Independent of where the dataset lives and of list order; a missing label file (an image
    without objects) counts as empty.
    """
    root = Path(root)
    entries = []
    for image, label in zip(image_files, label_files, strict=True):
        image, label = Path(image), Path(label)
        try:
            rel = image.relative_to(root).as_posix()
        except ValueError:
            rel = image.as_posix()
        content = label.read_bytes() if label.is_file() else b""
        entries.append(f"{rel}\t{hashlib.sha256(content).hexdigest()}\n")
    h = hashlib.sha256()
    for entry in sorted(entries):
        h.update(entry.encode("utf-8"))
    return h.hexdigest()


def model_name(text: str) -> str:
    """``"/x/yolo12n.yaml"`` -> ``"yolo12n"``."""
    name = PurePath(str(text)).name
    for suffix in (".yaml", ".yml", ".pt"):
        name = name.removesuffix(suffix)
    return name


def build_summary(
    *,
    model: str,
    data: str,
    seed: int,
    rows: Sequence[Mapping[str, float]],
    config: Mapping[str, Any],
    dataset_sha256: str,
    ranks: Sequence[Mapping[str, Any]],
    weights: Mapping[str, str | None],
    mirror: str | None = None,
) -> dict[str, Any]:
    """Assemble the summary of a finished run.

    Args:
        model: architecture name (``yolo12n``).
        data: the dataset YAML trained on.
        seed: the training seed.
        rows: ``results.csv`` rows (all sessions).
        config: the ultralytics arguments the run used.
        dataset_sha256: :func:`dataset_hash` of the train split.
        ranks: per-process statistics of this session (``images``, ``train_seconds`` ...).
        weights: ``best``/``last`` paths relative to the run directory (``None`` if absent).
        mirror: the store prefix the run is mirrored to, if any.

    Raises:
        InvalidInput: no epoch was recorded.
    """
    if not rows:
        raise InvalidInput("results.csv has no epochs: nothing to summarize")
    best = best_row(rows) or {}
    subset = subset_name(data)
    parsed = parse_subset_name(subset) if subset else None
    seconds = max((float(r.get("train_seconds", 0.0)) for r in ranks), default=0.0)
    images = sum(int(r.get("images", 0)) for r in ranks)
    peaks = [r["gpu_mem_peak_gb"] for r in ranks if r.get("gpu_mem_peak_gb") is not None]
    return {
        "model": model_name(model),
        "fraction": parsed[0] if parsed else None,
        "strategy": parsed[1] if parsed else None,
        "subset": subset,
        "subset_seed": subset_seed(data),
        "data": str(data),
        "seed": int(seed),
        "best_epoch": int(best["epoch"]) if best else None,
        "last_epoch": int(rows[-1]["epoch"]),
        "best_map5095": round(best[MAP5095], 5) if best else None,
        "best_map50": round(best[MAP50], 5) if best and MAP50 in best else None,
        "wall_time_s": training_seconds(rows),
        "images_per_s": round(images / seconds, 2) if seconds > 0 else None,
        "gpu_mem_peak_gb": max(peaks) if peaks else None,
        "config": _jsonable(config),
        "dataset_hash": dataset_sha256,
        "world_size": max(len(ranks), 1),
        "ranks": [dict(r) for r in ranks],
        "weights": dict(weights),
        "mirror": mirror,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
