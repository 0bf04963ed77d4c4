"""The dataset root layout every stage agrees on (the same as COCO's own)::

    ROOT/images/train2017/*.jpg     ROOT/annotations/instances_train2017.json
    ROOT/images/val2017/*.jpg       ROOT/annotations/instances_val2017.json

``detpipe data synth`` writes it; a real COCO download already has it. Helpers here turn a
root into the paths the stages take, so no stage spells the layout out again::

    ann, images = coco_paths(root, "val2017")
    yamls = yolo_dataset(root, "runs/yolo", subsets_dir="runs/subsets")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detpipe.data.coco import load_coco
from detpipe.errors import InvalidInput
from detpipe.io import atomic_dir

TRAIN_SPLIT = "train2017"
VAL_SPLIT = "val2017"


def coco_paths(root: str | Path, split: str) -> tuple[Path, Path]:
    """``(annotations json, images dir)`` of ``split`` under a dataset root."""
    root = Path(root)
    return root / "annotations" / f"instances_{split}.json", root / "images" / split


def link_coco_root(coco_root: str | Path, out: str | Path) -> dict[str, Any]:
    """Validate an existing COCO root and make ``out`` a dataset root that links to it.

    Returns:
        ``{"splits": {split: {"images": N, "instances": M}}}``, like ``synthesize``'s summary.

    Raises:
        InvalidInput, ValidationFailed: a missing split or a bad annotation file.
    """
    coco_root = Path(coco_root).resolve()
    summary: dict[str, Any] = {"out": str(out), "source": str(coco_root), "splits": {}}
    for split in (TRAIN_SPLIT, VAL_SPLIT):
        ann, images = coco_paths(coco_root, split)
        if not ann.is_file() or not images.is_dir():
            raise InvalidInput(
                f"{coco_root}: expected {ann.relative_to(coco_root)} and {images.relative_to(coco_root)}"
            )
        ds = load_coco(ann)
        summary["splits"][split] = {"images": ds.num_images, "instances": ds.num_annotations}
    with atomic_dir(out) as tmp:
        for sub in ("images", "annotations"):
            (tmp / sub).symlink_to(coco_root / sub, target_is_directory=True)
    return summary


def yolo_dataset(root: str | Path, out: str | Path, subsets_dir: str | Path | None = None) -> list[Path]:
    """Convert a dataset root to an ultralytics dataset in ``out``; returns the YAMLs written.

    Without ``subsets_dir``: ``out/dataset.yaml`` (all train images); with it, one YAML per
    subset list as well (``out/train2017_5_p.yaml`` ...). Validation is on ``val2017``.
    """
    from detpipe.data.yolo import YoloConfig, convert

    train_ann, train_images = coco_paths(root, TRAIN_SPLIT)
    val_ann, val_images = coco_paths(root, VAL_SPLIT)
    return convert(
        YoloConfig(
            annotations=train_ann,
            images_dir=train_images,
            val_annotations=val_ann,
            val_images_dir=val_images,
            subsets_dir=subsets_dir,
            out=out,
        )
    )
