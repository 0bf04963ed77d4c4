"""Render a synthetic, learnable COCO-format detection dataset.

The demo and test data of every later stage: real JPEG images of shapes from
:mod:`detpipe.data.shapes` on textured, cluttered backgrounds, with what real detection
data has: a long-tailed (Zipf) class frequency, objects from COCO-small to COCO-large,
occlusion (later objects cover earlier ones; a mostly hidden object loses its annotation),
multi-class images, images without objects, crowd regions (a dense cluster of tiny objects
annotated as one ``iscrowd=1`` box with an RLE mask) and varied aspect ratios. Output is
byte-identical for the same config::

    from detpipe.data.synth import SynthConfig, synthesize
    summary = synthesize(SynthConfig(out="runs/demo/data", images=400, classes=6, seed=0))

    # or: detpipe data synth --out runs/demo/data --images 400 --classes 6

Layout, like COCO 2017: ``OUT/images/{train2017,val2017}/000000000001.jpg`` and
``OUT/annotations/instances_{train2017,val2017}.json``. Image ids run on across the
splits, so every id and file name is unique.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from detpipe.data import shapes
from detpipe.errors import InvalidInput
from detpipe.io import atomic_dir, write_json

log = logging.getLogger(__name__)

SPLITS = ("train2017", "val2017")
ZIPF_EXPONENT = 1.2  # class k (1-based) is drawn with probability ~ k^-1.2: 6 classes -> 8.6x head/tail
EMPTY_SHARE = 0.07  # images with no objects
CROWD_SHARE = 0.02  # images with a crowd region
SIZE_BUCKETS = {"small": 0.3, "medium": 0.45, "large": 0.25}  # share of objects drawn in each
MIN_VISIBLE = 0.4  # an object with less of its area visible loses its annotation
ASPECTS = ((1, 1), (4, 3), (3, 4), (3, 2), (2, 3), (16, 9), (9, 16))
JPEG_QUALITY = 90


@dataclass(frozen=True)
class SynthConfig:
    """What to render.

    Attributes:
        out: dataset root, replaced atomically.
        images: train images.
        val_images: val images; ``None`` means ``images // 4`` (at least 1).
        classes: number of classes, 1 to :data:`detpipe.data.shapes.MAX_CLASSES`.
        imgsz: longest image side in pixels.
        seed: random seed; the same config gives byte-identical files.
    """

    out: str | Path
    images: int = 400
    val_images: int | None = None
    classes: int = 6
    imgsz: int = 320
    seed: int = 0

    @property
    def num_val(self) -> int:
        return self.val_images if self.val_images is not None else max(1, self.images // 4)


def _check(cfg: SynthConfig) -> None:
    if cfg.images < 1:
        raise InvalidInput(f"images must be >= 1, got {cfg.images}")
    if cfg.val_images is not None and cfg.val_images < 1:
        raise InvalidInput(f"val_images must be >= 1, got {cfg.val_images}")
    if not 1 <= cfg.classes <= shapes.MAX_CLASSES:
        raise InvalidInput(f"classes must be between 1 and {shapes.MAX_CLASSES}, got {cfg.classes}")
    if cfg.seed < 0:
        raise InvalidInput(f"seed must be >= 0, got {cfg.seed}")
    if not 64 <= cfg.imgsz <= 4096:
        raise InvalidInput(f"imgsz must be between 64 and 4096 px, got {cfg.imgsz}")


def class_probabilities(k: int) -> np.ndarray:
    """Zipf-like frequency of the first ``k`` classes (class 1 most frequent)."""
    p = np.arange(1, k + 1, dtype=np.float64) ** -ZIPF_EXPONENT
    return p / p.sum()


def synthesize(cfg: SynthConfig) -> dict[str, Any]:
    """Render the dataset described by ``cfg`` into ``cfg.out`` (atomically).

    Args:
        cfg: what to render.

    Returns:
        A summary: per split the number of images, empty images, instances, crowd
        regions, multi-class images, instances per class and per COCO size bucket.

    Raises:
        InvalidInput: a config value is out of range, or ``out`` is an existing file.
    """
    _check(cfg)
    out = Path(cfg.out)
    classes = shapes.CLASSES[: cfg.classes]
    categories = [{"id": i + 1, "name": c.name, "supercategory": "shape"} for i, c in enumerate(classes)]
    counts = {"train2017": cfg.images, "val2017": cfg.num_val}
    summary: dict[str, Any] = {
        "out": str(out),
        "seed": cfg.seed,
        "imgsz": cfg.imgsz,
        "classes": [c.name for c in classes],
        "splits": {},
    }
    next_image, next_ann = 1, 1
    with (
        atomic_dir(out) as tmp,
        tqdm(total=sum(counts.values()), desc="synth", unit="img", disable=None) as bar,
    ):
        for split_index, split in enumerate(SPLITS):
            (tmp / "images" / split).mkdir(parents=True)
            images, anns = [], []
            plan = _plan(np.random.default_rng([cfg.seed, split_index]), counts[split])
            for i, kind in enumerate(plan):
                rng = np.random.default_rng([cfg.seed, split_index, i])
                pixels, objects = _render_image(rng, cfg, classes, kind)
                height, width = pixels.shape[:2]
                name = f"{next_image:012d}.jpg"
                (tmp / "images" / split / name).write_bytes(_jpeg(pixels))
                images.append({"id": next_image, "file_name": name, "width": width, "height": height})
                for obj in objects:
                    anns.append({"id": next_ann, "image_id": next_image, **obj})
                    next_ann += 1
                next_image += 1
                bar.update()
            coco = {
                "info": {"description": f"detpipe synthetic shapes, seed {cfg.seed}", "version": "1.0"},
                "licenses": [],
                "images": images,
                "annotations": anns,
                "categories": categories,
            }
            write_json(tmp / "annotations" / f"instances_{split}.json", coco, indent=None)
            summary["splits"][split] = _split_summary(images, anns, classes)
        os.sync()  # one flush for the whole tree (the images skip per-file fsync) before the rename
    log.info("wrote %d images to %s", sum(counts.values()), out)
    return summary


def _plan(rng: np.random.Generator, n: int) -> list[str]:
    """Which images are 'empty', which get a 'crowd' region, the rest are 'normal'."""
    n_empty = max(1, round(n * EMPTY_SHARE)) if n >= 5 else 0
    n_crowd = max(1, round(n * CROWD_SHARE)) if n >= 10 else 0
    order = rng.permutation(n)
    plan = ["normal"] * n
    for i in order[:n_empty]:
        plan[i] = "empty"
    for i in order[n_empty : n_empty + n_crowd]:
        plan[i] = "crowd"
    return plan


def _jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _image_size(rng: np.random.Generator, imgsz: int) -> tuple[int, int]:
    a, b = ASPECTS[rng.integers(len(ASPECTS))]
    if a >= b:
        return imgsz, max(32, round(imgsz * b / a))
    return max(32, round(imgsz * a / b)), imgsz


def _object_side(rng: np.random.Generator, width: int, height: int) -> float:
    """Side length (px) drawn so the visible areas span COCO's small/medium/large buckets."""
    top = 0.75 * min(width, height)
    bucket = rng.choice(len(SIZE_BUCKETS), p=list(SIZE_BUCKETS.values()))
    lo, hi = ((7.0, 30.0), (36.0, 90.0), (112.0, max(112.0, 0.6 * max(width, height))))[bucket]
    return float(min(np.exp(rng.uniform(np.log(lo), np.log(hi))), top))


