"""PNG plots of a subsets run, drawn from its ``summary.json`` content (matplotlib, Agg).

    write_plots(summary, out_dir)   # -> [images_objects.png, p_per_class.png, deviation.png]

- ``images_objects.png``: images and objects (instances) vs fraction per strategy, in two
  ranges like the study's figures (0-5 % and 10-100 %).
- ``p_per_class.png``: a grid with one panel per class: instances of the class in each
  proportional subset vs fraction, against the count its full-set share asks for.
- ``deviation.png``: mean (solid) and max (dotted) relative deviation of class shares, and
  mean size-mix deviation, vs fraction, per strategy.
- ``overlap.png`` (with draw seeds, from ``overlap.json``'s content): the mean image overlap
  between draws vs fraction (log x), one line per strategy with the range over the pairs of
  seeds, and two independent uniform draws' expectation dashed; linear and log y side by side.

Uses matplotlib's object API with its bundled font: no pyplot state, no font downloads.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator

from detpipe.io import write_bytes
from detpipe.plotting import png_bytes
from detpipe.subsets.config import PER_CLASS_STRATEGY, format_pct

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
    # fixed margins, not a layout engine: constrained layout draws the figure twice
    fig = Figure(figsize=(10, 6.5))
    axes = fig.subplots(2, 2)
    fig.subplots_adjust(left=0.085, right=0.985, bottom=0.075, top=0.9, wspace=0.22, hspace=0.4)
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


def _short(v: float) -> str:
    """A count as a short label: 0.93, 7, 25.7, 840, 3.1k, 26k, 1.2M."""
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if v >= div:
            q = v / div
            return f"{q:.1f}{unit}" if q < 10 else f"{q:.0f}{unit}"
    return f"{v:.3g}"


def _unit(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``v`` mapped onto [0, 1] from [lo, hi] (the middle when the range is empty)."""
    return (v - lo) / (hi - lo) if hi > lo else np.full_like(v, 0.5)


def plot_per_class(summary: dict[str, Any], path: Path, strategy: str = PER_CLASS_STRATEGY) -> Path | None:
    """One panel per class: its instances in each ``strategy`` subset vs fraction.

    All panels are drawn in one hidden Axes with a handful of collections (frames, lines,
    dots) instead of one Axes per class: 80 sets of log-scale ticks made this plot take
    longer than drawing every subset. Each panel has the fraction on a log x axis shared
    by all (its range under the grid, light gridlines at the decades) and its own y range,
    log when every value is positive, labelled at its top and bottom left.
    """
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
    fig = Figure(figsize=(1.7 * ncols + 0.4, 1.3 * nrows + 0.8))
    top = 1 - 0.6 / (1.3 * nrows + 0.8)
    ax = fig.add_axes((0.01, 0.035, 0.98, top - 0.035))
    ax.set_axis_off()
    ax.set_xlim(0, ncols)
    ax.set_ylim(-nrows, 0)
    left, right, bottom, height = 0.2, 0.95, 0.1, 0.62  # of each cell; the title goes above
    lx = np.log10(x)
    x_lo, x_hi = float(lx.min()), float(lx.max())
    decades = [d for d in range(math.floor(x_lo), math.ceil(x_hi) + 1) if x_lo < d < x_hi]
    frames, grid, lines, dots = [], [], [], []
    color = COLORS.get(strategy, "tab:blue")
    for c, name in enumerate(names):
        col, row = c % ncols, c // ncols
        x0, y0 = col + left, -row - 1 + bottom
        both = np.concatenate([inst[:, c], expected[:, c]])
        log_y = bool((both > 0).all())
        vals = np.log10(both) if log_y else both
        y_lo, y_hi = (float(vals.min()), float(vals.max())) if log_y else (0.0, float(max(both.max(), 1)))
        px = x0 + (right - left) * _unit(lx, x_lo, x_hi)
        fy = y0 + height * _unit(vals[len(x) :], y_lo, y_hi)
        iy = y0 + height * _unit(vals[: len(x)], y_lo, y_hi)
        frames.append([(x0, y0), (col + right, y0), (col + right, y0 + height), (x0, y0 + height), (x0, y0)])
        grid += [
            [
                (x0 + (right - left) * (d - x_lo) / (x_hi - x_lo), y0),
                (x0 + (right - left) * (d - x_lo) / (x_hi - x_lo), y0 + height),
            ]
            for d in decades
        ]
        lines.append(np.column_stack([px, fy]))
        dots.append(np.column_stack([px, iy]))
        ax.text(col + 0.5 * (left + right), y0 + height + 0.05, name, fontsize=7, ha="center", va="bottom")
        hi_label = _short(10**y_hi if log_y else y_hi)
        lo_label = _short(10**y_lo) if log_y else "0"
        ax.text(x0 - 0.02, y0 + height, hi_label, fontsize=5, ha="right", va="top")
        ax.text(x0 - 0.02, y0, lo_label + ("" if log_y else " lin"), fontsize=5, ha="right", va="bottom")
    ax.add_collection(LineCollection(grid, colors="0.9", linewidths=0.5))
    ax.add_collection(LineCollection(frames, colors="0.3", linewidths=0.6))
    ax.add_collection(LineCollection(lines, colors="0.6", linewidths=1))
    pts = np.concatenate(dots)
    ax.scatter(pts[:, 0], pts[:, 1], s=6, color=color, linewidths=0)
    fig.text(
        0.5,
        0.012,
        f"x (every panel): fraction of non-empty images, {format_pct(x.min())}-{format_pct(x.max())} %, "
        "log scale, gridlines at decades; y: instances, log scale where all values are positive "
        "(else linear from 0, marked 'lin'), range at the left",
        fontsize=6.5,
        ha="center",
        va="bottom",
    )
    fig.suptitle(
        f"'{strategy}' subsets: instances per class vs fraction (%)\n"
        "dots: in the subset; line: what the full set's share asks for",
        fontsize=9,
    )
    return _save(fig, path, dpi=90)


