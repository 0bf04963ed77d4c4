"""The one markdown table detpipe writes (report.md, analysis.md, model cards).

Usage::

    lines = table(["model", "mAP"], [["yolo12n", "0.412"]])
    # ["| model | mAP |", "|---|--:|", "| yolo12n | 0.412 |"]
"""

from __future__ import annotations

from collections.abc import Sequence


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "r") -> list[str]:
    """A markdown table's lines; ``align="r"`` right-aligns every column but the first, ``"l"`` none."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] + [f"--{':' if align == 'r' else '-'}"] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines
