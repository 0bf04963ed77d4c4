"""Step 1 (filtering) and the per-image counts and subset statistics."""

from __future__ import annotations

import numpy as np
import pytest
from subsets_cases import expected_stats, long_tailed_coco, write_coco

from detpipe.data.coco import load_coco
from detpipe.subsets.counts import count_instances, filter_images, size_bins, subset_stats


def _tiny() -> dict:
    """5 images: 0 empty, 1 crowd-only, 2 mixed (crowd + normal), 3 normal, 4 empty."""
    ims = [{"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 200} for i in range(5)]
    a = [
        (1, 1, 7, 1, 900.0),
        (2, 2, 7, 1, 2000.0),
        (3, 2, 8, 0, 1024.0),
        (4, 3, 8, 0, 9216.0),
        (5, 3, 8, 0, 1023.9),
        (6, 3, 7, 0, 50.0),
    ]
    anns = [
        {"id": i, "image_id": im, "category_id": c, "iscrowd": cr, "area": ar, "bbox": [1, 1, 10, 10]}
        for i, im, c, cr, ar in a
    ]
    return {
        "images": ims,
        "annotations": anns,
        "categories": [{"id": 7, "name": "a"}, {"id": 8, "name": "b"}],
    }


def test_filter_drops_empty_and_optionally_crowd_only(tmp_path):
    ds = load_coco(write_coco(tmp_path / "x.json", _tiny()))
    kept = filter_images(ds)
    assert kept.images.tolist() == [1, 2, 3]
    assert (kept.images_in, kept.dropped_empty, kept.dropped_crowd_only, kept.crowd_only_kept) == (5, 2, 0, 1)
    strict = filter_images(ds, drop_crowd_only=True)
    assert strict.images.tolist() == [2, 3]
    assert (strict.dropped_empty, strict.dropped_crowd_only, strict.crowd_only_kept) == (2, 1, 0)


def test_size_bins_use_coco_thresholds():
    assert size_bins(np.array([0.0, 1023.9, 1024.0, 9215.9, 9216.0, 1e6])).tolist() == [0, 0, 1, 1, 2, 2]


def test_counts_with_and_without_crowd(tmp_path):
    ds = load_coco(write_coco(tmp_path / "x.json", _tiny()))
    counts = count_instances(ds, np.array([1, 2, 3]))
    dense = counts.matrix.toarray()
    # columns: class a, class b, then (a small, a medium, a large, b small, b medium, b large)
    np.testing.assert_array_equal(dense[:, :2], [[1, 0], [1, 1], [1, 2]])
    np.testing.assert_array_equal(dense[:, 2:], [[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 1, 0], [1, 0, 0, 1, 0, 1]])
    assert counts.full_instances.tolist() == [3, 3]
    assert counts.shares.tolist() == [0.5, 0.5]
    no_crowd = count_instances(ds, np.array([2, 3]), include_crowd=False)
    assert no_crowd.full_instances.tolist() == [1, 3]


def test_subset_stats_match_an_independent_count(tmp_path):
    coco = long_tailed_coco(images=300, classes=6, seed=3)
    ds = load_coco(write_coco(tmp_path / "x.json", coco))
    kept = filter_images(ds)
    counts = count_instances(ds, kept.images)
    rows = np.arange(0, counts.num_images, 3)
    st = subset_stats(counts, rows)
    names = [ds.file_names[i] for i in kept.images[rows]]
    exp = expected_stats(coco, names)
    assert st.images == exp["images"]
    assert st.instances == exp["instances"]
    assert st.class_instances.tolist() == exp["class_instances"]
    assert st.class_images.tolist() == exp["class_images"]
    assert st.class_sizes.tolist() == exp["class_sizes"]
    assert st.classes_present == exp["classes_present"]
    assert st.mean_rel_dev == pytest.approx(exp["mean_rel_dev"], rel=1e-12)
    assert st.max_rel_dev == pytest.approx(exp["max_rel_dev"], rel=1e-12)
    assert st.mean_size_dev == pytest.approx(exp["mean_size_dev"], rel=1e-12)
    assert st.max_size_dev == pytest.approx(exp["max_size_dev"], rel=1e-12)
