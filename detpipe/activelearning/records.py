"""What each round of a cell records, and where the report finds it.

A cell files ``<runs>/<cell>/cell.json`` (its settings) and one ``<runs>/<cell>/round-<k>.json``
per round (``runs``: a directory or a store prefix, ``s3://detpipe/al/<experiment>``)::

    file_cell(cell_dir, "s3://detpipe/al/quick")       # -> "s3://detpipe/al/quick/uncertainty_s0"
    records = load_records("s3://detpipe/al/quick")    # every round of every cell, validated

A round record (:data:`SCHEMA`) holds ``strategy``, ``seed``, ``round`` (0: the seed set),
``labeled_images`` (what it trained on), ``map50_95`` / ``map50`` on the validation set and
what it cost. Nothing here is named ``train_summary.json``, so a sweep's report never takes an
active-learning run for a sweep cell, even under the same prefix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from detpipe.errors import InvalidInput
from detpipe.io import read_json

SCHEMA = "detpipe.activelearning.round/v1"
CELL = "cell.json"
ROUND_RE = re.compile(r"(?:^|/)round-(\d+)\.json$")
REQUIRED = {"strategy": str, "seed": int, "round": int, "labeled_images": int, "map50_95": float}


def round_name(round_index: int) -> str:
    """``round-<k>.json``."""
    return f"round-{round_index}.json"


def check_record(record: Any, where: str) -> dict[str, Any]:
    """``record`` if it is a round record (numbers as JSON gives them back), else InvalidInput."""
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise InvalidInput(f"{where}: not an active-learning round record (schema {SCHEMA})")
    for key, kind in REQUIRED.items():
        value = record.get(key)
        ok = isinstance(value, int | float) if kind is float else isinstance(value, kind)
        if not ok or isinstance(value, bool):
            raise InvalidInput(f"{where}: {key!r} is {value!r}, expected {kind.__name__}")
    return record


def file_cell(cell_dir: Path, runs: str) -> str:
    """Copy a finished cell's ``cell.json`` and round records under ``runs``; returns its URI."""
    from detpipe.store import open_store

    cell = read_json(cell_dir / CELL)
    name = str(cell["name"])
    store = open_store(runs)
    for path in sorted(cell_dir.glob("round-*.json")):
        store.put_file(f"{name}/{path.name}", path)
    store.put_bytes(f"{name}/{CELL}", _json_bytes(cell), content_type="application/json")
    return f"{store.uri}/{name}"


def _json_bytes(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, indent=2, sort_keys=True).encode("utf-8") + b"\n"


def load_records(runs: str | Path) -> list[dict[str, Any]]:
    """Every round record under ``runs`` (a directory or store prefix), sorted by cell and round.

    Raises:
        InvalidInput: nothing there, a malformed record, or a round filed twice for one cell.
    """
    text = str(runs)
    found: list[tuple[str, Any]] = []
    if "://" in text and not text.startswith("file://"):
        from detpipe.store import open_store

        store = open_store(text)
        for key in store.list(""):
            if ROUND_RE.search(key):
                found.append((f"{store.uri}/{key}", json.loads(store.get_bytes(key))))
    else:
        root = Path(text.removeprefix("file://"))
        if not root.is_dir():
            raise InvalidInput(f"--runs {runs}: no such directory")
        for path in sorted(root.rglob("round-*.json")):
            if ROUND_RE.search(path.as_posix()):
                found.append((str(path), read_json(path)))
    if not found:
        raise InvalidInput(f"--runs {runs}: no active-learning round records (round-<k>.json) in it")
    records, seen = [], {}
    for where, raw in found:
        record = check_record(raw, where)
        key = (record["strategy"], record["seed"], record.get("finetune", False), record["round"])
        if key in seen:
            raise InvalidInput(f"{where}: round {record['round']} of {record['strategy']} seed "
                               f"{record['seed']} is filed twice (also {seen[key]})")  # fmt: skip
        seen[key] = where
        records.append(record)
    return sorted(records, key=lambda r: (r["strategy"], r["seed"], r["round"]))
