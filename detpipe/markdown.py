"""The one markdown table detpipe writes (report.md, analysis.md, model cards, bench.md, export.md).

Usage::

    lines = table(["model", "mAP"], [["yolo12n", "0.412"]])
    # ["| model | mAP |", "|---|--:|", "| yolo12n | 0.412 |"]
    lines = table(["format", "backend", "p50"], rows, align="llr")  # one letter per column
"""

from __future__ import annotations

from collections.abc import Sequence


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "r") -> list[str]:
    """A markdown table's lines.

    ``align``: ``"r"`` right-aligns every column but the first, ``"l"`` none; a longer string
    gives one letter (``l``/``r``) per column.
    """
    n = len(header)
    letters = align if len(align) > 1 else "l" + align * (n - 1)
    if len(letters) != n or set(letters) - {"l", "r"}:
        raise ValueError(f"align {align!r}: expected 'l', 'r' or one of them per column ({n})")
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("--:" if a == "r" else "---" for a in letters) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines
