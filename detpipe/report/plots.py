"""PNG plots of the data-scaling report (matplotlib Agg, bundled fonts only).

* ``map_vs_size.png``: mAP50-95 vs fraction (log x), one line per model with seed std as
  error bars, the power-law fit dashed, the target mAP dotted;
* ``retention_vs_size.png``: retention (% of the reference score) vs fraction (log x);
* ``cliff.png``: the mAP lost at each adjacent step, grouped by step, one bar per model;
  each model's cliff is outlined.

Usage::

    names = write_plots(report, out_dir)   # -> ["map_vs_size.png", ...]
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from detpipe.io import write_bytes
from detpipe.plotting import png_bytes
from detpipe.report.collect import fraction_key

log = logging.getLogger(__name__)

_DPI = 120


def _figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=(8.0, 5.0), layout="constrained")
    return fig, fig.add_subplot()


def _colors(n: int) -> list[tuple[float, float, float, float]]:
    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _log_fraction_axis(ax: Axes, keys: list[str]) -> None:
    ax.set_xscale("log")
    ticks = [float(k) for k in keys]
    ax.set_xticks(ticks, keys)
    ax.minorticks_off()
    ax.set_xlabel("training-set fraction (%)")
    ax.grid(True, alpha=0.3)


def _save(fig: Figure, path: Path) -> str:
    write_bytes(path, png_bytes(fig, dpi=_DPI))
    return path.name


def plot_map(report: dict[str, Any], path: Path) -> str:
    """mAP50-95 vs size with the fitted curves; returns the file name."""
    fig, ax = _figure()
    models = report["models"]
    for color, (name, data) in zip(_colors(len(models)), models.items(), strict=True):
        cells = data["best_map5095"]
        x = np.array([float(k) for k in cells])
        y = np.array([c["mean"] for c in cells.values()])
        err = np.array([c["std"] or 0.0 for c in cells.values()])
        ax.errorbar(x, y, yerr=err, color=color, marker="o", capsize=3, label=name)
        fit = data["fit"]
        if fit["status"] == "ok":
            grid = np.geomspace(max(x.min(), fit["min_fraction"] or 0.0), max(x.max(), 100.0), 200)
            ax.plot(
                grid, fit["a"] - fit["b"] * grid ** (-fit["alpha"]), color=color, linestyle="--", linewidth=1
            )
    ax.axhline(
        report["settings"]["target"],
        color="grey",
        linestyle=":",
        linewidth=1,
        label=f"target {report['settings']['target']:g}",
    )
    _log_fraction_axis(ax, report["fractions"])
    ax.set_ylabel("best mAP50-95")
    ax.set_title("mAP50-95 vs training-set size (power-law fits dashed)")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_retention(report: dict[str, Any], path: Path) -> str:
    """Retention vs size; returns the file name."""
    fig, ax = _figure()
    models = report["models"]
    for color, (name, data) in zip(_colors(len(models)), models.items(), strict=True):
        if not data["retention"]:
            continue
        ref = data["retention_reference"]
        label = name if ref["full"] else f"{name} (vs {fraction_key(ref['fraction'])} %)"
        ax.plot(
            [float(k) for k in data["retention"]],
            list(data["retention"].values()),
            color=color,
            marker="o",
            label=label,
        )
    ax.axhline(100.0, color="grey", linestyle=":", linewidth=1)
    _log_fraction_axis(ax, report["fractions"])
    ax.set_ylabel("retention (% of the 100 % score)")
    ax.set_title("Retention vs training-set size")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_cliff(report: dict[str, Any], path: Path) -> str:
    """Adjacent-step drops grouped by step, cliffs outlined; returns the file name."""
    fig, ax = _figure()
    models = report["models"]
    labels: dict[str, float] = {}
    for data in models.values():
        for s in data["steps"]:
            labels.setdefault(f"{fraction_key(s['from'])}→{fraction_key(s['to'])}", s["from"])
    order = sorted(labels, key=lambda k: -labels[k])
    width = 0.8 / max(len(models), 1)
    for i, (color, (name, data)) in enumerate(zip(_colors(len(models)), models.items(), strict=True)):
        cliff = data["cliff"]
        for s in data["steps"]:
            label = f"{fraction_key(s['from'])}→{fraction_key(s['to'])}"
            is_cliff = cliff is not None and (s["from"], s["to"]) == (cliff["from"], cliff["to"])
            ax.bar(
                order.index(label) - 0.4 + width * (i + 0.5),
                s["drop"],
                width,
                color=color,
                edgecolor="black" if is_cliff else color,
                linewidth=2 if is_cliff else 0.5,
                label=name if s is data["steps"][0] else None,
            )
    ax.set_xticks(range(len(order)), [f"{k} %" for k in order])
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("step: upper → lower training-set fraction")
    ax.set_ylabel("mAP50-95 lost")
    ax.set_title("mAP50-95 lost at each step (each model's cliff outlined)")
    ax.grid(True, axis="y", alpha=0.3)
    if models:
        ax.legend(fontsize="small")
    return _save(fig, path)


def write_plots(report: dict[str, Any], out_dir: Path) -> list[str]:
    """Write the three PNGs into ``out_dir``; returns their file names."""
    out_dir = Path(out_dir)
    names = [
        plot_map(report, out_dir / "map_vs_size.png"),
        plot_retention(report, out_dir / "retention_vs_size.png"),
        plot_cliff(report, out_dir / "cliff.png"),
    ]
    log.info("plots: %s", ", ".join(names))
    return names
