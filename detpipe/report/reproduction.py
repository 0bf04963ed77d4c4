"""The reproduction gate: our full-data score per model against a published one.

The study reproduced the published YOLO12 COCO val2017 scores before trusting its subset
runs; a model reproduces when its 100 % run is within ``max_rel_diff`` percent of the
published mAP50-95 (the study's criterion: 3.5 %). ``references/yolo12_coco.csv`` ships
those figures with their source.

Reference CSV: header ``model,map5095``, one row per model, mAP50-95 as a fraction in
[0, 1]; blank lines and ``#`` lines are ignored.

Usage::

    reference = load_reference(YOLO12_COCO)
    entries, ok = compare(report["models"], reference, max_rel_diff=3.5)
    entries["yolo12n"]  # {"ours": 0.401, "reference": 0.406, "abs_diff": -0.005, ...}
"""

from __future__ import annotations

import csv
import math
from importlib import resources
from pathlib import Path
from typing import Any

from detpipe.errors import InvalidInput
from detpipe.report.defaults import MAX_REL_DIFF_PCT

YOLO12_COCO = Path(str(resources.files("detpipe.report") / "references" / "yolo12_coco.csv"))
"""Published YOLO12 COCO val2017 mAP50-95 (n, s, m, l, x), source in the file's header."""
COLUMNS = ("model", "map5095")
FULL = "100"


def load_reference(path: Path) -> dict[str, float]:
    """Read a reference table ``model,map5095`` into ``{model: map5095}``.

    Raises:
        InvalidInput: Unreadable file, wrong header, a bad or duplicate row, or no rows.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{path}: cannot read the reference table ({e.__class__.__name__})") from None
    lines = [
        (n, s) for n, s in enumerate(text.splitlines(), 1) if s.strip() and not s.lstrip().startswith("#")
    ]
    if not lines:
        raise InvalidInput(f"{path}: empty reference table (need a header {','.join(COLUMNS)})")
    rows = list(csv.reader(s for _, s in lines))
    header = tuple(c.strip() for c in rows[0])
    if header != COLUMNS:
        raise InvalidInput(f"{path}: header must be {','.join(COLUMNS)}, got {','.join(header)}")
    reference: dict[str, float] = {}
    for (lineno, _), row in zip(lines[1:], rows[1:], strict=True):
        where = f"{path}:{lineno}"
        if len(row) != 2 or not row[0].strip():
            raise InvalidInput(f"{where}: expected 'model,map5095'")
        model = row[0].strip()
        try:
            value = float(row[1])
        except ValueError:
            raise InvalidInput(f"{where}: 'map5095' is not a number: {row[1]!r}") from None
        if not (math.isfinite(value) and 0.0 < value <= 1.0):
            hint = " (write 40.6 % as 0.406)" if 1.0 < value <= 100.0 else ""
            raise InvalidInput(f"{where}: 'map5095' = {value:g} is outside (0, 1]{hint}")
        if model in reference:
            raise InvalidInput(f"{where}: duplicate row for {model}")
        reference[model] = value
    if not reference:
        raise InvalidInput(f"{path}: the reference table has a header but no rows")
    return reference


def compare(
    models: dict[str, Any], reference: dict[str, float], max_rel_diff: float = MAX_REL_DIFF_PCT
) -> tuple[dict[str, dict[str, Any]], bool]:
    """Compare each reported model's 100 % score with its reference.

    Args:
        models: report.json's ``models`` (``best_map5095["100"]["mean"]`` is ours).
        reference: ``{model: published mAP50-95}``.
        max_rel_diff: Largest allowed ``|ours - reference| / reference`` in percent.

    Returns:
        ``({model: {ours, reference, abs_diff, rel_diff_pct, ok}}, all ok)`` for the models in
        both; diffs are signed (ours - reference). A model without a 100 % run gets ``ours``
        None and ``ok`` False.

    Raises:
        InvalidInput: The reference names none of the reported models.
    """
    common = [m for m in models if m in reference]
    if not common:
        raise InvalidInput(
            f"the reference names none of the reported models ({', '.join(models)}; "
            f"reference: {', '.join(reference)})"
        )
    entries: dict[str, dict[str, Any]] = {}
    for name in common:
        ref = reference[name]
        cell = models[name]["best_map5095"].get(FULL)
        if cell is None:
            entries[name] = {
                "ours": None,
                "reference": ref,
                "abs_diff": None,
                "rel_diff_pct": None,
                "ok": False,
            }
            continue
        ours = cell["mean"]
        rel = 100.0 * (ours - ref) / ref
        entries[name] = {
            "ours": ours,
            "reference": ref,
            "abs_diff": round(ours - ref, 6),
            "rel_diff_pct": round(rel, 4),
            "ok": abs(rel) <= max_rel_diff,
        }
    return entries, all(e["ok"] for e in entries.values())
