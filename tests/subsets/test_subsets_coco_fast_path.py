"""The vectorized path of ``load_coco`` (added for the subsets speed budget) gives exactly what
the per-record path gives, and hands every unusual file to it."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from subsets_cases import long_tailed_coco, write_coco

from detpipe.data.coco import _fast_index, _index, find_problems, load_coco


def _same(a, b):
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), name
        elif name != "raw":
            assert x == y, name


def _mixed() -> dict:
    """Valid, with the variety real files have: int and float sizes, optional keys missing."""
    coco = long_tailed_coco(150, 5, seed=6)
    coco["images"][0]["width"] = 640.0
    coco["images"][1].update(license=3, coco_url="http://x", extra={"nested": [1, 2]})
    for i, a in enumerate(coco["annotations"]):
        if i % 3 == 0:
            del a["area"]
        if i % 4 == 0:
            del a["iscrowd"]
        if i % 5 == 0:
            a["bbox"] = [int(v) + 1 for v in a["bbox"][:2]] + [int(v) or 1 for v in a["bbox"][2:]]
        if i % 7 == 0 and "iscrowd" in a:
            a["iscrowd"] = bool(a["iscrowd"])
    return coco


def test_fast_path_equals_the_per_record_path(tmp_path):
    coco = _mixed()
    path = write_coco(tmp_path / "x.json", coco)
    assert find_problems(coco, path) == []
    fast = _fast_index(coco, path, None)
    assert fast is not None
    _same(fast, _index(coco, path))
    _same(load_coco(path), fast)


def test_unusual_but_valid_files_take_the_slow_path_with_the_same_result(tmp_path):
    coco = _mixed()
    coco["annotations"][3]["image_id"] = float(coco["annotations"][3]["image_id"])  # accepted by validate
    path = write_coco(tmp_path / "x.json", coco)
    assert find_problems(coco, path) == []
    assert _fast_index(coco, path, None) is None
    _same(load_coco(path), _index(coco, path))


BREAKAGES = {
    "explicit null area": lambda d: d["annotations"][1].update(area=None),
    "negative area": lambda d: d["annotations"][1].update(area=-2),
    "nan in bbox": lambda d: d["annotations"][2].update(bbox=[1, 1, math.nan, 3]),
    "bool id": lambda d: d["annotations"][2].update(id=True),
    "iscrowd 2": lambda d: d["annotations"][2].update(iscrowd=2),
    "iscrowd list": lambda d: d["annotations"][2].update(iscrowd=[1]),
    "empty file name": lambda d: d["images"][4].update(file_name=""),
    "zero height": lambda d: d["images"][4].update(height=0),
    "duplicate category": lambda d: d["categories"].append(dict(d["categories"][0])),
    "duplicate annotation": lambda d: d["annotations"].append(dict(d["annotations"][0])),
    "bbox of 3": lambda d: d["annotations"][0].update(bbox=[1, 2, 3]),
    "annotation not a dict": lambda d: d["annotations"].append([1]),
    "unknown image": lambda d: d["annotations"][0].update(image_id=-5),
    "box past the edge": lambda d: d["annotations"][0].update(bbox=[600.5, 0, 45, 10]),
}


@pytest.mark.parametrize("name", list(BREAKAGES))
def test_every_problem_goes_to_the_slow_path(tmp_path, name):
    coco = copy.deepcopy(_mixed())
    BREAKAGES[name](coco)
    path = tmp_path / "x.json"
    assert _fast_index(coco, path, None) is None
    assert find_problems(coco, path), name


def test_missing_image_file_goes_to_the_slow_path(tmp_path):
    coco = long_tailed_coco(20, 2, seed=0, empty=0, crowd_only=0)
    (tmp_path / "imgs").mkdir()
    for im in coco["images"][1:]:
        (tmp_path / "imgs" / im["file_name"]).write_bytes(b"")
    assert _fast_index(coco, tmp_path / "x.json", tmp_path / "imgs") is None
    (tmp_path / "imgs" / coco["images"][0]["file_name"]).write_bytes(b"")
    assert _fast_index(coco, tmp_path / "x.json", tmp_path / "imgs") is not None
