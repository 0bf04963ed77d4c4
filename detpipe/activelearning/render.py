"""The active-learning report as markdown, and its headline (what ``detpipe al report`` prints).

::

    text = render_markdown(report, "curves.png")
    for line in headline(report): print(line)
"""

from __future__ import annotations

from typing import Any

from detpipe.markdown import table
from detpipe.report.sections import format_stat


def _images(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def _signed(v: float | None) -> str:
    return "—" if v is None else f"{v:+.1f}"


def saving_text(entry: dict[str, Any]) -> str:
    """``+12.5 images (+13.9 %)``, ``>= +30.0`` when reached at the seed set, or not reached."""
    if entry["saving"] is None:
        return f"not reached (saving < {entry['bound']:+.1f})"
    prefix = "≥ " if entry["status"] == "at_start" else ""
    return f"{prefix}{entry['saving']:+.1f} images ({entry['saving_pct']:+.1f} %)"


def interval_text(entry: dict[str, Any]) -> str:
    """The bootstrap interval: ``[-10.0, +25.0]``, an end below every saving as ``not reached``."""
    b = entry["bootstrap"]

    def end(v: float | None) -> str:
        return "not reached" if v is None else f"{v:+.1f}"

    return f"[{end(b['low'])}, {end(b['high'])}] ({b['level']:.0%}, reached in {b['reached_share']:.0%})"


def verdict(entry: dict[str, Any]) -> str:
    """What the numbers allow one to say."""
    b = entry["bootstrap"]
    if len(entry["seeds"]) < 2:
        return "one seed: no uncertainty, no verdict"
    if b["low"] is not None and b["low"] > 0:
        return "fewer labels than random in every resample's central range"
    if b["high"] is None or b["high"] < 0:
        return "more labels than random in every resample's central range"
    return "the interval spans 0: no saving established"


def headline(report: dict[str, Any]) -> list[str]:
    """One line per strategy against the baseline (or why there is none)."""
    base = report["settings"]["baseline"]
    lines = []
    for strategy, entry in report["saving"].items():
        std = "—" if entry["seed_std"] is None else f"{entry['seed_std']:.1f}"
        lines.append(
            f"{strategy} vs {base}: {saving_text(entry)} to reach mAP50-95 {entry['target']:.3f}; "
            f"seed std {std}, bootstrap {interval_text(entry)} over {len(entry['seeds'])} seeds: "
            f"{verdict(entry)}"
        )
    return lines or list(report["notes"][:1])


def render_markdown(report: dict[str, Any], plot: str | None = None) -> str:
    """report.json's content as markdown."""
    st = report["settings"]
    how = "fine-tuned from the previous round" if st["finetune"] else "trained from scratch every round"
    lines = [
        "# Active-learning report",
        "",
        f"`{st['model']}` at {st['imgsz']} px, {how} ({', '.join(map(str, st['epochs']))} epochs); seed "
        f"set {st['seed_fraction']:g} % of the {st['annotated_images']} training images with annotations "
        f"(proportional draw), then {st['rounds']} rounds of {st['budget']} images; evaluated on "
        f"{st['val_images']} validation images; seeds {', '.join(map(str, st['seeds']))}. Runs: "
        f"`{report['source']['runs']}` ({report['source']['cells']} cells).",
        "",
        "## mAP50-95 against labeled images",
        "",
        "Mean ± sample std over seeds (n: seeds).",
        "",
    ]
    rows = []
    for strategy, data in report["strategies"].items():
        for p in data["points"]:
            rows.append([strategy, str(p["round"]), f"{p['labeled']['mean']:.0f}", format_stat(p["map50_95"]),
                         format_stat(p["map50"])])  # fmt: skip
    lines += table(["strategy", "round", "labeled images", "mAP50-95", "mAP50"], rows)
    if plot:
        lines += ["", f"![mAP50-95 against labeled images]({plot})"]
    lines += _saving_lines(report) + _law_lines(report)
    if report["notes"]:
        lines += ["", "## Notes", "", *[f"- {n}" for n in report["notes"]]]
    return "\n".join(lines) + "\n"


def _saving_lines(report: dict[str, Any]) -> list[str]:
    if not report["saving"]:
        return []
    base = report["settings"]["baseline"]
    first = next(iter(report["saving"].values()))
    lines = [
        "",
        f"## Label saving against {base}",
        "",
        f"Target: {base}'s final mAP50-95, {first['target']:.3f} (mean curve over seeds), which {base} "
        f"first reached at {first['baseline_images']:.1f} labeled images. A strategy's images are where "
        "its mean curve first reaches the target (interpolated between rounds); the saving is "
        f"{base}'s images minus the strategy's (positive: fewer labels). Per seed: the same on that "
        "seed's own pair of curves (the same seed set and round-0 model); the bootstrap resamples "
        "seeds with replacement.",
        "",
    ]
    rows = []
    for strategy, e in report["saving"].items():
        per_seed = ", ".join(f"{seed}: {_signed(s['saving'])}" for seed, s in e["per_seed"].items())
        std = "—" if e["seed_std"] is None else f"{e['seed_std']:.1f}"
        rows.append([strategy, _images(e["images"]), _images(e["baseline_images"]), saving_text(e), per_seed,
                     std, interval_text(e), verdict(e)])  # fmt: skip
    lines += table(["strategy", "images to target", f"{base}'s", "saving", "per seed", "seed std",
                    "bootstrap", "verdict"], rows)  # fmt: skip
    return lines


def _law_lines(report: dict[str, Any]) -> list[str]:
    law = report.get("power_law")
    if law is None:
        return []
    where = f"model `{law['model']}` of `{law['source']}`" if law.get("model") else "given"
    r2 = f", R² {law['r2']:.3f}" if law.get("r2") is not None else ""
    lines = [
        "",
        "## The sweep's power law",
        "",
        f"`mAP = {law['a']:.3f} - {law['b']:.3f} N^-{law['alpha']:.3f}` ({where}{r2}), N in percent of "
        f"{law['full_images']} images, drawn dashed over labeled images.",
        "",
    ]
    rows = [[s, f"{report['strategies'][s]['points'][-1]['labeled']['mean']:.0f}",
             format_stat(report["strategies"][s]["points"][-1]["map50_95"]), f"{v:.3f}"]
            for s, v in law["predicted_at_final"].items()]  # fmt: skip
    lines += table(["strategy", "final labeled images", "final mAP50-95", "power law there"], rows)
    if law.get("images_for_target") is not None:
        lines += ["", f"The power law reaches the target at {law['images_for_target']:.1f} images."]
    return lines
