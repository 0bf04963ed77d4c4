"""Assemble a pipeline run's outputs into a release in the artifact store.

The release layout (DESIGN.md) maps run outputs as follows::

    weights.pt                                  <- train/weights/best.pt
    model.onnx, model.int8.onnx                 <- export/ (when built)
    metrics.json                                <- evaluation/metrics.json
    bench/<device-class>.json                   <- bench.json (device class of the machine it ran on)
    engines/<device-class>/model.engine(.json)  <- export/model.fp16.engine (or int8) + sidecar

    cfg = PublishConfig(store="runs/store", name="yolov8n-synth", version="1",
                        train_dir=..., evaluation_dir=..., export_dir=..., bench_json=...)
    uri, manifest = publish_run(cfg)
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detpipe.errors import InvalidInput
from detpipe.io import read_json
from detpipe.store import Lineage, Manifest, publish, release_uri

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


def device_class(meta: dict[str, Any]) -> str:
    """Path-safe device class of a ``bench.json`` ``device`` block: Jetson model, GPU or CPU arch."""
    if meta.get("jetson"):
        name = str(meta["jetson"].get("model", "jetson"))
    elif meta.get("gpu"):
        name = str(meta["gpu"][0].get("name", "gpu")).replace("NVIDIA", "")
    else:
        name = f"{meta.get('cpu', {}).get('machine', 'unknown')}-cpu"
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._") or "unknown"


def release_files(cfg: PublishConfig) -> dict[str, Path]:
    """Release path -> local file, for every output the run produced."""
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
        files[f"bench/{device_class(read_json(cfg.bench_json)['device'])}.json"] = Path(cfg.bench_json)
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise InvalidInput(f"cannot publish, missing: {', '.join(missing)}")
    return files


def publish_run(cfg: PublishConfig) -> tuple[str, Manifest]:
    """Publish the run's outputs as ``models/<name>/<version>``; returns (release URI, manifest)."""
    files = release_files(cfg)
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
        "extra": extra,
    }
    if cfg.subset_list is not None:
        lineage = Lineage.for_subset(cfg.subset_list, **lineage_args)
    else:
        lineage = Lineage(**lineage_args)
    manifest = publish(
        cfg.store, cfg.name, cfg.version, files, metrics=metrics, lineage=lineage, force=cfg.force
    )
    uri = release_uri(cfg.store, cfg.name, cfg.version)
    log.info("published %s (%d objects)", uri, len(files))
    return uri, manifest
