"""``detpipe recommend``: a training and deployment plan from the guide's rules.

Usage::

    from detpipe.recommend.stage import RecommendConfig, write_recommendation

    rec = write_recommendation(RecommendConfig(platform="orin-nx", fps=30, sensor="rgb",
                                               classes=5, images=8000, out=Path("runs/rec")))
    rec["model"], rec["imgsz"], rec["epochs"], rec["augmentation"]["mixup"]

``out`` gets ``recommendation.json`` and ``hyp.yaml`` (the ultralytics hyperparameters, for
``detpipe train --config`` or the pipelines' ``train_overrides``), replaced atomically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from detpipe.errors import InvalidInput
from detpipe.io import atomic_dir, read_json, write_json, write_text
from detpipe.recommend import rules
from detpipe.recommend.dataset import DatasetStats, measure
from detpipe.recommend.platforms import FAMILIES, SCALES, ModelSpec, Platform, estimate_fps, get_platform
from detpipe.report.fit import PowerLawFit

SCHEMA = "detpipe.recommend/v1"
SENSORS = ("rgb", "thermal")
HYP_KEYS = ("epochs", "patience", "imgsz", "lr0")
"""recommendation.json keys that go into hyp.yaml (with the augmentation)."""


@dataclass(frozen=True)
class RecommendConfig:
    """The deployment question.

    Attributes:
        platform: A :data:`~detpipe.recommend.platforms.PLATFORMS` name.
        fps: Frames per second the engine must sustain (batch 1).
        sensor: ``rgb`` or ``thermal``.
        out: Output directory.
        classes: Number of classes (or measured from ``coco``).
        images: Training images available (or measured from ``coco``).
        coco: A COCO annotation file to measure classes, images, imbalance, small share from.
        small_share: Share of small objects in [0, 1] (overrides the measured one).
        map_budget: mAP50-95 points the deployment may lose to quantization (the export
            gate's limits decide FP16/INT8: detpipe.export.gate.DEFAULT_MAX_DROP).
        report: A sweep's report.json: images needed for ``target_map`` from its power-law fit.
        target_map: mAP50-95 to reach (default: the report's own target).
    """

    platform: str
    fps: float
    sensor: str
    out: Path
    classes: int | None = None
    images: int | None = None
    coco: Path | None = None
    small_share: float | None = None
    map_budget: float = 1.0
    report: Path | None = None
    target_map: float | None = None

    def __post_init__(self) -> None:
        get_platform(self.platform)
        if self.sensor not in SENSORS:
            raise InvalidInput(f"--sensor {self.sensor!r}: expected rgb or thermal")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise InvalidInput(f"--fps must be > 0, got {self.fps:g}")
        if self.coco is None and (self.classes is None or self.images is None):
            raise InvalidInput("give --classes and --images, or --coco FILE to measure them")
        for name in ("classes", "images"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidInput(f"--{name} must be >= 1, got {value}")
        if self.small_share is not None and not 0.0 <= self.small_share <= 1.0:
            raise InvalidInput(f"--small-share must be in [0, 1], got {self.small_share:g}")
        if not (math.isfinite(self.map_budget) and self.map_budget >= 0):
            raise InvalidInput(f"--map-budget must be >= 0 mAP points, got {self.map_budget:g}")
        if self.target_map is not None and not 0.0 < self.target_map < 1.0:
            raise InvalidInput(f"--target-map must be an mAP50-95 in (0, 1), got {self.target_map:g}")


def _choose_model(
    platform: Platform,
    fps: float,
    imgsz: int,
    images: int,
    precision: str,
    warnings: list[str],
    reasons: list[str],
) -> tuple[ModelSpec, int, dict[str, float]]:
    """The largest scale fast enough (stepping the input size down if none is), then data-limited."""
    family = FAMILIES[platform.family]
    need = fps * rules.FPS_HEADROOM
    sizes = [imgsz] + [s for s in rules.FPS_IMGSZ_STEPS if s < imgsz]
    for size in sizes:
        fast = [m for m in family if estimate_fps(m, platform, size, precision) >= need]
        if fast:
            break
    chosen = fast[-1] if fast else family[0]
    if not fast:
        best = estimate_fps(family[0], platform, size, precision)
        warnings.append(
            f"no {platform.family} scale reaches {fps:g} FPS on {platform.name} ({precision}); "
            f"{chosen.name} at {size} px estimates {best:.1f} FPS"
        )
    elif size < imgsz:
        warnings.append(
            f"input reduced from {imgsz} to {size} px to reach {fps:g} FPS: small objects will suffer"
        )
    reasons.append(
        f"model: {chosen.name} is the largest {platform.family} scale estimated at >= {need:g} FPS "
        f"({fps:g} + {round(100 * (rules.FPS_HEADROOM - 1))} % headroom) on {platform.name} "
        f"in {precision} at {size} px"
    )
    minimum = rules.SCALE_MIN_IMAGES
    if images < minimum[chosen.scale]:
        rank = SCALES.index(chosen.scale)
        allowed = [
            m for m in family if SCALES.index(m.scale) <= rank and images >= rules.SCALE_MIN_IMAGES[m.scale]
        ]
        smaller = allowed[-1] if allowed else family[0]
        if smaller is not chosen:
            step = f"{images} images is below {chosen.name}'s minimum of {minimum[chosen.scale]}"
            warnings.append(f"{step}: {smaller.name} instead")
            reasons.append(f"model: {smaller.name}, as {step}")
            chosen = smaller
        if images < minimum[chosen.scale]:
            warnings.append(
                f"{images} images is below even {chosen.name}'s minimum of {minimum[chosen.scale]}"
            )
    estimates = {m.name: round(estimate_fps(m, platform, size, precision), 1) for m in family}
    return chosen, size, estimates


def _fit_estimate(
    report_path: Path, model: str, target: float | None, warnings: list[str]
) -> dict[str, Any] | None:
    """Images for ``target`` from the report's power-law fit of ``model`` (None with a warning)."""
    report = read_json(report_path)
    if not isinstance(report, dict) or not isinstance(report.get("models"), dict):
        raise InvalidInput(f"{report_path}: not a detpipe report.json (no 'models')")
    target = report.get("settings", {}).get("target") if target is None else target
    entry = report["models"].get(model)
    if entry is None:
        warnings.append(
            f"{report_path}: no {model} in the report ({', '.join(report['models'])}): no fit estimate"
        )
        return None
    fit = entry.get("fit") or {}
    if fit.get("status") != "ok":
        warnings.append(f"{report_path}: {model}'s power-law fit is {fit.get('status')}: no fit estimate")
        return None
    curve = PowerLawFit(
        a=fit["a"], b=fit["b"], alpha=fit["alpha"], rmse=fit["rmse"], r2=fit["r2"], points=fit["points"]
    )
    fraction = curve.required_n(float(target))
    full = report.get("settings", {}).get("full_images")
    out: dict[str, Any] = {
        "report": str(report_path),
        "model": model,
        "target_map": target,
        "asymptote": fit["a"],
    }
    if fraction is None:
        warnings.append(
            f"mAP50-95 {target:g} is above {model}'s fitted asymptote {fit['a']:.3f}: not reachable"
        )
        return {**out, "fraction": None, "images": None}
    images = math.ceil(fraction / 100.0 * full) if full else None
    if images is None:
        warnings.append(f"{report_path}: no full_images in its settings: the fit's estimate stays a fraction")
    return {**out, "fraction": round(fraction, 4), "images": images}


def recommend(config: RecommendConfig) -> dict[str, Any]:
    """The recommendation (recommendation.json's content); writes nothing.

    Raises:
        InvalidInput: Bad flags, an unusable annotation file or report.
    """
    platform = get_platform(config.platform)
    warnings: list[str] = []
    reasons: list[str] = []
    stats: DatasetStats | None = measure(config.coco) if config.coco is not None else None
    measured = {} if stats is None else {"classes": stats.classes, "images": stats.images}
    classes: int = config.classes if config.classes is not None else measured["classes"]
    images: int = config.images if config.images is not None else measured["images"]
    share = config.small_share if config.small_share is not None else (stats.small_share if stats else None)
    if stats is not None:
        if stats.imbalance is not None and stats.imbalance > rules.IMBALANCE_WARN:
            warnings.append(
                f"class imbalance {stats.imbalance:g}x (most/least instances): prefer class-balanced "
                "subsets (detpipe subsets --strategies p) and check per-class AP"
            )
        if stats.empty_classes:
            warnings.append(f"categories without instances: {', '.join(stats.empty_classes)}")

    precision = rules.precision_for(platform.int8_tops is not None, config.map_budget)
    reasons.append(
        f"precision: {precision} (budget {config.map_budget:g} mAP points; the export gate allows "
        f"FP16 {rules.DEFAULT_MAX_DROP['fp16']:g}, INT8 {rules.DEFAULT_MAX_DROP['int8']:g}"
        + ("" if platform.int8_tops is not None else f"; {platform.name} has no INT8")
        + ")"
    )
    imgsz = rules.imgsz_for(share if share is not None else 0.0)
    reasons.append(
        f"imgsz: {imgsz} for a small-object share of {share:.2f}"
        if share is not None
        else "imgsz: 640 (small-object share not given: COCO-like objects assumed)"
    )
    model, imgsz, estimates = _choose_model(platform, config.fps, imgsz, images, precision, warnings, reasons)

    epochs = rules.epochs_for(config.sensor, classes)
    base, k = rules.EPOCH_RULE[config.sensor]
    reasons.append(f"epochs: {base:g} + {k:g} * sqrt({classes}) = {epochs} ({config.sensor})")
    patience = rules.patience_for(epochs)
    reasons.append(f"patience: {round(100 * rules.PATIENCE_SHARE)} % of the epochs = {patience}")
    lr0 = rules.lr0_for(classes)
    reasons.append(f"lr0: 0.01 / sqrt({classes} / 3) capped at 0.01 = {lr0:g}")
    augmentation = rules.augmentation_for(config.sensor, model.scale, share or 0.0)
    reasons.append(
        f"augmentation: {config.sensor} preset"
        + (
            " (no hue/saturation jitter, no mixup)"
            if config.sensor == "thermal"
            else f" (mixup {augmentation['mixup']:g})"
        )
        + (" + small-object preset" if (share or 0.0) >= rules.SMALL_PRESET_SHARE else "")
    )
    needed = rules.images_needed(config.sensor, classes)
    base_img, per_class = rules.IMAGES_RULE[config.sensor]
    reasons.append(f"images needed: {base_img} + {classes} x {per_class} = {needed} ({config.sensor})")
    if images < needed:
        warnings.append(
            f"{images} images is below the guide's {needed} for {classes} classes ({config.sensor})"
        )
    fit = _fit_estimate(config.report, model.name, config.target_map, warnings) if config.report else None
    if platform.gpus > 1:
        warnings.append(f"{platform.name}: FPS is per stream on one of {platform.gpus} GPUs")
    warnings.append(
        "FPS figures are first-order estimates from published T4 latencies: confirm with detpipe bench"
    )
    return {
        "schema": SCHEMA,
        "inputs": {
            "platform": platform.name,
            "fps": config.fps,
            "sensor": config.sensor,
            "classes": classes,
            "images": images,
            "small_share": share,
            "map_budget": config.map_budget,
            "dataset": None if stats is None else stats.to_dict(),
        },
        "model": model.name,
        "model_yaml": f"{model.name}.yaml",
        "imgsz": imgsz,
        "epochs": epochs,
        "epochs_budget": rules.epoch_budget(epochs),
        "patience": patience,
        "lr0": lr0,
        "augmentation": augmentation,
        "precision": precision,
        "fps_estimates": estimates,
        "images_needed": {"rule": needed, "fit": fit},
        "warnings": warnings,
        "reasons": reasons,
    }


def hyperparameters(rec: dict[str, Any]) -> dict[str, Any]:
    """hyp.yaml's content: ultralytics train arguments from a recommendation."""
    return {**{k: rec[k] for k in HYP_KEYS}, **rec["augmentation"]}


def hyp_yaml(rec: dict[str, Any]) -> str:
    """hyp.yaml's text, with a header saying what it is for."""
    head = (
        f"# detpipe recommend: {rec['model']} on {rec['inputs']['platform']} ({rec['inputs']['sensor']}, "
        f"{rec['inputs']['classes']} classes), deploy as {rec['precision']}\n"
        f"# detpipe train --model {rec['model_yaml']} --config hyp.yaml --data DATA.yaml --out DIR\n"
    )
    return head + yaml.safe_dump(hyperparameters(rec), sort_keys=False)


def render_table(rec: dict[str, Any]) -> str:
    """The recommendation as a plain-text table (what the CLI prints)."""
    rows = [
        ("model", rec["model"]),
        ("precision", rec["precision"]),
        ("imgsz", str(rec["imgsz"])),
        ("epochs", f"{rec['epochs']} (budget {rec['epochs_budget']})"),
        ("patience", str(rec["patience"])),
        ("lr0", f"{rec['lr0']:g}"),
        ("augmentation", ", ".join(f"{k}={v:g}" for k, v in rec["augmentation"].items())),
        ("images needed", str(rec["images_needed"]["rule"])),
        ("est. FPS", ", ".join(f"{k} {v:g}" for k, v in rec["fps_estimates"].items())),
    ]
    fit = rec["images_needed"]["fit"]
    if fit is not None and fit.get("images") is not None:
        rows.insert(8, ("images (fit)", f"{fit['images']} for mAP50-95 {fit['target_map']:g}"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines += [f"warning: {w}" for w in rec["warnings"]]
    return "\n".join(lines) + "\n"


def write_recommendation(config: RecommendConfig) -> dict[str, Any]:
    """Recommend and write ``recommendation.json`` and ``hyp.yaml`` atomically; returns the JSON content."""
    rec = recommend(config)
    with atomic_dir(config.out) as tmp:
        write_json(tmp / "recommendation.json", rec)
        write_text(tmp / "hyp.yaml", hyp_yaml(rec))
    return rec
