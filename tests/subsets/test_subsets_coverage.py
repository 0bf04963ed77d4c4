"""Class coverage of ``p`` on a COCO128-like long tail: never fewer classes than ``random``.

The data mimic COCO128 (128 images, ~70 of 80 classes present, person on a third of the
images, half the classes on at most 3 images): Zipf-like class frequencies, 1 + Poisson
classes per image, clustered instance counts. With fewer images than classes, ``p`` first
covers as many classes as it can; this checks that against ``random`` at every study
fraction, for several seeds of both.
"""

from __future__ import annotations

import numpy as np
import pytest
from subsets_cases import write_coco

from detpipe.data.coco import load_coco
from detpipe.subsets.config import DEFAULT_FRACTIONS, subset_size
from detpipe.subsets.counts import count_instances, filter_images, subset_stats
from detpipe.subsets.strategies import draw

SEEDS = range(5)


def coco128_like(images: int = 128, classes: int = 80, seed: int = 0) -> dict:
    """A COCO128-like detection dict: Zipf(1.1) classes, multi-label images, long tail."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, classes + 1) ** 1.1
    weights /= weights.sum()
    imgs, anns = [], []
    for i in range(images):
        imgs.append({"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": 640, "height": 480})
        k = min(1 + rng.poisson(1.9), classes)
        for c in rng.choice(classes, k, replace=False, p=weights).tolist():
            for _ in range(rng.geometric(0.45)):
                side = float(np.clip(np.exp(rng.normal(np.log(50), 1.0)), 4, 470))
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": i + 1,
                        "category_id": c + 1,
                        "bbox": [1.0, 1.0, side, side],
                        "area": round(side * side * 0.7, 2),
                        "iscrowd": 0,
                    }
                )
    cats = [{"id": c + 1, "name": f"class{c}", "supercategory": "thing"} for c in range(classes)]
    return {"images": imgs, "annotations": anns, "categories": cats}


@pytest.fixture(scope="module", params=[0, 1], ids=["data0", "data1"])
def counts(request, tmp_path_factory):
    coco = coco128_like(seed=request.param)
    ds = load_coco(write_coco(tmp_path_factory.mktemp("c128") / "instances_train2017.json", coco))
    return count_instances(ds, filter_images(ds).images)


def _coverage(counts, strategy: str, sizes: list[int], seed: int, nested: bool) -> list[int]:
    return [
        subset_stats(counts, r).classes_present
        for r in draw(strategy, counts, sizes, seed=seed, nested=nested)
    ]


def test_the_data_has_a_coco128_like_long_tail(counts):
    inst = counts.full_instances
    present = int((inst > 0).sum())
    class_images = subset_stats(counts, np.arange(counts.num_images)).class_images
    assert counts.num_images == 128 and 60 <= present <= 78
    assert (class_images[class_images > 0] <= 3).sum() >= present // 3  # many rare classes
    assert class_images.max() >= 30


@pytest.mark.parametrize("nested", [True, False], ids=["nested", "independent"])
def test_p_never_covers_fewer_classes_than_random(counts, nested):
    # independent draws grow every size from nothing: fewer seeds and sizes keep it quick
    seeds = SEEDS if nested else range(3)
    sizes = [subset_size(f, counts.num_images) for f in DEFAULT_FRACTIONS if nested or f <= 60]
    present = int((counts.full_instances > 0).sum())
    rnd = np.array([_coverage(counts, "random", sizes, k, nested) for k in seeds])  # (seeds, sizes)
    best_random = rnd.max(0)
    for k in seeds:
        p = np.array(_coverage(counts, "p", sizes, k, nested))
        # against the luckiest random draw of each size, not just the one with the same seed
        assert (p >= best_random).all(), (k, sizes, p.tolist(), best_random.tolist())
        assert (p[np.array(sizes) >= present] == present).all()
    # and the margin is real where it can be: small subsets of a long tail
    small = np.array(sizes) < present // 2
    assert (p[small] > rnd.mean(0)[small]).all()


def test_p_stays_balanced_while_covering(counts):
    """Coverage first does not give up balance: p's share deviation stays below random's."""
    sizes = [subset_size(f, counts.num_images) for f in DEFAULT_FRACTIONS if 10 <= f <= 90]
    dev = {
        s: np.mean(
            [[subset_stats(counts, r).mean_rel_dev for r in draw(s, counts, sizes, seed=k)] for k in SEEDS], 0
        )
        for s in ("p", "random")
    }
    assert (dev["p"] < dev["random"]).all(), (dev["p"].round(3), dev["random"].round(3))
