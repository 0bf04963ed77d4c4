"""The model card of a release (``MODEL_CARD.md``): what the model is, what it was trained on,
how well each exported format does, whether it passed the gate, how fast it runs where.

Built by publish from the run's own outputs, before the manifest is written, so the card is one
of the release's hashed (and signed) objects; ``detpipe serve`` answers it at
``GET /v1/models/{name}/card``::

    card = CardInputs(name="yolov8n-coco", version="1.0.0", train_summary=read_json(...),
                      lineage=lineage.to_dict(), files={"weights.pt": Path(...)}, ...)
    text = render_card(card)

Sections: data and subset, training configuration, metrics per exported format (the PyTorch
reference and each format on the same val set), the accuracy gate's decisions, benchmark p50
per device class, and lineage (subset list and training data hashes, parent weights, code
version, the sha256 of every other file of the release). A section whose input the run did not
produce says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detpipe.markdown import table

TRAINING_KEYS = (
    "model",
    "pretrained",
    "epochs",
    "imgsz",
    "batch",
    "optimizer",
    "lr0",
    "lrf",
    "momentum",
    "weight_decay",
    "warmup_epochs",
    "mosaic",
    "close_mosaic",
    "seed",
    "deterministic",
    "amp",
    "device",
)
"""The ultralytics arguments the card's training table shows (the full set follows it)."""

STRATEGIES = {"p": "proportional (class-balanced)", "random": "uniform random", "topn": "top-N"}