def plot_deviation(summary: dict[str, Any], path: Path, dpi: int = 110) -> Path:
    """Relative deviation of class shares (mean, max) and size-mix deviation vs fraction."""
    fig = Figure(figsize=(11, 4.2))  # fixed margins, as in plot_images_objects
    ax, ax2 = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.12, top=0.93, wspace=0.14)
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
        for a in (axis.xaxis, axis.yaxis):  # minor ticks at 2 and 5 only: 8 per decade cost 0.2 s
            a.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        axis.set_xlabel("fraction of non-empty images (%)")
        axis.set_title(title, fontsize=10)
        axis.grid(alpha=0.3, which="both")
        if axis.has_data():
            axis.legend(fontsize=8)
    return _save(fig, path, dpi=dpi)


def plot_overlap(table: dict[str, Any], path: Path, dpi: int = 110) -> Path:
    """Image overlap between draws vs fraction per strategy; the random expectation dashed."""
    fig = Figure(figsize=(11, 4.2))  # fixed margins, as in plot_images_objects
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.12, top=0.86, wspace=0.16)
    expected: dict[float, float] = {}
    for strategy in table["summary"]:
        rows = [r for r in table["pairs"] if r["strategy"] == strategy]
        x = np.array(sorted({float(r["pct"]) for r in rows}))
        per = [[r["overlap_pct"] for r in rows if float(r["pct"]) == v] for v in x]
        mean = np.array([np.mean(v) for v in per])
        lo, hi = np.array([min(v) for v in per]), np.array([max(v) for v in per])
        expected.update({float(r["pct"]): r["expected_random_pct"] for r in rows})
        color = COLORS.get(strategy)
        marker = STYLES.get(strategy, "o")[0]  # solid lines: the dashed one is the expectation
        for ax, floor in zip(axes, (-np.inf, 0.0), strict=True):
            ok = mean > floor  # the log panel leaves out pairs sharing no image
            ax.plot(x[ok], mean[ok], marker + "-", ms=3.5, color=color, label=f"{strategy} (mean)")
            band = (lo > floor) & ok
            if len(table["seeds"]) > 2 and band.any():
                ax.fill_between(x[band], lo[band], hi[band], color=color, alpha=0.15, linewidth=0)
    ex = np.array(sorted(expected))
    for ax, scale in zip(axes, ("linear", "log"), strict=True):
        ax.plot(ex, [expected[v] for v in ex], "--", color="0.2", lw=1, label="random expectation 100 n/N")
        ax.set_xscale("log")
        ax.set_yscale(scale)
        ax.set_xlabel("fraction of non-empty images (%)")
        ax.set_ylabel("images shared by two draws (%)")
        ax.set_title(f"{scale} y", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        if ax.has_data():
            ax.legend(fontsize=8)
    seeds = ", ".join(str(s) for s in table["seeds"])
    band = "; band: min-max over the pairs" if len(table["seeds"]) > 2 else ""
    fig.suptitle(f"Image overlap between independent subset draws (seeds {seeds}){band}", fontsize=10)
    return _save(fig, path, dpi=dpi)


PER_CLASS_PNG = "p_per_class.png"


def write_per_class(summary: dict[str, Any], out: Path) -> Path | None:
    """``p_per_class.png`` into ``out`` (None without ``p`` subsets); reads only the ``p`` rows."""
    return plot_per_class(summary, out / PER_CLASS_PNG)


def write_plots(
    summary: dict[str, Any],
    out: Path,
    overlap: dict[str, Any] | None = None,
    per_class: bool = True,
) -> list[Path]:
    """Write every plot of a run into ``out`` (``overlap.png`` with an overlap table); return their paths.

    With ``per_class=False``, ``p_per_class.png`` is the caller's (:func:`write_per_class`,
    drawn earlier): listed in its place when it is there, not drawn again.
    """
    paths = [plot_images_objects(summary, out / "images_objects.png")]
    drawn = write_per_class(summary, out) if per_class else out / PER_CLASS_PNG
    if drawn is not None and drawn.is_file():
        paths.append(drawn)
    paths.append(plot_deviation(summary, out / "deviation.png"))
    if overlap is not None:
        paths.append(plot_overlap(overlap, out / "overlap.png"))
    log.info("wrote %d plots", len(paths))
    return paths
