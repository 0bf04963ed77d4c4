"""Assemble a pipeline run's outputs into a release in the artifact store.

The release layout (docs/ARCHITECTURE.md) maps run outputs as follows::

    weights.pt                                  <- train/weights/best.pt
    model.onnx, model.int8.onnx                 <- export/ (when built)
    metrics.json                                <- evaluation/metrics.json
    bench/<device-class>.json                   <- bench.json, split by the device each result ran on
    engines/<device-class>/model.engine(.json)  <- export/model.fp16.engine (or int8) + sidecar
    MODEL_CARD.md                               <- made here (detpipe.model_card): data, training
                                                   config, metrics per format, gate, bench p50, lineage

    cfg = PublishConfig(store="runs/store", name="yolov8n-synth", version="1",
                        train_dir=..., evaluation_dir=..., export_dir=..., bench_json=...)
    uri, manifest = publish_run(cfg)
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detpipe.bench.device import split_by_device_class
from detpipe.errors import InvalidInput
from detpipe.export.gate import GateConfig, gate_from_report
from detpipe.io import read_json, sha256_file, write_json, write_text
from detpipe.model_card import CardInputs, gate_section_input, render_card
from detpipe.store import Lineage, Manifest, publish, release_uri
from detpipe.store.manifest import MODEL_CARD, code_version

log = logging.getLogger(__name__)

ENGINE_PREFERENCE = ("model.fp16.engine", "model.int8.engine")
"""Which engine a release ships when several were built (one engine per device class)."""


@dataclass(frozen=True)
class PublishConfig:
    """What to publish and where.

    Attributes:
        store: store URI (``s3://bucket``, ``file://dir`` or a path).
        name, version: the release coordinates (``models/<name>/<version>``).
        train_dir: a ``detpipe train`` output dir (weights/, train_summary.json).
        evaluation_dir: a ``detpipe evaluate`` output dir (metrics.json).
        export_dir: a ``detpipe export`` output dir (ONNX files, engines, export_report.json).
        bench_json: a ``detpipe bench`` report.
        subset_list: the subset list the model was trained on (for lineage).
        force: replace an existing release of the same version.
        signing_key: the release signing key (``detpipe release keygen``'s ``release.key``):
            the release gets its ``manifest.sig``. None publishes an unsigned release, which
            servers with ``--release-key`` refuse (a warning says so).
        gate: the accuracy gate's settings, to record its decisions in the model card (the
            pipeline passes its gate step's); None: the export report's own record.
        data_source: where the training data came from, for the model card (a COCO root,
            ``synthetic``).
        card_out: also write the model card here (the pipeline's Markdown artifact).
    """

    store: str
    name: str
    version: str
    train_dir: Path
    evaluation_dir: Path | None = None
    export_dir: Path | None = None
    bench_json: Path | None = None
    subset_list: Path | None = None
    force: bool = False
    signing_key: Path | None = None
    gate: GateConfig | None = None
    data_source: str | None = None
    card_out: Path | None = None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")


def release_name(arch: str, coco_root: str = "", fraction: float = 100.0, strategy: str = "p") -> str:
    """A release name after the model and the data it was actually trained on.

    ``yolov8n.yaml`` on synthetic data -> ``yolov8n-synth``; on ``/data/coco`` -> ``yolov8n-coco``;
    on 5 % of it (proportional) -> ``yolov8n-coco-5p``. The data part is the COCO root's folder
    name, so a 128-image subset at ``/data/coco-val128`` is never published as the full set.
    """
    from detpipe.subsets.config import format_pct

    model = _slug(Path(arch).name.removesuffix(".yaml").removesuffix(".yml").removesuffix(".pt")) or "model"
    data = _slug(Path(coco_root.rstrip("/")).name) if coco_root else "synth"
    name = f"{model}-{data or 'coco'}"
    return name if fraction >= 100 else f"{name}-{format_pct(fraction)}{_slug(strategy)}"


def release_files(cfg: PublishConfig, scratch: Path) -> dict[str, Path]:
    """Release path -> local file, for every output the run produced.

    ``bench.json`` is filed per device class its results ran on (CPU figures never under a
    GPU class): one ``bench/<class>.json`` each, written under ``scratch``.
    """
    files: dict[str, Path] = {}
    weights = Path(cfg.train_dir) / "weights" / "best.pt"
    if not weights.is_file():
        raise InvalidInput(f"{weights}: no trained weights to publish")
    files["weights.pt"] = weights
    if cfg.evaluation_dir is not None:
        files["metrics.json"] = Path(cfg.evaluation_dir) / "metrics.json"
    if cfg.export_dir is not None:
        export = Path(cfg.export_dir)
        for name in ("model.onnx", "model.int8.onnx"):
            if (export / name).is_file():
                files[name] = export / name
        engine = next((export / e for e in ENGINE_PREFERENCE if (export / e).is_file()), None)
        if engine is not None:
            sidecar = engine.with_name(engine.name + ".json")
            cls = read_json(sidecar)["device_class"]
            files[f"engines/{cls}/model.engine"] = engine
            files[f"engines/{cls}/model.engine.json"] = sidecar
    if cfg.bench_json is not None:
        for cls, part in split_by_device_class(read_json(cfg.bench_json)).items():
            files[f"bench/{cls}.json"] = write_json(scratch / f"bench-{cls}.json", part)
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise InvalidInput(f"cannot publish, missing: {', '.join(missing)}")
    return files


def publish_run(cfg: PublishConfig) -> tuple[str, Manifest]:
    """Publish the run's outputs as ``models/<name>/<version>``; returns (release URI, manifest)."""
    with tempfile.TemporaryDirectory(prefix="detpipe-publish-") as scratch:
        return _publish(cfg, release_files(cfg, Path(scratch)), Path(scratch))


def gate_record(export_report: dict[str, Any], gate: GateConfig | None) -> dict[str, Any] | None:
    """The gate's decisions for the model card: re-judged with ``gate`` (the pipeline's gate
    step's settings, by :func:`~detpipe.export.gate.gate_from_report`), else as the export
    recorded them; None when the export was not evaluated."""
    if not (export_report.get("accuracy") or {}).get("evaluated"):
        return None
    if gate is not None:
        decisions = [d.as_dict() for d in gate_from_report(export_report, gate)]
        return gate_section_input(decisions, gate.metric, gate.min_map, gate.allow_missing, gate.enabled)
    recorded = export_report.get("gate")
    if not recorded:
        return None
    return gate_section_input(
        recorded["decisions"],
        recorded["metric"],
        recorded["min_map"],
        recorded["allow_missing"],
        recorded["enabled"],
    )


def model_card(cfg: PublishConfig, files: dict[str, Path], summary: dict[str, Any], lineage: Lineage) -> str:
    """The release's ``MODEL_CARD.md`` from the run's outputs in ``files``."""
    export = Path(cfg.export_dir) / "export_report.json" if cfg.export_dir is not None else None
    report = read_json(export) if export is not None and export.is_file() else None
    card = CardInputs(
        name=cfg.name,
        version=cfg.version,
        train_summary=summary,
        lineage=lineage.to_dict(),
        files={path: sha256_file(local) for path, local in files.items()},
        data_source=cfg.data_source,
        evaluation=read_json(files["metrics.json"]) if "metrics.json" in files else None,
        export_report=report,
        gate=None if report is None else gate_record(report, cfg.gate),
        bench={
            p[len("bench/") : -len(".json")]: read_json(f) for p, f in files.items() if p.startswith("bench/")
        },
    )
    return render_card(card)


def _publish(cfg: PublishConfig, files: dict[str, Path], scratch: Path) -> tuple[str, Manifest]:
    summary = read_json(Path(cfg.train_dir) / "train_summary.json")
    metrics: dict[str, Any] = {
        "train": {k: summary.get(k) for k in ("best_map5095", "best_map50", "best_epoch", "last_epoch")}
    }
    if cfg.evaluation_dir is not None:
        coco = read_json(Path(cfg.evaluation_dir) / "metrics.json")
        metrics["coco"] = {k: coco[k] for k in ("map50_95", "map50", "map75") if k in coco}
    if cfg.export_dir is not None and (Path(cfg.export_dir) / "export_report.json").is_file():
        metrics["export"] = read_json(Path(cfg.export_dir) / "export_report.json").get("accuracy")
    extra = {"model": summary.get("model"), "dataset_hash": summary.get("dataset_hash")}
    lineage_args: dict[str, Any] = {
        "training_config": summary.get("config"),
        "parent_weights": summary.get("model"),
        "code_version": code_version(),  # here, not in publish(): the card shows it too
        "extra": extra,
    }
    if cfg.subset_list is not None:
        lineage = Lineage.for_subset(cfg.subset_list, **lineage_args)
    else:
        lineage = Lineage(**lineage_args)
    card = model_card(cfg, files, summary, lineage)
    files = {**files, MODEL_CARD: write_text(scratch / MODEL_CARD, card)}
    if cfg.card_out is not None:
        write_text(cfg.card_out, card)
    signer = None
    if cfg.signing_key is not None:
        from detpipe.signing import ReleaseSigner

        signer = ReleaseSigner(cfg.signing_key)
    else:
        log.warning("publishing %s %s unsigned: no signing key was given", cfg.name, cfg.version)
    manifest = publish(
        cfg.store,
        cfg.name,
        cfg.version,
        files,
        metrics=metrics,
        lineage=lineage,
        force=cfg.force,
        signer=signer,
    )
    uri = release_uri(cfg.store, cfg.name, cfg.version)
    log.info("published %s (%d objects)", uri, len(files))
    return uri, manifest
