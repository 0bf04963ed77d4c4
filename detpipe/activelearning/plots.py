"""``curves.png``: mAP50-95 against labeled images, one line per strategy (the report's conventions:
matplotlib's object API on Agg, :func:`detpipe.plotting.png_bytes`, tab10 colours).

Each strategy is its mean over seeds with a ± std band; the baseline is black; the random
baseline's final mAP (the label saving's target) is a dotted line; a sweep's power law, when
given, is dashed grey.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from detpipe.io import write_bytes
from detpipe.plotting import png_bytes

_DPI = 120


def plot_curves(report: dict[str, Any], path: Path) -> str:
    """Draw the curves; returns the file name."""
    fig = Figure(figsize=(8.0, 5.0), layout="constrained")
    ax = fig.add_subplot()
    baseline = report["settings"]["baseline"]
    cmap = colormaps["tab10"]
    others = [s for s in report["strategies"] if s != baseline]
    colors = {s: cmap(i % 10) for i, s in enumerate(others)} | {baseline: (0.0, 0.0, 0.0, 1.0)}
    xs_all: list[float] = []
    for strategy, data in report["strategies"].items():
        points = data["points"]
        x = np.array([p["labeled"]["mean"] for p in points])
        y = np.array([p["map50_95"]["mean"] for p in points])
        err = np.array([p["map50_95"]["std"] or 0.0 for p in points])
        xs_all += list(x)
        color = colors[strategy]
        label = f"{strategy} (n={len(data['seeds'])} seeds)"
        ax.plot(x, y, color=color, marker="o", linewidth=2 if strategy == baseline else 1.5, label=label)
        ax.fill_between(x, y - err, y + err, color=color, alpha=0.15, linewidth=0)
    target = next((s["target"] for s in report["saving"].values()), None)
    if target is not None:
        ax.axhline(target, color="grey", linestyle=":", linewidth=1, label=f"{baseline}'s final {target:.3f}")
    law = report.get("power_law")
    if law is not None and xs_all:
        grid = np.linspace(min(xs_all), max(xs_all), 200)
        n = 100.0 * grid / law["full_images"]
        ax.plot(grid, law["a"] - law["b"] * n ** (-law["alpha"]), color="grey", linestyle="--", linewidth=1,
                label=f"sweep power law (a={law['a']:.3f}, α={law['alpha']:.3f})")  # fmt: skip
    ax.set_xlabel("labeled images")
    ax.set_ylabel("mAP50-95 (val)")
    ax.set_title("Active learning: mAP50-95 vs labeled images (mean ± std over seeds)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    write_bytes(path, png_bytes(fig, dpi=_DPI))
    return path.name
