"""PNG plots of the data-scaling report (matplotlib Agg, bundled fonts only).

* ``map_vs_size.png``: mAP50-95 vs fraction (log x), one line per model with seed std as
  error bars, the power-law fit dashed, the target mAP dotted; the marker says the regime
  (square saturated, circle steep, cross collapsed);
* ``retention_vs_size.png``: retention (% of the reference score) vs fraction (log x);
* ``cliff.png``: the mAP lost at each adjacent step, grouped by step, one bar per model;
  each model's cliff is outlined;
* ``strategies.png`` / ``policies.png`` (when >= 2 were run): mAP50-95 vs fraction (log x),
  colour per model, line style per subset strategy / epochs policy;
* ``variance.png`` (when some fraction has runs over several seeds or draws): std of mAP50-95
  across subset draws vs across training seeds per fraction, grouped bars, a panel per model.

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
_REGIME_MARKERS = {"saturated": "s", "steep": "o", "collapsed": "X"}
_LINE_STYLES = ["-", "--", ":", "-."]
_AXIS_MARKERS = ["o", "s", "^", "D"]


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
        regimes = data.get("regimes") or {}
        ax.errorbar(x, y, yerr=err, color=color, marker=None if regimes else "o", capsize=3, label=name)
        for regime, marker in _REGIME_MARKERS.items():
            at = [i for i, k in enumerate(cells) if regimes.get(k) == regime]
            if at:
                ax.scatter(x[at], y[at], color=color, marker=marker, s=45, zorder=3)
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
    shown = {r for d in models.values() for r in (d.get("regimes") or {}).values()}
    for regime, marker in _REGIME_MARKERS.items():
        if regime in shown:
            ax.scatter([], [], color="black", marker=marker, label=regime)
    ax.set_ylabel("best mAP50-95")
    ax.set_title("mAP50-95 vs training-set size (power-law fits dashed)")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_axis(comparison: dict[str, Any], what: str, path: Path) -> str:
    """mAP50-95 vs size per model (colour) and value of the compared axis (line style)."""
    fig, ax = _figure()
    models = comparison["models"]
    styles = {v: i for i, v in enumerate(comparison["present"])}
    keys: set[str] = set()
    for color, (name, by_pct) in zip(_colors(len(models)), models.items(), strict=True):
        for value, i in styles.items():
            points = [(k, c[value]) for k, c in by_pct.items() if value in c]
            if not points:
                continue
            keys.update(k for k, _ in points)
            ax.errorbar(
                [float(k) for k, _ in points],
                [c["mean"] for _, c in points],
                yerr=[c["std"] or 0.0 for _, c in points],
                color=color,
                linestyle=_LINE_STYLES[i % len(_LINE_STYLES)],
                marker=_AXIS_MARKERS[i % len(_AXIS_MARKERS)],
                capsize=3,
                label=f"{name} {value}",
            )
    _log_fraction_axis(ax, sorted(keys, key=float))
    ax.set_ylabel("best mAP50-95")
    ax.set_title(f"mAP50-95 vs training-set size per {what}")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_variance(report: dict[str, Any], path: Path) -> str:
    """Std across draws vs across seeds per fraction, a panel per model; returns the file name."""
    variance = {
        m: v
        for m, v in report["variance"].items()
        if any(e["across_seeds"] or e["across_draws"] for e in v.values())
    }
    fig = Figure(figsize=(max(7.0, 4.0 * len(variance)), 4.5), layout="constrained")
    axes = fig.subplots(1, len(variance), squeeze=False)[0]
    for ax, (name, by_pct) in zip(axes, variance.items(), strict=True):
        keys = list(by_pct)
        at = np.arange(len(keys))
        for offset, (source, label, color) in zip(
            (-0.2, 0.2),
            (
                ("across_draws", "across subset draws", "tab:orange"),
                ("across_seeds", "across seeds", "tab:blue"),
            ),
            strict=True,
        ):
            heights = [(by_pct[k][source] or {}).get("std", np.nan) for k in keys]
            ax.bar(at + offset, heights, 0.4, color=color, label=label)
        ax.set_xticks(at, [f"{fraction_key(float(k))} %" for k in keys])
        ax.set_xlabel("training-set fraction")
        ax.set_ylabel("std of best mAP50-95")
        ax.set_title(name)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("std of mAP50-95: across subset draws vs across training seeds")
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
    if any(data["steps"] for data in models.values()):
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
    if len(report["strategies"]["present"]) >= 2:
        names.append(plot_axis(report["strategies"], "subset strategy", out_dir / "strategies.png"))
    if len(report["policies"]["present"]) >= 2:
        names.append(plot_axis(report["policies"], "epochs policy", out_dir / "policies.png"))
    if any(e["across_seeds"] or e["across_draws"] for v in report["variance"].values() for e in v.values()):
        names.append(plot_variance(report, out_dir / "variance.png"))
    log.info("plots: %s", ", ".join(names))
    return names
