"""PNG plots of the training-log analysis (matplotlib Agg via detpipe.plotting).

Per run ``<slug>_losses.png`` (train and val box/cls/dfl losses, spikes marked) and
``<slug>_metrics.png`` (precision, recall, mAP50, mAP50-95 with the epoch ranges as bands and
each range's mean as a step line, the stable epoch dotted); with several runs also
``compare_map.png`` (mAP50-95 per epoch, one line per run).

Usage::

    names = write_plots(runs, analysis, out_dir)   # -> ["a_losses.png", "a_metrics.png", ...]
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.figure import Figure

from detpipe.io import write_bytes
from detpipe.logs.runlog import LOSSES, METRICS, RunLog
from detpipe.plotting import png_bytes

_DPI = 110
_LABELS = {"precision": "precision", "recall": "recall", "map50": "mAP50", "map5095": "mAP50-95"}


def slug(name: str) -> str:
    """A run name as a file-name prefix (``runs/a b`` -> ``runs_a_b``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "run"


def _save(fig: Figure, path: Path) -> str:
    write_bytes(path, png_bytes(fig, dpi=_DPI))
    return path.name


def plot_losses(run: RunLog, entry: dict[str, Any], path: Path) -> str:
    """Train and val losses per epoch (two panels), spikes as red dots; returns the file name."""
    fig = Figure(figsize=(10.0, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    colors = colormaps["tab10"]
    for ax, split in zip(axes, ("train", "val"), strict=True):
        for i, column in enumerate(c for c in LOSSES if c.startswith(split)):
            values = run.column(column)
            if values is None:
                continue
            ax.plot(run.epochs, values, color=colors(i), label=column.split("/")[1])
            hits = entry["spikes"].get(column, [])
            if hits:
                ax.scatter(
                    [s["epoch"] for s in hits], [s["value"] for s in hits], color="red", zorder=3, s=18
                )
        ax.set_title(f"{split} losses")
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.suptitle(f"{run.name}: losses (red: spikes)")
    return _save(fig, path)


def plot_metrics(run: RunLog, entry: dict[str, Any], path: Path) -> str:
    """The four metrics per epoch over shaded epoch ranges with each range's mean; returns the name."""
    fig = Figure(figsize=(10.0, 7.0), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True).ravel()
    for ax, (name, column) in zip(axes, METRICS.items(), strict=True):
        values = run.column(column)
        ax.set_title(_LABELS[name])
        ax.grid(True, alpha=0.3)
        if values is None:
            continue
        for i, r in enumerate(entry["ranges"].get(name, [])):
            ax.axvspan(r["from"] - 0.5, r["to"] + 0.5, color="0.85" if i % 2 else "0.93", zorder=0)
            if r["mean"] is not None:
                ax.hlines(r["mean"], r["from"] - 0.5, r["to"] + 0.5, colors="tab:orange", linewidth=1.5)
        ax.plot(run.epochs, values, color="tab:blue", linewidth=1.2)
        if entry["stable_epoch"] is not None:
            ax.axvline(entry["stable_epoch"], color="tab:green", linestyle=":", linewidth=1.2)
    for ax in axes[2:]:
        ax.set_xlabel("epoch")
    fig.suptitle(f"{run.name}: metrics (bands: epoch ranges, orange: range mean, green: stable from)")
    return _save(fig, path)


def plot_compare(runs: list[RunLog], path: Path) -> str:
    """mAP50-95 per epoch of every run; returns the file name."""
    fig = Figure(figsize=(8.0, 5.0), layout="constrained")
    ax = fig.add_subplot()
    for run in runs:
        values = run.column(METRICS["map5095"])
        if values is not None:
            ax.plot(run.epochs, values, label=run.name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mAP50-95")
    ax.set_title("mAP50-95 per epoch")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return _save(fig, path)


def write_plots(runs: list[RunLog], analysis: dict[str, Any], out: Path) -> list[str]:
    """Write every plot into ``out``; returns the file names in order."""
    names = []
    for run in runs:
        entry = analysis["runs"][run.name]
        names.append(plot_losses(run, entry, out / f"{slug(run.name)}_losses.png"))
        names.append(plot_metrics(run, entry, out / f"{slug(run.name)}_metrics.png"))
    if len(runs) > 1:
        names.append(plot_compare(runs, out / "compare_map.png"))
    return names
