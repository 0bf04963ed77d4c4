"""Render a bench report: a markdown comparison table and a latency-distribution plot::

    write_text("bench.md", markdown_table(report))
    latency_plot(report, "bench.png")

Both are derived from the JSON report only, so they can be re-rendered later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detpipe.io import write_bytes
from detpipe.markdown import table


def _device_line(report: dict[str, Any]) -> str:
    dev = report["device"]
    parts = [f"CPU {dev['cpu']['model']} ({dev['cpu']['cores_available']} cores)"]
    parts += [f"GPU {g['name']} (sm {g['compute_capability']}, driver {g['driver']})" for g in dev["gpu"]]
    jetson = dev.get("jetson")
    if jetson:
        mode = (jetson.get("power_mode") or {}).get("name", "?")
        parts.append(f"{jetson['model']}, power mode {mode}, clocks locked: {jetson.get('clocks_locked')}")
    versions = dev["versions"]
    parts.append(
        f"onnxruntime {versions['onnxruntime']}, torch {versions['torch']}, TensorRT {versions['tensorrt']}"
    )
    return "; ".join(parts)


def markdown_table(report: dict[str, Any]) -> str:
    """One row per (format, backend): infer-only and end-to-end latency, throughput, speedup."""
    s = report["settings"]
    speedup_stat = report.get("speedup_statistic", "mean")  # reports before issue 21 took means
    lines = [
        "# Latency benchmark",
        "",
        _device_line(report),
        "",
        f"batch {s['batch']}, threads {s['threads'] or 'default'}, "
        f"{s['schedule']['iters']} iterations after {s['schedule']['warmup_iters']} warm-up; "
        f"percentiles: {s['percentiles']}; reference: {report['reference']}",
        "",
    ]
    header = [
        "format", "backend", "infer p50 (ms)", "infer mean", "infer p99", "CV", "infer img/s", "e2e p50 (ms)",
        "e2e p99", "e2e img/s", f"speedup ({speedup_stat}, infer / e2e)", "W", "img/s/W",
    ]  # fmt: skip
    rows = []
    for r in report["results"]:
        if r["status"] != "ok":
            rows.append([r["format"], r["backend"], f"skipped: {r['reason']}", *[""] * (len(header) - 3)])
            continue
        i, e = r.get("infer"), r.get("e2e")
        sp = r.get("speedup_vs_reference", {})
        power = r.get("power") or {}
        cells = [
            r["format"],
            r["backend"],
            f"{i['p50_ms']:.2f}" if i else "",
            f"{i['mean_ms']:.2f}" if i else "",
            f"{i['p99_ms']:.2f}" if i else "",
            f"{i['cv']:.3f}" if i else "",
            f"{i['throughput_ips']:.1f}" if i else "",
            f"{e['p50_ms']:.2f}" if e else "",
            f"{e['p99_ms']:.2f}" if e else "",
            f"{e['throughput_ips']:.1f}" if e else "",
            " / ".join(f"{sp[m]:.2f}x" for m in ("infer", "e2e") if m in sp),
            f"{power['mean_power_w']:.1f}" if power.get("mean_power_w") else "",
            f"{power['images_per_s_per_w']:.1f}" if power.get("images_per_s_per_w") else "",
        ]
        rows.append(cells)
    lines += table(header, rows, align="ll" + "r" * (len(header) - 2))
    return "\n".join(lines) + "\n"


def latency_plot(report: dict[str, Any], out: str | Path) -> Path:
    """Box plots of the latency distribution per (format, backend), infer-only and end-to-end."""
    from matplotlib.figure import Figure

    from detpipe.plotting import png_bytes

    rows = [r for r in report["results"] if r["status"] == "ok"]
    modes = [m for m in ("infer", "e2e") if any(m in r.get("samples_ms", {}) for r in rows)]
    fig = Figure(figsize=(5 + 1.2 * len(rows), 4), layout="constrained")
    axes = fig.subplots(1, len(modes), squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        data = [r["samples_ms"][mode] for r in rows if mode in r["samples_ms"]]
        labels = [f"{r['format']}\n{r['backend']}" for r in rows if mode in r["samples_ms"]]
        ax.boxplot(data, whis=(1, 99), showfliers=True, flierprops={"markersize": 2})
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
        ax.set_ylabel("latency (ms)")
        ax.set_title({"infer": "inference only", "e2e": "end to end (decode..NMS)"}[mode])
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Latency per format, batch {report['settings']['batch']} (whiskers: p1..p99)")
    return write_bytes(out, png_bytes(fig))
