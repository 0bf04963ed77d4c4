"""detpipe's COCO evaluator against pycocotools' COCOeval itself, on crafted and random cases."""

from __future__ import annotations

import numpy as np
import pytest
from evaluate_cases import as_arrays, crafted_case, crowded_case, pycocotools_eval, random_case

from detpipe.errors import InvalidInput
from detpipe.evaluate.cocoeval import box_iou, evaluate_bbox
from detpipe.evaluate.detections import Detections
from detpipe.evaluate.summary import STAT_NAMES, build_metrics

CASES = {
    "crafted": crafted_case,
    "random-float": lambda: random_case(0),
    "random-float-2": lambda: random_case(7, n_img=40, n_cat=8),
    "random-grid-ties": lambda: random_case(1, grid=True),
    "random-grid-ties-2": lambda: random_case(3, grid=True),
    "crowded-over-100-per-image": lambda: crowded_case(0),
    "crowded-2": lambda: crowded_case(5),
    "empty-detections": lambda: (random_case(2)[0], []),
    "detections-on-one-image": lambda: (
        lambda g, d: (g, [x for x in d if x["image_id"] == d[0]["image_id"]])
    )(*random_case(4)),
}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    gt, dts = CASES[request.param]()
    return request.param, gt, dts, pycocotools_eval(gt, dts), evaluate_bbox(*as_arrays(gt, dts))


def test_identical_to_pycocotools(case):
    name, _, _, ref, ours = case
    np.testing.assert_array_equal(ours.precision, ref.eval["precision"], err_msg=name)
    np.testing.assert_array_equal(ours.recall, ref.eval["recall"], err_msg=name)
    np.testing.assert_allclose(ours.stats, ref.stats, rtol=0, atol=1e-6, err_msg=name)
    assert ours.stats.tolist() == list(ref.stats)  # in fact bit-identical
    assert ours.category_ids.tolist() == ref.params.catIds
    assert ours.image_ids.tolist() == ref.params.imgIds


def test_matches_equal_pycocotools_per_detection(case):
    """hit/ignored per detection equal evalImgs' dtMatches != 0 / dtIgnore, per area range."""
    _, _, _, ref, ours = case
    m = ours.matches
    row_of = {int(i): n for n, i in enumerate(m.index)}  # input row -> position in matches
    n_area, n_img = len(ref.params.areaRng), len(ref.params.imgIds)
    checked = 0
    for i, e in enumerate(ref.evalImgs):
        if e is None:
            continue
        a = (i // n_img) % n_area
        cols = [row_of[d - 1] for d in e["dtIds"]]  # loadRes numbers detections from 1
        np.testing.assert_array_equal(m.hit[a][:, cols], e["dtMatches"] != 0)
        np.testing.assert_array_equal(m.ignored[a][:, cols], e["dtIgnore"])
        checked += len(cols)
    assert checked == len(m.index) * n_area


def test_named_fields_and_per_class_ap_follow_pycocotools(case):
    name, gt, dts, ref, ours = case
    ds, dt = as_arrays(gt, dts)
    metrics = build_metrics(ours, ds, dt)
    assert metrics["coco_stats"] == list(ref.stats)
    assert [metrics[n] for n in STAT_NAMES] == metrics["coco_stats"]
    prec = ref.eval["precision"]  # [T, R, K, A, M]

    def mean(s):
        s = s[s > -1]
        return float(np.mean(s)) if len(s) else None

    for k, row in enumerate(metrics["per_class"]):
        assert row["category_id"] == ref.params.catIds[k]
        assert row["ap50_95"] == mean(prec[:, :, k, 0, 2]), name
        assert row["ap50"] == mean(prec[0, :, k, 0, 2])
        assert row["ap75"] == mean(prec[5, :, k, 0, 2])
        assert [row["ap_small"], row["ap_medium"], row["ap_large"]] == [
            mean(prec[:, :, k, a, 2]) for a in (1, 2, 3)
        ]
        assert row["ar100"] == mean(ref.eval["recall"][:, k, 0, 2])
    # the mean of per-class AP over classes with ground truth is mAP (same averaging)
    aps = [r["ap50_95"] for r in metrics["per_class"] if r["ap50_95"] is not None]
    if aps:
        assert np.mean(aps) == pytest.approx(metrics["map50_95"], abs=1e-12)


def test_crafted_corners_have_the_expected_outcomes():
    gt, dts = crafted_case()
    ours = evaluate_bbox(*as_arrays(gt, dts))
    m = ours.matches
    by_row = {int(r): n for n, r in enumerate(m.index)}
    # both detections on the crowd region match it (crowd IoU 1.0) and are ignored: neither TP nor FP
    for row in (0, 1):
        assert m.hit[0, :, by_row[row]].all() and m.ignored[0, :, by_row[row]].all()
    # the class without ground truth stays -1 (excluded from means), like pycocotools
    unseen = ours.category_ids.tolist().index(5)
    assert (ours.precision[:, :, unseen] == -1).all() and (ours.recall[:, unseen] == -1).all()
    # an exactly-32x32 box (area 1024) counts as small and as medium (inclusive bounds)
    cat = ours.category_ids.tolist().index(2)
    assert ours.num_gt[cat].tolist() == [2, 2, 1, 0]


def test_crowd_iou_is_intersection_over_detection_area():
    dt = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 10.0, 10.0], [20.0, 0.0, 5.0, 5.0]])
    gt = np.array([[0.0, 0.0, 100.0, 100.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    assert box_iou(dt, gt, np.array([True, False, False])).tolist() == [1.0, 25 / 175, 0.0]
    assert box_iou(dt[:1], gt[:1], np.array([False])).tolist() == [0.01]


def test_max_dets_1_and_10_cut_per_image_and_category():
    gt, dts = crowded_case(3)
    ours = evaluate_bbox(*as_arrays(gt, dts))
    ref = pycocotools_eval(gt, dts)
    for m in range(3):
        np.testing.assert_array_equal(ours.recall[..., m], ref.eval["recall"][..., m])
    assert (np.bincount(ours.matches.rank) <= 4 * 3).all()  # 4 images x 3 categories at each rank
    assert ours.matches.rank.max() == 99  # cut at 100 per (image, category)


def test_unknown_image_or_category_is_refused():
    gt, dts = random_case(0)
    ds, _ = as_arrays(gt, dts)
    bad = Detections.from_records([{**dts[0], "image_id": 99999}])
    with pytest.raises(InvalidInput, match="image_id=99999 is not in the ground truth"):
        evaluate_bbox(ds, bad)
    bad = Detections.from_records([{**dts[0], "category_id": 42}])
    with pytest.raises(InvalidInput, match="category_id=42 is not in the ground truth"):
        evaluate_bbox(ds, bad)


def test_no_ground_truth_annotations_gives_minus_one():
    gt, dts = random_case(0)
    gt = {**gt, "annotations": []}
    ds, dt = as_arrays(gt, dts)
    ours = evaluate_bbox(ds, dt)
    assert ours.stats.tolist() == [-1.0] * 12 == list(pycocotools_eval(gt, dts).stats)
