"""Small COCO dicts for the subsets tests, and plain-Python recomputations of their statistics.

``long_tailed_coco`` draws a multi-label detection set with Zipf-like class frequencies
(the rarest class ~1/40 as frequent as the commonest), 1-4 classes per image, clustered
instance counts, objects of all three COCO sizes, some empty and some crowd-only images.
The ``expected_*`` helpers recompute what ``detpipe subsets`` reports without using its
code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np


def long_tailed_coco(
    images: int = 1200, classes: int = 10, seed: int = 0, empty: int = 20, crowd_only: int = 5
) -> dict:
    """A long-tailed multi-label COCO dict; ``empty`` and ``crowd_only`` images are spread in."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, classes + 1) ** 1.6
    weights /= weights.sum()
    special = rng.choice(images, empty + crowd_only, replace=False)
    kind = dict.fromkeys(special[:empty].tolist(), "empty") | dict.fromkeys(special[empty:].tolist(), "crowd")
    imgs, anns = [], []
    for i in range(images):
        w, h = (640, 480) if i % 3 else (480, 640)
        imgs.append({"id": 1000 + i, "file_name": f"{1000 + i:012d}.jpg", "width": w, "height": h})
        if kind.get(i) == "empty":
            continue
        if kind.get(i) == "crowd":
            objects = [(0, 1)]
        else:
            k = min(1 + rng.poisson(0.9), classes)
            cats = rng.choice(classes, k, replace=False, p=weights)
            objects = [(int(c), 0) for c in cats for _ in range(rng.geometric(0.55))]
        for c, crowd in objects:
            side = float(np.clip(np.exp(rng.normal(np.log(45), 1.0)), 4, 400))
            bw, bh = min(side, w - 1), min(side * rng.uniform(0.6, 1.4), h - 1)
            x, y = float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": 1000 + i,
                    "category_id": 10 + c,
                    "bbox": [round(x, 2), round(y, 2), round(bw, 2), round(bh, 2)],
                    "area": round(bw * bh * 0.7, 2),
                    "iscrowd": crowd,
                    "segmentation": [[x, y, x + bw, y, x + bw, y + bh]],
                }
            )
    cats = [{"id": 10 + c, "name": f"class{c}", "supercategory": "thing"} for c in range(classes)]
    return {"images": imgs, "annotations": anns, "categories": cats}


def write_coco(path: Path, coco: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(coco))
    return path


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``detpipe ARGS`` as a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", *args], capture_output=True, text=True, timeout=timeout
    )


def size_bin(area: float) -> int:
    return 0 if area < 32**2 else 1 if area < 96**2 else 2


def expected_stats(coco: dict, file_names: list[str], include_crowd: bool = True) -> dict:
    """Per-class images/instances/size bins of the images named, and the deviation measures.

    Everything from the raw dict, against the full set of images with at least one counted
    annotation (what step 1 keeps).
    """
    by_name = {im["file_name"]: im["id"] for im in coco["images"]}
    cats = [c["id"] for c in coco["categories"]]
    anns = [a for a in coco["annotations"] if include_crowd or not a.get("iscrowd", 0)]
    kept = {a["image_id"] for a in anns}
    chosen = {by_name[n] for n in file_names}
    full = Counter(a["category_id"] for a in anns if a["image_id"] in kept)
    inst = Counter(a["category_id"] for a in anns if a["image_id"] in chosen)
    imgs = Counter(c for i, c in {(a["image_id"], a["category_id"]) for a in anns if a["image_id"] in chosen})
    sizes = Counter((a["category_id"], size_bin(a["area"])) for a in anns if a["image_id"] in chosen)
    full_sizes = Counter((a["category_id"], size_bin(a["area"])) for a in anns if a["image_id"] in kept)
    total, full_total = sum(inst.values()), sum(full.values())
    rel, size_dev = {}, {}
    for c in cats:
        p = full[c] / full_total
        s = inst[c] / total
        if full[c]:
            rel[c] = abs(s - p) / p
        if inst[c]:
            size_dev[c] = 0.5 * sum(abs(sizes[c, b] / inst[c] - full_sizes[c, b] / full[c]) for b in range(3))
    return {
        "images": len(chosen),
        "instances": total,
        "class_instances": [inst[c] for c in cats],
        "class_images": [imgs[c] for c in cats],
        "class_sizes": [[sizes[c, b] for b in range(3)] for c in cats],
        "shares": [inst[c] / total for c in cats],
        "full_shares": [full[c] / full_total for c in cats],
        "rel_dev": rel,
        "classes_present": sum(1 for c in cats if inst[c]),
        "mean_rel_dev": sum(rel.values()) / len(rel),
        "max_rel_dev": max(rel.values()),
        "mean_size_dev": sum(size_dev.values()) / len(size_dev),
        "max_size_dev": max(size_dev.values()),
    }
