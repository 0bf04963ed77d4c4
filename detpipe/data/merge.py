"""Add newly labeled images to a COCO training set: ``detpipe data merge``.

Both files are validated first (:func:`~detpipe.data.coco.load_coco`, with their image files).
The added file's categories must be the base's, matched by name (an added file that numbers
them otherwise is remapped to the base's ids; a category the base lacks is refused). Image and
annotation ids of the added file are renumbered after the base's largest. An added image whose
content (sha256 of the file) or file name is in the base already is refused, naming both, and
nothing is written; the merged file is written atomically::

    summary = merge_coco(MergeConfig(base=Path("train.json"), add=Path("labeled-round-1.json"),
                                     images_dir=Path("images/train2017"), out=Path("train-r1.json")))
    summary["added_images"], summary["added_annotations"]
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detpipe.data.coco import CocoDataset, load_coco
from detpipe.errors import InvalidInput
from detpipe.io import sha256_file, write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MergeConfig:
    """One ``detpipe data merge``.

    Attributes:
        base: the training set's COCO file.
        add: the COCO file of the newly labeled images.
        images_dir: where the base's images are.
        out: the merged COCO file (may be ``base`` itself: it is replaced atomically).
        add_images_dir: where the added images are (default: ``images_dir``).
    """

    base: Path
    add: Path
    images_dir: Path
    out: Path
    add_images_dir: Path | None = None


def merge_coco(cfg: MergeConfig) -> dict[str, Any]:
    """Merge ``cfg.add`` into ``cfg.base`` and write ``cfg.out``; returns a summary.

    Raises:
        ValidationFailed: either file has problems (all listed).
        InvalidInput: a category the base lacks, or an added image already in the base.
    """
    add_dir = cfg.add_images_dir or cfg.images_dir
    base = load_coco(cfg.base, cfg.images_dir)
    add = load_coco(cfg.add, add_dir)
    category_map = _category_map(base, add, cfg)
    _refuse_duplicates(base, add, cfg.images_dir, add_dir, cfg)

    merged = copy.deepcopy(base.raw)
    image_offset = int(base.image_ids.max()) + 1 if base.num_images else 1
    ann_offset = int(base.ann_ids.max()) + 1 if base.num_annotations else 1
    new_image_id = {int(old): image_offset + i for i, old in enumerate(add.image_ids)}
    for image in add.raw["images"]:
        merged["images"].append({**image, "id": new_image_id[int(image["id"])]})
    for i, ann in enumerate(add.raw["annotations"]):
        merged["annotations"].append({
            **ann, "id": ann_offset + i, "image_id": new_image_id[int(ann["image_id"])],
            "category_id": category_map[int(ann["category_id"])],
        })  # fmt: skip
    write_json(cfg.out, merged)
    remapped = {str(a): b for a, b in category_map.items() if a != b}
    summary = {
        "out": str(cfg.out),
        "base_images": base.num_images,
        "added_images": add.num_images,
        "added_annotations": add.num_annotations,
        "images": base.num_images + add.num_images,
        "annotations": base.num_annotations + add.num_annotations,
        "image_ids_from": image_offset,
        "annotation_ids_from": ann_offset,
        "categories_remapped": remapped,
    }
    log.info("merged %d images (%d annotations) into %s", add.num_images, add.num_annotations, cfg.out)
    return summary


def _category_map(base: CocoDataset, add: CocoDataset, cfg: MergeConfig) -> dict[int, int]:
    """Added category id -> base category id, by name."""
    by_name = dict(zip(base.category_names, (int(c) for c in base.category_ids), strict=True))
    missing = [n for n in add.category_names if n not in by_name]
    if missing:
        raise InvalidInput(
            f"{cfg.add}: categories {missing} are not in {cfg.base} (its categories: "
            f"{base.category_names}): label with the base's categories"
        )
    return {int(c): by_name[n] for c, n in zip(add.category_ids, add.category_names, strict=True)}


def _refuse_duplicates(
    base: CocoDataset, add: CocoDataset, base_dir: Path, add_dir: Path, cfg: MergeConfig
) -> None:
    """An added image whose file name or content the base has already: refused, named."""
    names = set(base.file_names)
    for name in add.file_names:
        if name in names:
            raise InvalidInput(f"{cfg.add}: image {name} is in {cfg.base} already (same file name)")
    hashes = {sha256_file(base_dir / name): (name, cfg.base) for name in base.file_names}
    for name in add.file_names:
        digest = sha256_file(add_dir / name)
        if digest in hashes:
            seen, where = hashes[digest]
            raise InvalidInput(
                f"{cfg.add}: image {name} is {seen} of {where} already (same content, "
                f"sha256 {digest[:12]}…): nothing written"
            )
        hashes[digest] = (name, cfg.add)
