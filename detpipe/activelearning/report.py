"""The active-learning report: curves per strategy, the label saving, the sweep's power law.

::

    report = write_report(ReportConfig(runs="runs/al", out=Path("runs/al-report"),
                                       sweep_report="runs/report/report.json"))
    report["saving"]["uncertainty"]["saving"]      # labeled images saved against random

It reads every round record under ``runs`` (:func:`~detpipe.activelearning.records.load_records`),
averages each strategy's rounds over seeds (mean ± sample std), computes each strategy's label
saving against the ``random`` baseline with its uncertainty across seeds
(:mod:`~detpipe.activelearning.stats`) and, given a sweep's power law (``sweep_report``: the
sweep report's ``report.json``, its ``models.<model>.fit``; or ``power_law``: ``(a, b, alpha)``),
overlays it: ``mAP(n) = a - b * (100 n / full_images) ** -alpha``, ``n`` labeled images, where
``full_images`` is the sweep's 100 % (its ``settings.full_images``, else the cells' own
training images with annotations: the sweep ran on the same data). The output directory
(replaced atomically) holds ``report.json``, ``report.md``, ``report.html`` (one
self-contained page) and ``curves.png``.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detpipe.activelearning.config import BASELINE
from detpipe.activelearning.records import load_records
from detpipe.activelearning.stats import LabelSaving, Saving, Stat, label_saving, mean_std
from detpipe.errors import InvalidInput
from detpipe.io import atomic_dir, read_json, write_json, write_text
from detpipe.report.fit import PowerLawFit

log = logging.getLogger(__name__)

SCHEMA = "detpipe.activelearning.report/v1"
AGREE = ("budget", "rounds", "seed_fraction", "imgsz", "annotated_images", "val_images", "finetune", "model")
"""What every cell of one report must share (else the curves are not comparable)."""


@dataclass(frozen=True)
class ReportConfig:
    """One ``detpipe al report``.

    Attributes:
        runs: the cells' records (a directory or store prefix).
        out: output directory.
        sweep_report: a data-scaling report (``report.json``, its directory, or a store URI of
            the file) whose power law is overlaid; None: none.
        sweep_model: the model of ``sweep_report`` (default: the cells' model, else its only one).
        power_law: ``(a, b, alpha)`` of a power law given directly (instead of ``sweep_report``).
        full_images: the images of the sweep's 100 % (default: module docstring).
        baseline: the strategy the others are measured against.
    """

    runs: str
    out: Path
    sweep_report: str | None = None
    sweep_model: str | None = None
    power_law: tuple[float, float, float] | None = None
    full_images: int | None = None
    baseline: str = BASELINE

    def __post_init__(self) -> None:
        if self.sweep_report and self.power_law:
            raise InvalidInput("give a sweep report or a power law, not both")
        if self.power_law is not None and len(self.power_law) != 3:
            raise InvalidInput(f"power law {list(self.power_law)}: expected [a, b, alpha]")
        if self.full_images is not None and self.full_images < 1:
            raise InvalidInput(f"--full-images must be >= 1, got {self.full_images}")


def _stat(s: Stat) -> dict[str, Any]:
    return {"mean": round(s.mean, 6), "std": None if s.std is None else round(s.std, 6), "n": s.n}


def _settings(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The settings all cells share; InvalidInput naming two cells that differ."""
    out: dict[str, Any] = {}
    for key in AGREE:
        seen: dict[Any, str] = {}
        for r in records:
            seen.setdefault(json.dumps(r.get(key)), r.get("cell", "?"))
        if len(seen) > 1:
            (a, ca), (b, cb) = list(seen.items())[:2]
            raise InvalidInput(f"the runs mix cells with different {key}: {a} ({ca}) and {b} ({cb}); "
                               "report them apart")  # fmt: skip
        out[key] = records[0].get(key)
    out["epochs"] = sorted({r["epochs"] for r in records if "epochs" in r})
    return out


def curves_by_strategy(
    records: list[dict[str, Any]], baseline: str = BASELINE
) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """strategy (the baseline first) -> seed -> that cell's rounds in order."""
    cells: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in sorted(records, key=lambda r: (r["strategy"], r["seed"], r["round"])):
        cells[r["strategy"]][r["seed"]].append(r)
    for strategy, by_seed in cells.items():
        for seed, rounds in by_seed.items():
            if [r["round"] for r in rounds] != list(range(len(rounds))):
                raise InvalidInput(f"{strategy} seed {seed}: rounds {[r['round'] for r in rounds]} "
                                   "filed, expected 0, 1, ... without gaps")  # fmt: skip
    return {s: dict(v) for s, v in sorted(cells.items(), key=lambda kv: (kv[0] != baseline, kv[0]))}


def _points(by_seed: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    length = max(len(v) for v in by_seed.values())
    points = []
    for k in range(length):
        at = [rounds[k] for rounds in by_seed.values() if len(rounds) > k]
        points.append({
            "round": k,
            "labeled": _stat(mean_std([r["labeled_images"] for r in at])),
            "map50_95": _stat(mean_std([r["map50_95"] for r in at])),
            "map50": _stat(mean_std([r.get("map50", 0.0) for r in at])),
            "seeds": [r["seed"] for r in at],
        })  # fmt: skip
    return points


def _curve(rounds: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    return [float(r["labeled_images"]) for r in rounds], [float(r["map50_95"]) for r in rounds]


def _saving_json(s: Saving) -> dict[str, Any]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    return {"target": round(s.target, 6), "baseline_images": r(s.baseline_images), "images": r(s.images),
            "status": s.status, "saving": r(s.saving), "saving_pct": r(s.saving_pct),
            "bound": r(s.bound)}  # fmt: skip


def _label_saving_json(ls: LabelSaving) -> dict[str, Any]:
    b = ls.bootstrap
    return {
        **_saving_json(ls.mean),
        "seeds": list(ls.seeds),
        "per_seed": {str(seed): _saving_json(s) for seed, s in ls.per_seed.items()},
        "seed_std": None if ls.seed_std is None else round(ls.seed_std, 3),
        "bootstrap": {
            "level": b.level,
            "low": _finite(b.low),
            "high": _finite(b.high),
            "reached_share": round(b.reached_share, 4),
            "resamples": b.resamples,
        },
    }


def _finite(v: float) -> float | None:
    """JSON has no -inf: None stands for 'not reached' at that end of the interval."""
    return round(v, 3) if v != float("-inf") else None


def load_power_law(cfg: ReportConfig, model: str) -> dict[str, Any] | None:
    """The power law to overlay: from ``cfg.power_law`` or the sweep report's fit of the model."""
    if cfg.power_law is not None:
        a, b, alpha = cfg.power_law
        return {"a": a, "b": b, "alpha": alpha, "source": "given", "model": None, "full_images": None}
    if not cfg.sweep_report:
        return None
    doc = _read_sweep_report(cfg.sweep_report)
    models = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(models, dict) or not models:
        raise InvalidInput(f"--sweep-report {cfg.sweep_report}: not a data-scaling report (no models)")
    name = cfg.sweep_model or (model if model in models else next(iter(models)) if len(models) == 1 else None)
    if name not in models:
        raise InvalidInput(f"--sweep-report {cfg.sweep_report}: no model {name or model!r}; it has "
                           f"{', '.join(models)} (choose with --sweep-model)")  # fmt: skip
    fit = models[name].get("fit") or {}
    if fit.get("status") != "ok":
        raise InvalidInput(f"--sweep-report {cfg.sweep_report}: {name} has no power-law fit "
                           f"({fit.get('status')}: {fit.get('reason')})")  # fmt: skip
    return {"a": fit["a"], "b": fit["b"], "alpha": fit["alpha"], "r2": fit.get("r2"),
            "min_fraction": fit.get("min_fraction"), "source": cfg.sweep_report, "model": name,
            "full_images": (doc.get("settings") or {}).get("full_images")}  # fmt: skip


def _read_sweep_report(source: str) -> Any:
    if "://" in source and not source.startswith("file://"):
        from detpipe.store import open_store

        parent, _, name = source.rstrip("/").rpartition("/")
        key = name if name.endswith(".json") else f"{name}/report.json"
        return json.loads(open_store(parent).get_bytes(key))
    path = Path(source.removeprefix("file://"))
    return read_json(path / "report.json" if path.is_dir() else path)


def _overlay(
    law: dict[str, Any], full: int, saving: dict[str, Any], final: dict[str, float]
) -> dict[str, Any]:
    """The law in labeled images: what it predicts at each strategy's final count, and for the target."""
    fit = PowerLawFit(a=law["a"], b=law["b"], alpha=law["alpha"], rmse=float("nan"), r2=None, points=0)
    out = {**law, "full_images": full}
    out["predicted_at_final"] = {s: round(float(fit.predict(100.0 * n / full)), 6) for s, n in final.items()}
    target = next((v["target"] for v in saving.values()), None)
    needed = fit.required_n(target) if target is not None else None
    out["images_for_target"] = None if needed is None else round(needed / 100.0 * full, 1)
    return out


def build_report(cfg: ReportConfig) -> dict[str, Any]:
    """Read the records and compute everything; returns report.json's content (writes nothing).

    Raises:
        InvalidInput: no records, cells that do not agree, a bad sweep report.
    """
    records = load_records(cfg.runs)
    settings = _settings(records)
    cells = curves_by_strategy(records, cfg.baseline)
    notes: list[str] = []
    strategies = {s: {"seeds": sorted(by_seed), "points": _points(by_seed)} for s, by_seed in cells.items()}
    savings: dict[str, Any] = {}
    if cfg.baseline not in cells:
        notes.append(f"no {cfg.baseline} cells: no baseline, no label saving")
    else:
        base = {seed: _curve(rounds) for seed, rounds in cells[cfg.baseline].items()}
        for s, by_seed in cells.items():
            if s == cfg.baseline:
                continue
            mine = {seed: _curve(rounds) for seed, rounds in by_seed.items()}
            if not set(mine) & set(base):
                notes.append(f"{s}: no seed in common with {cfg.baseline}: no label saving")
                continue
            savings[s] = _label_saving_json(label_saving(mine, base))
    lengths = {len(v) for by_seed in cells.values() for v in by_seed.values()}
    if len(lengths) > 1:
        notes.append(f"cells ran different numbers of rounds ({sorted(lengths)}): a pool ran out, or a "
                     "cell is missing rounds; means use the rounds each seed has")  # fmt: skip
    seeds = sorted({r["seed"] for r in records})
    if len(seeds) < 3:
        notes.append(f"{len(seeds)} seed(s): the std and the bootstrap interval are rough at best")
    law = load_power_law(cfg, str(settings["model"]))
    power_law = None
    if law is not None:
        full = cfg.full_images or law.get("full_images") or int(settings["annotated_images"])
        final = {s: v["points"][-1]["labeled"]["mean"] for s, v in strategies.items()}
        power_law = _overlay(law, int(full), savings, final)
    return {
        "schema": SCHEMA,
        "source": {"runs": str(cfg.runs), "records": len(records), "cells": sum(map(len, cells.values()))},
        "settings": {**settings, "baseline": cfg.baseline, "seeds": seeds},
        "strategies": strategies,
        "saving": savings,
        "power_law": power_law,
        "notes": notes,
    }


def write_report(cfg: ReportConfig) -> dict[str, Any]:
    """Build the report and write it to ``cfg.out`` atomically; returns report.json's content."""
    report = build_report(cfg)
    from detpipe.activelearning.plots import plot_curves
    from detpipe.activelearning.render import render_markdown
    from detpipe.report.html import write_page

    with atomic_dir(cfg.out) as tmp:
        plot = plot_curves(report, tmp / "curves.png")
        write_json(tmp / "report.json", report)
        write_text(tmp / "report.md", render_markdown(report, plot))
        write_page(tmp / "report.md", tmp / "report.html")
    log.info("active-learning report written to %s", cfg.out)
    return report
