"""Ground-truth/detection pairs for the evaluator tests, and pycocotools as the reference.

Each case is a (gt dict, detections list) pair of plain JSON objects, built to hit one of
COCOeval's corners; ``pycocotools_eval`` runs the real COCOeval on it.
"""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detpipe.data.coco import CocoDataset, _index
from detpipe.evaluate.detections import Detections


def pycocotools_eval(gt: dict, dts: list[dict]) -> COCOeval:
    """evaluate() + accumulate() + summarize() of pycocotools on deep copies of the inputs."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        if dts:
            coco_dt = coco_gt.loadRes(copy.deepcopy(dts))
        else:  # loadRes cannot take an empty list; an empty result set is still evaluable
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
            coco_dt.createIndex()
        e = COCOeval(coco_gt, coco_dt, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def as_arrays(gt: dict, dts: list[dict]) -> tuple[CocoDataset, Detections]:
    """The same inputs as detpipe's evaluator takes them (no file round trip)."""
    return _index(copy.deepcopy(gt), Path("gt.json")), Detections.from_records(copy.deepcopy(dts))


def random_case(seed: int, n_img: int = 25, n_cat: int = 5, grid: bool = False) -> tuple[dict, list[dict]]:
    """Random boxes near ground truth plus false positives.

    ``grid``: integer boxes and scores in 0.1 steps, so IoU and score ties abound.
    """
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(n_img) * 3 + 1)
    images = [{"id": int(i), "file_name": f"{i}.jpg", "width": 200, "height": 200} for i in ids]
    cats = [{"id": int(c), "name": f"c{c}"} for c in rng.permutation(np.arange(n_cat) + 1)]
    anns: list[dict] = []
    dts: list[dict] = []
    for im in images:
        for _ in range(rng.integers(0, 8)):
            if grid:
                w, h = (int(v) for v in rng.integers(2, 120, 2))
                x, y = int(rng.integers(0, 200 - w)), int(rng.integers(0, 200 - h))
            else:
                w, h = (float(v) for v in rng.uniform(2, 120, 2))
                x, y = float(rng.uniform(0, 200 - w)), float(rng.uniform(0, 200 - h))
            cat = cats[rng.integers(0, n_cat - 1)]["id"]  # the last category never has ground truth
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": im["id"],
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "area": float(w * h * rng.uniform(0.6, 1.0)),
                    "iscrowd": int(rng.random() < 0.1),
                }
            )
            for _ in range(rng.integers(0, 4)):
                j = rng.integers(-3, 4, 4) if grid else rng.normal(0, 0.1 * max(w, h), 4)
                score = round(float(rng.random()), 1) if grid else float(rng.random())
                other = cats[rng.integers(0, n_cat)]["id"]
                dts.append(
                    {
                        "image_id": im["id"],
                        "category_id": cat if rng.random() < 0.8 else other,
                        "bbox": [
                            float(x + j[0]),
                            float(y + j[1]),
                            float(max(w + j[2], 0.5)),
                            float(max(h + j[3], 0.5)),
                        ],
                        "score": score,
                    }
                )
        for _ in range(rng.integers(0, 12)):
            w, h = rng.uniform(1, 100, 2)
            dts.append(
                {
                    "image_id": im["id"],
                    "category_id": cats[rng.integers(0, n_cat)]["id"],
                    "bbox": [float(rng.uniform(0, 100)), float(rng.uniform(0, 100)), float(w), float(h)],
                    "score": round(float(rng.random()), 2),
                }
            )
    return {"images": images, "categories": cats, "annotations": anns}, dts


