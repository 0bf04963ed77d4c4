"""The vectorized paths of ``load_coco`` (added for the subsets and evaluation speed budgets:
msgspec's typed decoding, and whole-array checks on the parsed dicts) give exactly what the
per-record path gives, and hand every unusual file to it."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from subsets_cases import long_tailed_coco, write_coco

from detpipe.data.coco import _fast_index, _index, _typed_index, find_problems, load_coco
from detpipe.errors import InvalidInput, ValidationFailed


def _same(a, b):
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), name
        elif name != "_source":  # the parsed JSON or the file's bytes: compared as .raw
            assert x == y, name
    assert a.raw == b.raw


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
    typed = _typed_index(path, None)
    assert typed is not None
    _same(typed, fast)
    _same(load_coco(path), fast)
    assert isinstance(load_coco(path)._source, bytes)  # the dicts are built only when .raw is read


def test_typed_path_keeps_every_key_in_raw_and_reads_non_ascii(tmp_path):
    coco = _mixed()
    coco["info"] = {"description": "Ünïcode ✓", "year": 2017}
    coco["images"][2]["file_name"] = "ß/日本.jpg"
    coco["categories"][1]["name"] = "Hund 🐕"
    path = tmp_path / "x.json"
    path.write_text(json.dumps(coco, ensure_ascii=False), encoding="utf-8")
    ds = _typed_index(path, None)
    assert ds is not None
    assert ds.file_names[2] == "ß/日本.jpg" and ds.category_names[1] == "Hund 🐕"
    assert ds.raw == coco
    _same(ds, _index(coco, path))


# Valid files msgspec refuses (or that the typed checks send back): loaded the json way, same result.
UNUSUAL_VALID = {
    "utf-8 BOM": lambda text: "\ufeff" + text,
    "NaN in a key that is not read": lambda text: text.replace('"images": [{', '"x": NaN, "images": [{', 1),
}


@pytest.mark.parametrize("name", list(UNUSUAL_VALID))
def test_unusual_valid_files_load_the_json_way(tmp_path, name):
    path = tmp_path / "x.json"
    path.write_text(UNUSUAL_VALID[name](json.dumps(_mixed())), encoding="utf-8")
    assert _typed_index(path, None) is None
    raw = json.loads(path.read_bytes())
    assert find_problems(raw, path) == []
    _same(load_coco(path), _index(raw, path))


def test_unreadable_or_malformed_files_keep_their_messages(tmp_path):
    bad_utf8 = tmp_path / "bad.json"  # invalid UTF-8 in a key the typed decoder only skips
    text = json.dumps(_mixed()).encode()
    bad_utf8.write_bytes(text.replace(b'"images": [{', b'"x": "\xff", "images": [{', 1))
    for path, message in (
        (bad_utf8, "not valid JSON"),
        (tmp_path / "missing.json", "no such file"),
        (tmp_path, "is a directory"),
    ):
        assert _typed_index(path, None) is None
        with pytest.raises(InvalidInput, match=message):
            load_coco(path)


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_id_beyond_int64_is_a_problem_not_a_crash(tmp_path, key):
    coco = _mixed()
    coco[key][4 if key != "categories" else 0]["id"] = 2**64
    path = write_coco(tmp_path / "x.json", coco)
    assert _typed_index(path, None) is None
    with pytest.raises(ValidationFailed) as e:
        load_coco(path)
    assert any(f"id={2**64}: 'id' does not fit in a 64-bit integer" in p for p in e.value.problems)


def test_unusual_but_valid_files_take_the_slow_path_with_the_same_result(tmp_path):
    coco = _mixed()
    coco["annotations"][3]["image_id"] = float(coco["annotations"][3]["image_id"])  # accepted by validate
    path = write_coco(tmp_path / "x.json", coco)
    assert find_problems(coco, path) == []
    assert _fast_index(coco, path, None) is None
    assert _typed_index(path, None) is None
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
    problems = find_problems(coco, path)
    assert problems, name
    path.write_text(json.dumps(coco))  # and from the file: the typed decoder passes it on
    assert _typed_index(path, None) is None
    with pytest.raises(ValidationFailed) as e:
        load_coco(path)
    assert e.value.problems == problems


def test_missing_image_file_goes_to_the_slow_path(tmp_path):
    coco = long_tailed_coco(20, 2, seed=0, empty=0, crowd_only=0)
    (tmp_path / "imgs").mkdir()
    for im in coco["images"][1:]:
        (tmp_path / "imgs" / im["file_name"]).write_bytes(b"")
    path = write_coco(tmp_path / "x.json", coco)
    assert _fast_index(coco, path, tmp_path / "imgs") is None
    assert _typed_index(path, tmp_path / "imgs") is None
    (tmp_path / "imgs" / coco["images"][0]["file_name"]).write_bytes(b"")
    assert _fast_index(coco, path, tmp_path / "imgs") is not None
    assert _typed_index(path, tmp_path / "imgs") is not None


def test_json_nested_too_deeply_is_bad_input(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(_mixed())[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert _typed_index(path, None) is None
    with pytest.raises(InvalidInput, match="not valid JSON \\(nested too deeply\\)"):
        load_coco(path)
