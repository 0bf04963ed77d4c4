"""What ``--coco FILE`` measures: classes, images, class imbalance and the small-object share.

* classes: categories with at least one (non-crowd) instance; listed categories without any
  are reported apart (``empty_classes``);
* images: every image in the file (images without objects are training data too);
* imbalance: instances of the most frequent class / those of the least frequent one;
* small share: the share of non-crowd instances smaller than 32 px (COCO's "small", sqrt of
  the box area) once the image is resized to 640 px on its longest side, the size YOLO trains
  at by default.

Usage::

    stats = measure(Path("annotations/instances_train2017.json"))
    stats.classes, stats.images, stats.imbalance, stats.small_share
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detpipe.data.coco import load_coco
from detpipe.errors import InvalidInput

SMALL_PX = 32.0
"""COCO's small-object bound (area < 32^2 px)."""
AT_IMGSZ = 640.0


@dataclass(frozen=True)
class DatasetStats:
    """Measured figures of an annotation file (see the module docstring)."""

    path: str
    classes: int
    images: int
    instances: int
    imbalance: float
    small_share: float
    empty_classes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "classes": self.classes,
            "images": self.images,
            "instances": self.instances,
            "imbalance": self.imbalance,
            "small_share": self.small_share,
            "empty_classes": list(self.empty_classes),
        }


def measure(path: Path) -> DatasetStats:
    """Measure a COCO annotation file.

    Raises:
        InvalidInput: The file is unusable or holds no (non-crowd) instance.
    """
    ds = load_coco(path)
    keep = ~ds.ann_iscrowd
    if not keep.any():
        raise InvalidInput(f"{path}: no annotated objects to measure")
    counts = np.bincount(ds.ann_category[keep], minlength=len(ds.category_ids))
    present = counts > 0
    side = np.sqrt(ds.ann_bbox[keep, 2] * ds.ann_bbox[keep, 3])
    longest = np.maximum(ds.widths, ds.heights)[ds.ann_image[keep]]
    small = side * (AT_IMGSZ / longest) < SMALL_PX
    return DatasetStats(
        path=str(path),
        classes=int(present.sum()),
        images=len(ds.image_ids),
        instances=int(keep.sum()),
        imbalance=round(float(counts[present].max() / counts[present].min()), 4),
        small_share=round(float(small.mean()), 6),
        empty_classes=tuple(n for n, c in zip(ds.category_names, counts, strict=True) if c == 0),
    )