@dataclass(frozen=True)
class CardInputs:
    """Everything a model card is made of (plain JSON documents as the stages wrote them).

    Attributes:
        name, version: the release.
        train_summary: ``train_summary.json``.
        lineage: the release manifest's lineage (:meth:`detpipe.store.Lineage.to_dict`).
        files: release path -> local file, with their sha256 (the card's own entry excluded).
        data_source: where the data came from (a COCO root, ``synthetic``); None: not known.
        evaluation: ``metrics.json`` of the evaluate stage; None: not evaluated.
        export_report: ``export_report.json``; None: nothing exported.
        gate: the gate's decisions (:meth:`GateDecision.as_dict`) and settings, as
            :func:`gate_section_input` returns them; None: no gate ran.
        bench: ``bench/<device-class>.json`` contents by device class; empty: no benchmark.
    """

    name: str
    version: str
    train_summary: Mapping[str, Any]
    lineage: Mapping[str, Any]
    files: Mapping[str, str] = field(default_factory=dict)
    data_source: str | None = None
    evaluation: Mapping[str, Any] | None = None
    export_report: Mapping[str, Any] | None = None
    gate: Mapping[str, Any] | None = None
    bench: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def _v(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _map(value: Any) -> str:
    return "—" if value is None or value < 0 else f"{value:.3f}"


def _points(value: Any) -> str:
    return "—" if value is None else f"{value:+.2f}"


def _data_lines(card: CardInputs) -> list[str]:
    s = card.train_summary
    subset = s.get("subset") or card.lineage.get("dataset_subset")
    fraction = s.get("fraction")
    strategy = s.get("strategy")
    share = "—"
    if fraction is not None:
        share = f"{fraction:g} % of the train split"
        if strategy:
            share += f", {STRATEGIES.get(strategy, strategy)}"
        if s.get("subset_seed") is not None:
            share += f", draw {s['subset_seed']}"
    images = sum(r.get("images") or 0 for r in s.get("ranks") or []) or None
    rows = [
        ["dataset", _v(card.data_source)],
        ["subset", f"`{subset}`" if subset else "—"],
        ["share", share],
        ["training images (seen per epoch)", _v(images)],
    ]
    if card.evaluation is not None:
        c = card.evaluation["counts"]
        rows.append(
            ["val set", f"{c['images']} images, {c['instances']} instances, {c['categories']} classes"]
        )
    classes = (card.export_report or {}).get("classes") or {
        str(i): r["name"] for i, r in enumerate((card.evaluation or {}).get("per_class", []))
    }
    if classes:
        rows.append(
            ["classes", ", ".join(_v(n) for _, n in sorted(classes.items(), key=lambda kv: int(kv[0])))]
        )
    return ["## Data", "", *table(["item", "value"], rows, align="l")]


def _training_lines(card: CardInputs) -> list[str]:
    s = card.train_summary
    config = dict(s.get("config") or {})
    rows = [[k, _v(config[k])] for k in TRAINING_KEYS if k in config]
    rows += [
        ["processes (world size)", _v(s.get("world_size"))],
        ["best epoch / last epoch", f"{_v(s.get('best_epoch'))} / {_v(s.get('last_epoch'))}"],
        ["best mAP50-95 (training val)", _map(s.get("best_map5095"))],
        ["training time", "—" if s.get("wall_time_s") is None else f"{s['wall_time_s']:.1f} s"],
    ]
    out = ["## Training configuration", "", *table(["setting", "value"], rows, align="l")]
    if config:
        out += [
            "",
            "Every argument of the run:",
            "",
            "```json",
            json.dumps(config, indent=1, sort_keys=True, default=str),
            "```",
        ]
    return out


def _metrics_lines(card: CardInputs) -> list[str]:
    out = ["## Metrics per format", ""]
    report = card.export_report or {}
    accuracy = report.get("accuracy") or {}
    if accuracy.get("evaluated"):
        formats = report.get("formats") or {}
        rows = [["pytorch (weights.pt)", "fp32", *(_map(accuracy["pytorch"].get(k)) for k in _MAPS), "—"]]
        for fmt, m in accuracy["formats"].items():
            precision = (formats.get(fmt) or {}).get("precision", "—")
            rows.append([fmt, precision, *(_map(m.get(k)) for k in _MAPS), _points(_delta(m))])
        header = ["format", "precision", "mAP50-95", "mAP50", "mAP75", "AR100", "Δ mAP50-95 (points)"]
        out += [
            f"Each format on the same {accuracy.get('val_images', '?')} val images with the same evaluator "
            f"({_v(accuracy.get('evaluator'))}).",
            "",
            *table(header, rows),
        ]
        skipped = [
            f"{f} ({e.get('reason') or e.get('status')})"
            for f, e in formats.items()
            if e.get("status") != "ok"
        ]
        if skipped:
            out += ["", f"Not built: {'; '.join(skipped)}."]
    else:
        out.append(f"Exported formats were not evaluated ({_v(accuracy.get('reason', 'no export'))}).")
    if card.evaluation is not None:
        e = card.evaluation
        out += [
            "",
            f"COCO evaluation of `weights.pt` (evaluate step): mAP50-95 {_map(e['map50_95'])}, "
            f"mAP50 {_map(e['map50'])}, mAP75 {_map(e['map75'])}, AR100 {_map(e['ar100'])}.",
            "",
        ]
        rows = [
            [_v(r["name"]), str(r["instances"]), _map(r["ap50_95"]), _map(r["ap50"])] for r in e["per_class"]
        ]
        out += table(["class", "instances", "AP50-95", "AP50"], rows)
    return out


_MAPS = ("mAP50-95", "mAP50", "mAP75", "AR100")


def _delta(m: Mapping[str, Any]) -> float | None:
    value = m.get("delta_mAP50-95_points")
    return None if value is None else float(value)


def _gate_lines(card: CardInputs) -> list[str]:
    out = ["## Accuracy gate", ""]
    gate = card.gate
    if gate is None:
        return [*out, "No accuracy gate ran for this release."]
    decisions: Sequence[Mapping[str, Any]] = gate["decisions"]
    verdict = "passed" if all(d["passed"] for d in decisions) else "NOT passed"
    out.append(
        f"Every format against the PyTorch reference on {gate['metric']}: at most the limit lost, at least "
        f"the floor of {100 * gate['min_map']:.2f} points scored{_missing_rule(gate)}. "
        f"Verdict: **{verdict}**{'' if gate.get('enforced', True) else ' (recorded, not enforced)'}."
    )
    rows = []
    for d in decisions:
        value = "—" if d["value"] is None else f"{100 * d['value']:.2f}"
        drop = "—" if d["drop_points"] is None else f"{d['drop_points']:.2f}"
        result = "pass" if d["passed"] else "FAIL"
        if d.get("missing"):
            result += f" (missing: {_v(d['missing'])})"
        rows.append([d["format"], value, drop, f"{d['max_drop_points']:.2f}", result])
    header = ["format", f"{gate['metric']} (points)", "drop (points)", "limit (points)", "result"]
    return [*out, "", *table(header, rows, align="l")]


def _missing_rule(gate: Mapping[str, Any]) -> str:
    return "; a requested format without a result passes" if gate.get("allow_missing") else ""


def _device_name(report: Mapping[str, Any]) -> str:
    device = report.get("device") or {}
    gpus = device.get("gpu") or []
    if any(r.get("ran_on", {}).get("device", "cpu") != "cpu" for r in report.get("results", [])) and gpus:
        return str(gpus[0].get("name"))
    jetson = device.get("jetson") or {}
    return str(jetson.get("model") or (device.get("cpu") or {}).get("model") or "?")


def _bench_lines(card: CardInputs) -> list[str]:
    out = ["## Benchmark (p50 latency per device)", ""]
    if not card.bench:
        return [*out, "Not benchmarked."]
    out.append(
        "Median latency of one model call (infer) and of decode + preprocess + infer + NMS (end to end), "
        "filed under the device class each result ran on (`bench/<device-class>.json`)."
    )
    rows = []
    for cls, report in sorted(card.bench.items()):
        for r in report.get("results", []):
            if r.get("status") != "ok":
                rows.append([cls, r.get("format", "?"), r.get("backend", "?"), "—", "—", "—", "—"])
                continue
            e2e = r.get("e2e") or {}
            rows.append(
                [
                    f"`{cls}` ({_device_name(report)})",
                    r["format"],
                    r["backend"],
                    str(r.get("batch", "—")),
                    f"{r['infer']['p50_ms']:.2f}",
                    "—" if not e2e else f"{e2e['p50_ms']:.2f}",
                    "—" if not e2e else f"{e2e['throughput_ips']:.1f}",
                ]
            )
    header = ["device", "format", "backend", "batch", "infer p50 (ms)", "e2e p50 (ms)", "e2e images/s"]
    return [*out, "", *table(header, rows, align="l")]


def _lineage_lines(card: CardInputs) -> list[str]:
    lin, s = card.lineage, card.train_summary
    rows = [
        ["subset list", f"`{_v(lin.get('dataset_subset'))}` sha256 `{_v(lin.get('dataset_subset_sha256'))}`"],
        ["training data (images + labels)", f"sha256 `{_v(s.get('dataset_hash'))}`"],
        ["parent weights", _v(lin.get("parent_weights"))],
        ["code version", _v(lin.get("code_version"))],
    ]
    rows += [[f"`{path}`", f"sha256 `{digest}`"] for path, digest in sorted(card.files.items())]
    return [
        "## Lineage",
        "",
        "The release's `manifest.json` lists every file (this card included) with its sha256; "
        "`manifest.sig` signs it.",
        "",
        *table(["what", "hash / value"], rows, align="l"),
    ]


def render_card(card: CardInputs) -> str:
    """The model card's markdown (see the module docstring for its sections)."""
    s = card.train_summary
    model = s.get("model") or card.lineage.get("parent_weights") or "a YOLO model"
    coco = (card.evaluation or {}).get("map50_95")
    score = "" if coco is None else f"; COCO mAP50-95 {_map(coco)} on its val set"
    out = [
        f"# Model card: {card.name} {card.version}",
        "",
        f"`{model}` object detector trained by detpipe on {_v(card.data_source or 'the data below')}{score}.",
        "",
    ]
    for section in (_data_lines, _training_lines, _metrics_lines, _gate_lines, _bench_lines, _lineage_lines):
        out += [*section(card), ""]
    return "\n".join(out).rstrip() + "\n"


def gate_section_input(
    decisions: Sequence[Mapping[str, Any]], metric: str, min_map: float, allow_missing: bool, enforced: bool
) -> dict[str, Any]:
    """The ``gate`` entry of :class:`CardInputs`: decisions (as dicts) and the settings that made them."""
    return {
        "decisions": [dict(d) for d in decisions],
        "metric": metric,
        "min_map": min_map,
        "allow_missing": allow_missing,
        "enforced": enforced,
    }


def write_card(card: CardInputs, out: Path) -> Path:
    """Write :func:`render_card` to ``out`` atomically."""
    from detpipe.io import write_text

    return write_text(out, render_card(card))
