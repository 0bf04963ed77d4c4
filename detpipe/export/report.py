"""Human-readable views of ``export_report.json``: a markdown table and an mAP bar chart::

    write_text("export_report.md", report_markdown(report))
    accuracy_plot(report, "accuracy.png")

Both are derived from the JSON report only, so they can be re-rendered later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detpipe.io import write_bytes
from detpipe.markdown import table


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _verdict(d: dict[str, Any]) -> str:
    if d.get("value") is None:
        return f"{'pass' if d['passed'] else 'FAIL'} (no result, {d.get('missing')})"
    if not d["passed"] and d["value"] < d.get("min_value", 0.0):
        return f"FAIL (below floor {_pct(d['min_value'])})"
    return "pass" if d["passed"] else f"FAIL (limit {d['max_drop_points']})"


def report_markdown(report: dict[str, Any]) -> str:
    """One row per format: status, file size, numeric check, mAP, delta to PyTorch, gate verdict."""
    acc = report.get("accuracy") or {}
    acc_formats = acc.get("formats") or {}
    verdicts = {d["format"]: d for d in (report.get("gate") or {}).get("decisions", [])}
    lines = [
        f"# Export report: {Path(report['weights']).name}",
        "",
        f"imgsz {report['imgsz'][0]}x{report['imgsz'][1]}, batch {report['batch']}"
        f"{' (dynamic)' if report['dynamic_batch'] else ''}",
        "",
    ]
    header = ["format", "status", "size (MB)", "max abs diff vs PyTorch", "mAP50-95", "mAP50"]
    header += ["Δ mAP50-95 (pts)", "gate"]
    rows = []
    if acc.get("evaluated"):
        base = acc["pytorch"]
        rows.append(["pytorch", "reference", "", "", _pct(base["mAP50-95"]), _pct(base["mAP50"]), "", ""])
    for fmt, entry in report["formats"].items():
        m = acc_formats.get(fmt, {})
        size = f"{entry['size_bytes'] / 1e6:.2f}" if "size_bytes" in entry else ""
        check = entry.get("numeric_check")
        diff = f"{check['max_abs_diff']:.2e}" if check else ""
        status = (
            entry["status"] if entry["status"] == "ok" else f"{entry['status']}: {entry.get('reason', '')}"
        )
        delta = f"{m['delta_mAP50-95_points']:+.2f}" if m else ""
        verdict = verdicts.get(fmt)
        gate = "" if verdict is None else _verdict(verdict)
        rows.append([fmt, status, size, diff, _pct(m.get("mAP50-95")), _pct(m.get("mAP50")), delta, gate])
    lines += table(header, rows, align="llrrrrrl")
    if not acc.get("evaluated"):
        lines += ["", f"Accuracy not evaluated: {acc.get('reason', 'no val set')}."]
    return "\n".join(lines) + "\n"


def accuracy_plot(report: dict[str, Any], out: str | Path) -> Path:
    """Bar chart of mAP50-95 and mAP50 per format, PyTorch first; written atomically as PNG."""
    from matplotlib.figure import Figure

    from detpipe.plotting import png_bytes

    acc = report["accuracy"]
    names = ["pytorch", *acc["formats"]]
    rows = [acc["pytorch"], *acc["formats"].values()]
    fig = Figure(figsize=(1.6 * len(names) + 2, 3.6), layout="constrained")
    ax = fig.add_subplot()
    x = range(len(names))
    for offset, metric in ((-0.2, "mAP50-95"), (0.2, "mAP50")):
        values = [100 * r[metric] for r in rows]
        bars = ax.bar([i + offset for i in x], values, width=0.4, label=metric)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(list(x), names)
    ax.set_ylabel("mAP (%)")
    ax.set_title(f"Accuracy per format on {acc['val_images']} val images")
    ax.legend(loc="lower right")
    return write_bytes(out, png_bytes(fig))
