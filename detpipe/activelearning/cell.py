"""One active-learning cell: the seed round, then ``rounds`` rounds of pick, reveal, retrain.

::

    summary = run_cell(CellConfig(data=Path("runs/data"), out=Path("runs/al/uncertainty_s0"),
                                  strategy="uncertainty", seed=0, rounds=3, budget=30))
    summary["rounds"][-1]["map50_95"]

Round ``k`` trains on the labeled set ``round-<k>/labeled.json`` (round 0: the seed set) with
``detpipe train``'s own code (:func:`detpipe.train.launch.run_local`: YOLO labels converted from
the labeled set, the dataset's val split as validation), evaluates the weights on the val split
(:func:`detpipe.evaluate.stage.run_evaluation`) and, unless it is the last, picks ``budget`` of the
images not labeled yet with ``detpipe mine`` (pool: the train images, ``--exclude``: the labeled
set), reveals their ground truth and merges it into ``round-<k+1>/labeled.json``. The cell
directory is built aside and appears complete or not at all::

    OUT/cell.json                         the settings, the dataset's counts, the seed set's size
    OUT/round-<k>.json                    the round's record (detpipe.activelearning.records)
    OUT/round-<k>/labeled.json            the labeled set trained on (COCO)
    OUT/round-<k>/train/                  the training run (weights/best.pt, results.csv, ...)
    OUT/round-<k>/evaluation/metrics.json COCO metrics on the val split
    OUT/round-<k>/mine/                   the picks (selection.json, preannotations, contact sheet)
    OUT/round-<k>/revealed.json           the picks' ground truth (what the labelers returned)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from detpipe.activelearning.config import CellConfig
from detpipe.activelearning.labeled import add_labels, annotated_images, reveal, seed_set
from detpipe.activelearning.records import CELL, SCHEMA, round_name
from detpipe.data.coco import CocoDataset, load_coco
from detpipe.data.layout import TRAIN_SPLIT, VAL_SPLIT, coco_paths
from detpipe.errors import InvalidInput
from detpipe.io import atomic_dir, read_json, write_json

log = logging.getLogger(__name__)

SHARED = ("budget", "rounds", "seed_fraction", "imgsz", "annotated_images", "val_images")
"""``cell.json`` keys every round record repeats (the report checks that the cells agree)."""


def run_cell(cfg: CellConfig) -> dict[str, Any]:
    """Run every round of ``cfg`` and write the cell directory (module docstring).

    Returns:
        ``cell.json``'s content with ``rounds``: the round records.

    Raises:
        InvalidInput, ValidationFailed: a bad dataset root, model or setting (before training).
    """
    from detpipe.train.models import resolve_model
    from detpipe.ultralytics_env import configure_offline

    configure_offline()
    train_ann, train_images = coco_paths(cfg.data, TRAIN_SPLIT)
    val_ann, val_images = coco_paths(cfg.data, VAL_SPLIT)
    for path in (train_ann, val_ann):
        if not path.is_file():
            raise InvalidInput(f"--data {cfg.data}: no {path.relative_to(cfg.data)} (a COCO-layout root)")
    resolve_model(cfg.model)
    gt = load_coco(train_ann, train_images)
    val = load_coco(val_ann, val_images)
    names = seed_set(gt, cfg.seed_fraction, cfg.seed)
    cell: dict[str, Any] = {
        "name": cfg.name,
        **cfg.to_dict(),
        "train_images": gt.num_images,
        "annotated_images": annotated_images(gt),
        "val_images": val.num_images,
        "seed_images": len(names),
    }
    log.info("%s: seed set %d of %d images, %d rounds of %d", cfg.name, len(names), gt.num_images,
             cfg.rounds, cfg.budget)  # fmt: skip
    records = []
    with atomic_dir(cfg.out) as tmp:
        reveal(gt, names, tmp / "round-0" / "labeled.json")
        weights: Path | None = None
        for k in range(cfg.rounds + 1):
            rdir = tmp / f"round-{k}"
            record, weights = _train_round(cfg, k, rdir, (val_ann, val_images), train_images, weights)
            record |= {key: cell[key] for key in SHARED}
            if k < cfg.rounds:
                t0 = time.perf_counter()
                record["picked"] = _pick(cfg, k, rdir, gt, train_images, weights)
                record["times_s"]["mine"] = round(time.perf_counter() - t0, 3)
            records.append(record)
            write_json(tmp / round_name(k), record)
            log.info("%s round %d: %d labeled images, mAP50-95 %.4f", cfg.name, k,
                     record["labeled_images"], record["map50_95"])  # fmt: skip
            if k < cfg.rounds and not record["picked"]:
                log.warning("%s: the pool is empty after round %d; stopping", cfg.name, k)
                break
        write_json(tmp / CELL, cell)
    return {**cell, "rounds": records}


def _train_round(
    cfg: CellConfig, k: int, rdir: Path, val: tuple[Path, Path], train_images: Path, previous: Path | None
) -> tuple[dict[str, Any], Path]:
    """Train and evaluate round ``k`` on ``rdir/labeled.json``; its record and weights.

    ``val`` is the val split's (annotations, images dir).
    """
    from detpipe.data.yolo import YoloConfig, convert
    from detpipe.evaluate.stage import EvaluateConfig, run_evaluation
    from detpipe.train import launch
    from detpipe.train.config import build_config

    val_ann, val_images = val
    labeled_file = rdir / "labeled.json"
    labeled = load_coco(labeled_file)
    t0 = time.perf_counter()
    (data_yaml,) = convert(YoloConfig(
        annotations=labeled_file, images_dir=train_images, val_annotations=val_ann,
        val_images_dir=val_images, out=rdir / "yolo",
    ))  # fmt: skip
    finetuned = cfg.finetune and previous is not None
    flags = {"epochs": cfg.round_epochs(k), "imgsz": cfg.imgsz, "batch": cfg.batch, "seed": cfg.seed,
             "workers": cfg.workers, "plots": False}  # fmt: skip
    train_cfg = build_config(str(data_yaml), str(previous) if finetuned else cfg.model, str(rdir / "train"),
                             flags=flags, sets=cfg.train_overrides, device=cfg.device)  # fmt: skip
    launch.check_inputs(train_cfg)
    summary = launch.run_local(train_cfg) or {}
    t1 = time.perf_counter()
    weights = _weights(rdir / "train")
    metrics = run_evaluation(EvaluateConfig(
        out=rdir / "evaluation", gt=val_ann, weights=weights, data=data_yaml, imgsz=cfg.imgsz,
        device=cfg.device, plots=False, progress=cfg.progress,
    ))  # fmt: skip
    t2 = time.perf_counter()
    record = {
        "schema": SCHEMA,
        "cell": cfg.name,
        "strategy": cfg.strategy,
        "seed": cfg.seed,
        "round": k,
        "finetune": cfg.finetune,
        "finetuned_from": f"round-{k - 1}" if finetuned else None,
        "model": str(summary.get("model") or cfg.model),
        "labeled_images": labeled.num_images,
        "labeled_instances": labeled.num_annotations,
        "epochs": cfg.round_epochs(k),
        "best_epoch": summary.get("best_epoch"),
        "map50_95": float(metrics["map50_95"]),
        "map50": float(metrics["map50"]),
        "times_s": {"train": round(t1 - t0, 3), "evaluate": round(t2 - t1, 3)},
    }
    return record, weights


def _weights(run_dir: Path) -> Path:
    for name in ("best.pt", "last.pt"):
        if (run_dir / "weights" / name).is_file():
            return run_dir / "weights" / name
    raise InvalidInput(f"{run_dir}: training left no weights")


def _pick(cfg: CellConfig, k: int, rdir: Path, gt: CocoDataset, train_images: Path, weights: Path) -> int:
    """Mine ``budget`` new images with round ``k``'s model, reveal them, merge into round ``k+1``."""
    from detpipe.mine.stage import MineConfig, mine

    labeled_file = rdir / "labeled.json"
    done = set(load_coco(labeled_file).file_names)
    if all(name in done for name in gt.file_names):
        return 0
    mine(MineConfig(
        pool=str(train_images), weights=weights, budget=cfg.budget, out=rdir / "mine", strategy=cfg.strategy,
        seed=cfg.pick_seed(k), exclude=labeled_file, batch=cfg.mine_batch, imgsz=cfg.imgsz,
        progress=cfg.progress,
    ))  # fmt: skip
    picks = [p["image"] for p in read_json(rdir / "mine" / "selection.json")["picks"]]
    revealed = reveal(gt, picks, rdir / "revealed.json")
    following = rdir.parent / f"round-{k + 1}" / "labeled.json"
    add_labels(labeled_file, rdir / "revealed.json", train_images, following)
    log.debug("round %d: revealed %d images (%d annotations)", k, revealed["images"], revealed["annotations"])
    return len(picks)