def crowded_case(seed: int) -> tuple[dict, list[dict]]:
    """Over 100 detections per (image, category) with tied scores, crowds, a gt with id 0, empty boxes."""
    rng = np.random.default_rng(seed)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 300, "height": 300} for i in (0, 5, 2, 9)]
    cats = [{"id": 4, "name": "a"}, {"id": 1, "name": "b"}, {"id": 7, "name": "c"}]
    anns: list[dict] = []
    dts: list[dict] = []
    for im in images:
        for _ in range(rng.integers(5, 40)):
            w, h = (int(v) for v in rng.integers(3, 150, 2))
            x, y = (int(v) for v in rng.integers(0, 150, 2))
            anns.append(
                {
                    "id": len(anns),  # the first annotation has id 0
                    "image_id": im["id"],
                    "category_id": int(rng.choice([4, 1])),
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(rng.random() < 0.15),
                }
            )
        for _ in range(rng.integers(240, 400)):
            a = anns[rng.integers(0, len(anns))]
            j = rng.integers(-8, 9, 4)
            b = a["bbox"]
            dts.append(
                {
                    "image_id": im["id"],
                    "category_id": int(rng.choice([4, 1, 7])),
                    "bbox": [
                        int(b[0] + j[0]),
                        int(b[1] + j[1]),
                        max(int(b[2] + j[2]), 0),
                        max(int(b[3] + j[3]), 0),
                    ],
                    "score": float(rng.integers(0, 5)) / 4,
                }
            )
    return {"images": images, "categories": cats, "annotations": anns}, dts


def crafted_case() -> tuple[dict, list[dict]]:
    """Hand-placed corners: crowd IoU, area-range boundaries, images without gt, absent classes."""
    images = [
        {"id": 10, "file_name": "a.jpg", "width": 400, "height": 400},
        {"id": 3, "file_name": "b.jpg", "width": 400, "height": 400},
        {"id": 7, "file_name": "empty.jpg", "width": 400, "height": 400},  # no ground truth at all
    ]
    cats = [{"id": 2, "name": "cat"}, {"id": 1, "name": "dog"}, {"id": 5, "name": "unseen"}]
    anns = [
        # a crowd region: a small detection inside has IoU 0.0625 but crowd IoU 1 -> ignored, not FP
        {"id": 1, "image_id": 10, "category_id": 2, "bbox": [0, 0, 200, 200], "area": 40000, "iscrowd": 1},
        {"id": 2, "image_id": 10, "category_id": 2, "bbox": [250, 250, 32, 32], "area": 1024, "iscrowd": 0},
        {"id": 3, "image_id": 10, "category_id": 1, "bbox": [300, 10, 96, 96], "area": 9216, "iscrowd": 0},
        {"id": 4, "image_id": 3, "category_id": 1, "bbox": [10, 10, 50, 40], "area": 1500.5, "iscrowd": 0},
        {"id": 5, "image_id": 3, "category_id": 1, "bbox": [12, 10, 50, 40], "area": 1500.5, "iscrowd": 0},
        {"id": 6, "image_id": 3, "category_id": 2, "bbox": [200, 200, 10, 10], "area": 100, "iscrowd": 0},
    ]
    dts = [
        {"image_id": 10, "category_id": 2, "bbox": [50, 50, 50, 50], "score": 0.9},  # on the crowd
        {"image_id": 10, "category_id": 2, "bbox": [60, 60, 40, 40], "score": 0.9},  # on the crowd, tie
        {"image_id": 10, "category_id": 2, "bbox": [250, 251, 32, 31], "score": 0.8},
        {"image_id": 10, "category_id": 1, "bbox": [300, 10, 96, 95], "score": 0.3},
        {"image_id": 3, "category_id": 1, "bbox": [11, 10, 50, 40], "score": 0.7},  # equal IoU with 4 and 5
        {"image_id": 3, "category_id": 1, "bbox": [11, 10, 50, 40], "score": 0.7},
        {"image_id": 3, "category_id": 1, "bbox": [11, 10, 50, 40], "score": 0.6},
        {"image_id": 3, "category_id": 2, "bbox": [100, 100, 10, 10], "score": 0.95},
        {"image_id": 7, "category_id": 1, "bbox": [0, 0, 20, 20], "score": 0.99},  # image without gt
        {"image_id": 7, "category_id": 5, "bbox": [0, 0, 20, 20], "score": 0.5},  # class without gt
        {"image_id": 3, "category_id": 5, "bbox": [10, 10, 50, 40], "score": 0.4},
    ]
    return {"images": images, "categories": cats, "annotations": anns}, dts
