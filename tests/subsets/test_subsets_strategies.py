"""The three strategies: sizes, nesting, determinism, topn order, presence, and p's balance."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from subsets_cases import long_tailed_coco, write_coco

from detpipe.data.coco import load_coco
from detpipe.subsets.config import DEFAULT_FRACTIONS, subset_size
from detpipe.subsets.counts import count_instances, filter_images, subset_stats
from detpipe.subsets.strategies import draw


@pytest.fixture(scope="module")
def counts(tmp_path_factory):
    """1,200 images (1,180 kept: 20 empty dropped, 5 crowd-only kept), 10 long-tailed classes."""
    path = write_coco(tmp_path_factory.mktemp("lt") / "instances_train2017.json", long_tailed_coco())
    ds = load_coco(path)
    return count_instances(ds, filter_images(ds).images)


@pytest.fixture(scope="module")
def big_counts(tmp_path_factory):
    """6,000 images, 12 long-tailed classes: 0.3125 % is 19 images."""
    coco = long_tailed_coco(images=6000, classes=12, seed=1, empty=60, crowd_only=0)
    ds = load_coco(write_coco(tmp_path_factory.mktemp("big") / "instances_train2017.json", coco))
    return count_instances(ds, filter_images(ds).images)


def _sizes(counts):
    return [subset_size(f, counts.num_images) for f in DEFAULT_FRACTIONS]


@pytest.mark.parametrize("strategy", ["p", "random", "topn"])
def test_sizes_nesting_and_sorted_rows(counts, strategy):
    sizes = _sizes(counts)
    assert counts.num_images == 1180
    assert sizes[:6] == [4, 7, 15, 30, 59, 118]  # 3.6875, 7.375, 14.75, 29.5 (half up), 59, 118
    subsets = draw(strategy, counts, sizes, seed=0)
    assert [len(s) for s in subsets] == sizes
    for s in subsets:
        assert (np.diff(s) > 0).all()  # sorted, no repeats
    for small, large in itertools.pairwise(subsets):
        assert np.isin(small, large).all()
    assert subsets[-1].tolist() == list(range(counts.num_images))


def test_topn_is_the_first_n_of_the_filtered_list(counts):
    sizes = _sizes(counts)
    for n, s in zip(sizes, draw("topn", counts, sizes), strict=True):
        assert s.tolist() == list(range(n))


@pytest.mark.parametrize("strategy", ["p", "random"])
def test_no_nested_draws_independently(counts, strategy):
    sizes = _sizes(counts)
    subsets = draw(strategy, counts, sizes, seed=0, nested=False)
    assert [len(s) for s in subsets] == sizes
    contained = [np.isin(a, b).all() for a, b in itertools.pairwise(subsets)]
    assert not all(contained)
    # an independent draw of one size does not depend on the other sizes asked for
    alone = draw(strategy, counts, [sizes[4]], seed=0, nested=False)
    assert alone[0].tolist() == subsets[4].tolist()


@pytest.mark.parametrize("strategy", ["p", "random"])
def test_deterministic_by_seed(counts, strategy):
    sizes = _sizes(counts)
    a = draw(strategy, counts, sizes, seed=5)
    b = draw(strategy, counts, sizes, seed=5)
    c = draw(strategy, counts, sizes, seed=6)
    assert all(x.tolist() == y.tolist() for x, y in zip(a, b, strict=True))
    assert any(x.tolist() != z.tolist() for x, z in zip(a[:-1], c[:-1], strict=True))


@pytest.mark.parametrize("nested", [True, False])
def test_p_has_every_class_once_images_reach_classes(counts, nested):
    sizes = [1, 3, 7, 9, 10, 11, 15, 40]  # 10 classes
    for n, s in zip(sizes, draw("p", counts, sizes, seed=2, nested=nested), strict=True):
        # every class from 10 images on; below that at least as many classes as images
        assert subset_stats(counts, s).classes_present >= min(n, 10), n


def test_p_includes_a_class_found_on_a_single_image(tmp_path):
    coco = long_tailed_coco(images=400, classes=6, seed=8, empty=0, crowd_only=0)
    lonely = coco["images"][123]["id"]
    coco["categories"].append({"id": 99, "name": "unique"})
    coco["annotations"].append({"id": 10**6, "image_id": lonely, "category_id": 99, "bbox": [1, 1, 5, 5]})
    ds = load_coco(write_coco(tmp_path / "x.json", coco))
    kept = filter_images(ds)
    c = count_instances(ds, kept.images)
    row = int(np.flatnonzero(ds.image_ids[kept.images] == lonely)[0])
    for nested in (True, False):
        subsets = draw("p", c, [3, 7, 20], seed=0, nested=nested)
        assert row in subsets[1] and row in subsets[2]  # 7 images >= 7 classes


def test_p_deviation_at_most_half_of_random_up_to_10pct(big_counts):
    """The study's claim for p on a long-tailed multi-label set, averaged over seeds."""
    sizes = [subset_size(f, big_counts.num_images) for f in DEFAULT_FRACTIONS if f <= 10]
    assert sizes == [19, 37, 74, 149, 297, 594]
    seeds = range(4)
    dev = {
        s: np.mean(
            [
                [subset_stats(big_counts, r).mean_rel_dev for r in draw(s, big_counts, sizes, seed=k)]
                for k in seeds
            ],
            axis=0,
        )
        for s in ("p", "random")
    }
    ratio = dev["p"] / dev["random"]
    assert (ratio <= 0.5).all(), ratio.round(3)
    # and every class is present in every p subset with at least as many images as classes
    for r in draw("p", big_counts, sizes, seed=0):
        assert subset_stats(big_counts, r).classes_present == 12


def test_p_keeps_the_size_mix_closer_than_random(big_counts):
    sizes = [subset_size(f, big_counts.num_images) for f in (2.5, 5, 10, 20)]
    p = [subset_stats(big_counts, r).mean_size_dev for r in draw("p", big_counts, sizes, seed=0)]
    rnd = np.mean(
        [
            [subset_stats(big_counts, r).mean_size_dev for r in draw("random", big_counts, sizes, seed=k)]
            for k in range(4)
        ],
        axis=0,
    )
    assert (np.array(p) < rnd).all(), (p, rnd)