def _render_image(
    rng: np.random.Generator, cfg: SynthConfig, classes: tuple[shapes.ShapeClass, ...], kind: str
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Render one image; returns its pixels and its annotations (without ids)."""
    width, height = _image_size(rng, cfg.imgsz)
    canvas = shapes.background(rng, height, width)
    shapes.clutter(rng, canvas, int(rng.integers(3, 10)), max_size=0.35 * max(width, height))
    owner = np.full((height, width), -1, np.int32)  # which object each pixel shows
    drawn: list[tuple[int, int, float, float, float]] = []  # (class index, full area, cx, cy, side)
    n_objects = 0 if kind == "empty" else 1 + min(int(rng.poisson(3.0)), 11)
    probs = class_probabilities(len(classes))
    for _ in range(n_objects):
        c = int(rng.choice(len(classes), p=probs))
        side = _object_side(rng, width, height)
        aspect = np.exp(rng.uniform(-0.3, 0.3))
        w, h = side * np.sqrt(aspect), side / np.sqrt(aspect)
        if drawn and rng.random() < 0.3:  # overlap an earlier object on purpose
            _, _, pcx, pcy, pside = drawn[rng.integers(len(drawn))]
            t, r = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 0.7) * (pside + side) / 2
            cx, cy = pcx + r * np.cos(t), pcy + r * np.sin(t)
        else:
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        cx = float(np.clip(cx, min(0.3 * w, width / 2), max(width - 0.3 * w, width / 2)))
        cy = float(np.clip(cy, min(0.3 * h, height / 2), max(height - 0.3 * h, height / 2)))
        poly = shapes.outline(classes[c].shape, cx, cy, w, h, rng.uniform(-0.35, 0.35))
        mask = shapes.rasterize(poly, width, height)
        shapes.paint(canvas, mask, classes[c], rng)
        owner[mask] = len(drawn)
        drawn.append((c, int(mask.sum()), cx, cy, side))
    crowd = _draw_crowd(rng, canvas, owner, classes, len(drawn)) if kind == "crowd" else None
    fg = shapes.clutter(rng, canvas, int(rng.integers(0, 3)), max_size=0.15 * max(width, height))
    owner[fg] = -1  # a few distractors in front of objects, too
    anns = []
    for k, (c, full_area, *_) in enumerate(drawn):
        visible = owner == k
        area = int(visible.sum())
        if area < max(12, MIN_VISIBLE * full_area):
            continue  # mostly hidden (or clipped away): not annotated
        ann = _annotation(visible, c)
        if ann is not None:
            anns.append(ann)
    if crowd is not None and (owner == len(drawn)).sum() >= 12:
        ann = _annotation(owner == len(drawn), crowd, iscrowd=True)
        if ann is not None:
            anns.append(ann)
    return shapes.finish(canvas, rng), anns


def _draw_crowd(
    rng: np.random.Generator,
    canvas: np.ndarray,
    owner: np.ndarray,
    classes: tuple[shapes.ShapeClass, ...],
    index: int,
) -> int:
    """A dense cluster of tiny objects of one class; marks its pixels ``index`` in ``owner``."""
    height, width = owner.shape
    c = int(rng.integers(len(classes)))
    radius = rng.uniform(14, 30)
    cx = rng.uniform(radius, max(radius, width - radius))
    cy = rng.uniform(radius, max(radius, height - radius))
    for _ in range(int(rng.integers(12, 26))):
        t, r = rng.uniform(0, 2 * np.pi), radius * np.sqrt(rng.random())
        side = rng.uniform(3, 7)
        poly = shapes.outline(classes[c].shape, cx + r * np.cos(t), cy + r * np.sin(t), side, side, 0.0)
        mask = shapes.rasterize(poly, width, height)
        shapes.paint(canvas, mask, classes[c], rng)
        owner[mask] = index
    return c


def _annotation(visible: np.ndarray, c: int, iscrowd: bool = False) -> dict[str, Any] | None:
    """COCO annotation of the visible pixels: tight bbox, pixel area, polygons (RLE for crowd)."""
    rows, cols = np.flatnonzero(visible.any(axis=1)), np.flatnonzero(visible.any(axis=0))
    x0, x1, y0, y1 = int(cols[0]), int(cols[-1]) + 1, int(rows[0]), int(rows[-1]) + 1
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    if iscrowd:
        segmentation: Any = rle_encode(visible)
    else:
        contours, _ = cv2.findContours(visible.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        segmentation = [ct.reshape(-1).astype(float).tolist() for ct in contours if len(ct) >= 3]
        if not segmentation:
            segmentation = [[x0, y0, x1, y0, x1, y1, x0, y1]]
    return {
        "category_id": c + 1,
        "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
        "area": float(visible.sum()),
        "iscrowd": int(iscrowd),
        "segmentation": segmentation,
    }


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE of a boolean mask: column-major run lengths, zeros first."""
    flat = mask.flatten(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": runs}


def _split_summary(
    images: list[dict[str, Any]], anns: list[dict[str, Any]], classes: tuple[shapes.ShapeClass, ...]
) -> dict[str, Any]:
    per_class = dict.fromkeys((c.name for c in classes), 0)
    buckets = {"small": 0, "medium": 0, "large": 0}
    image_classes: dict[int, set[int]] = {}
    crowd = 0
    for a in anns:
        if a["iscrowd"]:
            crowd += 1
            continue
        per_class[classes[a["category_id"] - 1].name] += 1
        area = a["area"]
        buckets["small" if area < 32**2 else "medium" if area < 96**2 else "large"] += 1
        image_classes.setdefault(a["image_id"], set()).add(a["category_id"])
    annotated = {a["image_id"] for a in anns}
    return {
        "images": len(images),
        "empty_images": sum(im["id"] not in annotated for im in images),
        "instances": sum(per_class.values()),
        "crowd_regions": crowd,
        "multi_class_images": sum(len(s) > 1 for s in image_classes.values()),
        "per_class": per_class,
        "size_buckets": buckets,
    }
