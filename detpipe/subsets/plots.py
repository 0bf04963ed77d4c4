"""PNG plots of a subsets run, drawn from its ``summary.json`` content (matplotlib, Agg).

    write_plots(summary, out_dir)   # -> [images_objects.png, p_per_class.png, deviation.png]

- ``images_objects.png``: images and objects (instances) vs fraction per strategy, in two
  ranges like the study's figures (0-5 % and 10-100 %).
- ``p_per_class.png``: a grid with one panel per class: instances of the class in each
  proportional subset vs fraction, against the count its full-set share asks for.
- ``deviation.png``: mean (solid) and max (dotted) relative deviation of class shares, and
  mean size-mix deviation, vs fraction, per strategy.

Uses matplotlib's object API with its bundled font: no pyplot state, no font downloads.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from detpipe.io import write_bytes
from detpipe.plotting import png_bytes

log = logging.getLogger(__name__)

COLORS = {"p": "tab:blue", "random": "tab:orange", "topn": "tab:green"}
STYLES = {"p": "o-", "random": "s--", "topn": "^:"}  # distinct when lines overlap (image counts)
LOW_RANGE_MAX_PCT = 5.0  # the left panel of images_objects.png; the right one starts above it


def _series(summary: dict[str, Any], strategy: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [r for r in summary["subsets"] if r["strategy"] == strategy]
    x = np.array([float(r["pct"]) for r in rows])
    y = np.array([np.nan if r[key] is None else r[key] for r in rows], float)
    return x, y


def _strategies(summary: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(r["strategy"] for r in summary["subsets"]))


def _save(fig: Figure, path: Path, dpi: int) -> Path:
    return write_bytes(path, png_bytes(fig, dpi=dpi))


def plot_images_objects(summary: dict[str, Any], path: Path) -> Path:
    """Images and objects vs fraction per strategy, 0-5 % and 10-100 % side by side."""
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    axes = fig.subplots(2, 2)
    for row, (key, label) in enumerate([("images", "images"), ("instances", "objects (instances)")]):
        for col, low in enumerate([True, False]):
            ax = axes[row, col]
            for s in _strategies(summary):
                x, y = _series(summary, s, key)
                keep = x <= LOW_RANGE_MAX_PCT if low else x > LOW_RANGE_MAX_PCT
                if keep.any():
                    ax.plot(x[keep], y[keep], STYLES.get(s, "o-"), ms=3.5, color=COLORS.get(s), label=s)
            ax.set_xlabel("fraction of non-empty images (%)")
            ax.set_ylabel(label)
            ax.set_title(f"{label}, {'0-5 %' if low else '10-100 %'}", fontsize=10)
            ax.grid(alpha=0.3)
            if ax.has_data():
                ax.legend(fontsize=8)
    fig.suptitle(f"Subset sizes ({summary['full']['images']} non-empty images)")
    return _save(fig, path, dpi=110)


def plot_per_class(summary: dict[str, Any], path: Path, strategy: str = "p") -> Path | None:
    """One panel per class: its instances in each ``strategy`` subset vs fraction."""
    rows = [r for r in summary["subsets"] if r["strategy"] == strategy]
    if not rows:
        return None
    full = summary["full"]
    names = full["class_names"]
    share = np.array(full["class_instances"], float) / max(sum(full["class_instances"]), 1)
    x = np.array([float(r["pct"]) for r in rows])
    inst = np.array([r["class_instances"] for r in rows], float)  # (fractions, classes)
    expected = np.array([r["instances"] for r in rows], float)[:, None] * share[None, :]
    ncols = min(10, max(1, math.ceil(math.sqrt(len(names)))))
    nrows = math.ceil(len(names) / ncols)
    # a plain grid (no layout engine) and no minor ticks: 80 log-log panels stay fast to draw
    fig = Figure(figsize=(1.7 * ncols + 0.4, 1.3 * nrows + 0.8))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.03, top=1 - 0.6 / (1.3 * nrows + 0.8), hspace=0.45)
    for c, ax in enumerate(axes):
        if c >= len(names):
            ax.set_axis_off()
            continue
        ax.plot(x, expected[:, c], "-", color="0.6", lw=1)
        ax.plot(x, inst[:, c], "o", ms=2.2, color=COLORS.get(strategy, "tab:blue"))
        ax.set_xscale("log")
        if (inst[:, c] > 0).all() and (expected[:, c] > 0).all():
            ax.set_yscale("log")
        ax.minorticks_off()
        ax.set_title(names[c], fontsize=7, pad=2)
        ax.tick_params(labelsize=5, length=2, pad=1)
    fig.suptitle(
        f"'{strategy}' subsets: instances per class vs fraction (%)\n"
        "dots: in the subset; line: what the full set's share asks for",
        fontsize=9,
    )
    return _save(fig, path, dpi=90)


def plot_deviation(summary: dict[str, Any], path: Path, dpi: int = 110) -> Path:
    """Relative deviation of class shares (mean, max) and size-mix deviation vs fraction."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    for s in _strategies(summary):
        color = COLORS.get(s)
        x, mean = _series(summary, s, "mean_rel_deviation")
        _, mx = _series(summary, s, "max_rel_deviation")
        rows = [r for r in summary["subsets"] if r["strategy"] == s]
        size = np.array([r["size_mix_deviation"]["mean"] for r in rows], float)  # None -> nan
        for axis, y, style, label in [(ax, mean, "o-", f"{s} mean"), (ax, mx, ":", f"{s} max"),
                                      (ax2, size, "o-", s)]:  # fmt: skip
            ok = np.isfinite(y) & (y > 0)  # log axes: the 100 % subset deviates by 0
            if ok.any():
                axis.plot(x[ok], y[ok], style, ms=3.5, color=color, label=label)
    for axis, title in [
        (ax, "relative deviation of class instance shares"),
        (ax2, "size-mix deviation (small/medium/large), mean over classes"),
    ]:
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("fraction of non-empty images (%)")
        axis.set_title(title, fontsize=10)
        axis.grid(alpha=0.3, which="both")
        if axis.has_data():
            axis.legend(fontsize=8)
    return _save(fig, path, dpi=dpi)


def write_plots(summary: dict[str, Any], out: Path) -> list[Path]:
    """Write every plot of a run into ``out``; return their paths."""
    paths = [plot_images_objects(summary, out / "images_objects.png")]
    per_class = plot_per_class(summary, out / "p_per_class.png")
    if per_class is not None:
        paths.append(per_class)
    paths.append(plot_deviation(summary, out / "deviation.png"))
    log.info("wrote %d plots", len(paths))
    return paths
