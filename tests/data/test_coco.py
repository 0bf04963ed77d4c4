"""COCO loading and validation: every problem is reported with file, id and reason."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from detpipe.data.coco import find_problems, load_coco
from detpipe.errors import ValidationFailed


def _coco() -> dict:
    return {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
            {"id": 2, "file_name": "b.jpg", "width": 50, "height": 50},
            {"id": 3, "file_name": "c.jpg", "width": 64, "height": 64},
        ],
        "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 7, "bbox": [0, 0, 10, 20], "area": 150.0, "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 3, "bbox": [50, 40, 50, 40], "iscrowd": 1},
            {"id": 12, "image_id": 2, "category_id": 3, "bbox": [1.5, 2.5, 3, 4]},
        ],
    }


def _write(tmp_path, obj, name="instances_train2017.json"):
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


def test_load_indexes_arrays(tmp_path):
    ds = load_coco(_write(tmp_path, _coco()))
    assert (ds.num_images, ds.num_annotations, ds.num_classes) == (3, 3, 2)
    assert ds.ann_image.tolist() == [0, 0, 1]
    assert ds.ann_category.tolist() == [0, 1, 1]  # index into categories in file order
    assert ds.ann_area.tolist() == [150.0, 2000.0, 12.0]  # 'area' when given, else w*h
    assert ds.ann_iscrowd.tolist() == [False, True, False]
    assert ds.instances_per_image().tolist() == [2, 1, 0]
    assert ds.instances_per_image(include_crowd=False).tolist() == [1, 1, 0]
    np.testing.assert_array_equal(ds.image_class_counts(), [[1, 1], [0, 1], [0, 0]])


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["images"].append(dict(d["images"][0])), "image id=1: duplicate image id"),
        (
            lambda d: d["annotations"].append(dict(d["annotations"][0])),
            "annotation id=10: duplicate annotation id",
        ),
        (lambda d: d["categories"].append({"id": 7, "name": "x"}), "category id=7: duplicate category id"),
        (
            lambda d: d["annotations"][0].update(image_id=99),
            "annotation id=10: image_id=99 is not a known image",
        ),
        (
            lambda d: d["annotations"][0].update(category_id=5),
            "annotation id=10: category_id=5 is not a known category",
        ),
        (
            lambda d: d["annotations"][2].update(bbox=[1, 1, 0, 4]),
            "annotation id=12: bbox has non-positive size (w=0, h=4)",
        ),
        (
            lambda d: d["annotations"][2].update(bbox=[40, 40, 20, 5]),
            "annotation id=12: bbox [40, 40, 20, 5] lies outside image id=2 (50x50)",
        ),
        (lambda d: d["annotations"][2].pop("bbox"), "annotation id=12: 'bbox' must be a list of 4 numbers"),
        (lambda d: d["images"][2].pop("width"), "image id=3: missing or invalid 'width'"),
        (lambda d: d.pop("categories"), "missing or non-list key 'categories'"),
    ],
)
def test_each_problem_is_named(tmp_path, mutate, expected):
    coco = _coco()
    mutate(coco)
    path = _write(tmp_path, coco)
    problems = find_problems(coco, path)
    assert any(p.startswith(f"{path}: ") and expected in p for p in problems), problems
    with pytest.raises(ValidationFailed) as err:
        load_coco(path)
    assert err.value.problems == problems


def test_all_problems_reported_at_once(tmp_path):
    coco = _coco()
    coco["annotations"][0]["image_id"] = 42
    coco["annotations"][1]["bbox"] = [0, 0, -1, 3]
    assert len(find_problems(coco, "x.json")) == 2


def test_box_overhang_within_tolerance_is_accepted(tmp_path):
    coco = _coco()
    coco["annotations"][2]["bbox"] = [40.0, 40.0, 10.6, 10.6]  # overhangs 50x50 by 0.6 px
    assert find_problems(coco, "x.json") == []


def test_missing_image_files(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(b"")
    problems = find_problems(_coco(), "x.json", tmp_path / "imgs")
    assert [p.split(": ")[1] for p in problems] == ["image id=2", "image id=3"]
    assert all("does not exist" in p for p in problems)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_validate_ok_and_errors(tmp_path):
    good = _write(tmp_path, _coco())
    ok = _cli("data", "validate", "--annotations", str(good))
    assert ok.returncode == 0, ok.stderr
    assert "3 images (1 without annotations), 3 instances (1 crowd), 2 classes" in ok.stdout

    coco = _coco()
    coco["annotations"][0]["category_id"] = 5
    bad = _write(tmp_path, coco, "bad.json")
    res = _cli("data", "validate", "--annotations", str(bad))
    assert res.returncode == 2
    assert f"{bad}: annotation id=10: category_id=5 is not a known category" in res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        f"detpipe data: error: {bad}: 1 problem(s) found, nothing written"
    )
    assert "Traceback" not in res.stderr

    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    res = _cli("data", "validate", "--annotations", str(broken))
    assert res.returncode == 2
    assert res.stderr.strip() == f"detpipe data: error: {broken}: not valid JSON (line 1, column 2)"


def test_cli_usage_errors_exit_2(tmp_path):
    res = _cli("data", "validate", "--annotations", str(tmp_path / "nope.json"))
    assert res.returncode == 2
    assert "no such file" in res.stderr
    assert _cli("no-such-command").returncode == 2
