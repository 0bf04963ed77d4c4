"""``load_detections``' typed decoding (msgspec) gives exactly what ``json`` + ``from_records``
gives, and hands every file it does not fully accept to that path, messages and all."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from detpipe.errors import InvalidInput
from detpipe.evaluate.detections import Detections, _decode_typed, load_detections
from detpipe.io import read_json

FIELDS = ("image_ids", "category_ids", "bboxes", "scores")


def _records(n: int = 300, seed: int = 0) -> list[dict]:
    """Valid, with the variety real files have: int and float numbers, extra keys, ties."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        box = [round(float(v), int(rng.integers(0, 17))) for v in rng.random(4) * 500]
        if i % 5 == 0:
            box = [int(v) for v in box]  # ints in a box: read as floats
        rec = {
            "image_id": int(rng.integers(1, 40)),
            "category_id": int(rng.integers(1, 5)),
            "bbox": box,
            "score": 1 if i % 11 == 0 else float(rng.random()),
        }
        if i % 3 == 0:
            rec["segmentation"] = [[1.5, 2, 3, 4, 5, 6]]
        if i % 7 == 0:
            rec = {"extra": {"nested": [None, True, "ü"]}, **rec}
        out.append(rec)
    out[1]["bbox"] = [0.1, 1e-320, 123456789.123456789, 0]  # subnormal, long mantissa, zero width
    out[2]["score"] = 0.30000000000000004
    return out


def _same(a: Detections, b: Detections) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name


def test_typed_decoding_equals_the_json_path(tmp_path):
    path = tmp_path / "dt.json"
    path.write_text(json.dumps(_records(), ensure_ascii=False), encoding="utf-8")
    typed = _decode_typed(path)
    assert typed is not None
    _same(typed, Detections.from_records(read_json(path), str(path)))
    _same(load_detections(path), typed)


def test_empty_list_is_no_detections(tmp_path):
    path = tmp_path / "dt.json"
    path.write_text("[]")
    _same(_decode_typed(path), Detections.empty())


# Valid for the json path, refused by msgspec's types: loaded the json way, same arrays.
UNUSUAL_VALID = {
    "utf-8 BOM": lambda text: "\ufeff" + text,
    "NaN in a key that is not read": lambda text: text.replace('"score"', '"x": NaN, "score"', 1),
}


@pytest.mark.parametrize("name", list(UNUSUAL_VALID))
def test_unusual_valid_files_load_the_json_way(tmp_path, name):
    path = tmp_path / "dt.json"
    path.write_text(UNUSUAL_VALID[name](json.dumps(_records())), encoding="utf-8")
    assert _decode_typed(path) is None
    _same(load_detections(path), Detections.from_records(read_json(path), str(path)))


def test_bool_box_value_is_judged_by_the_json_path(tmp_path):
    recs = _records(20)
    recs[3]["bbox"] = [True, 2.0, 3.0, 4.0]  # numpy reads it as 1.0; the json path decides, as before
    path = tmp_path / "dt.json"
    path.write_text(json.dumps(recs))
    assert _decode_typed(path) is None
    _same(load_detections(path), Detections.from_records(recs, str(path)))


BREAKAGES = {
    "top level an object": (lambda r: {"detections": r}, "top level is dict, expected a list"),
    "missing score": (lambda r: [r[0], {k: v for k, v in r[1].items() if k != "score"}], "detection [1]"),
    "float image_id": (lambda r: [{**r[0], "image_id": 1.5}], "'image_id' must be an integer"),
    "bool category_id": (lambda r: [{**r[0], "category_id": True}], "'category_id' must be an integer"),
    "bbox of 3": (lambda r: [{**r[0], "bbox": [1, 2, 3]}], "'bbox' must be 4 finite numbers"),
    "negative width": (lambda r: [{**r[0], "bbox": [1, 2, -3, 4]}], "bbox has a negative size"),
    "null score": (lambda r: [{**r[0], "score": None}], "'score' must be a finite number"),
    "NaN score": (lambda r: [{**r[0], "score": float("nan")}], "'score' must be a finite number"),
    "huge box value": (lambda r: [{**r[0], "bbox": [1e400, 2, 3, 4]}], "'bbox' must be 4 finite numbers"),
    "id beyond int64": (lambda r: [{**r[0], "image_id": 2**64}], "not a uniform list"),
    "string id": (lambda r: [{**r[0], "image_id": "7"}], "'image_id' must be an integer"),
}


@pytest.mark.parametrize("name", list(BREAKAGES))
def test_every_problem_gets_the_json_paths_message(tmp_path, name):
    mutate, message = BREAKAGES[name]
    path = tmp_path / "dt.json"
    path.write_text(json.dumps(mutate(_records(5))).replace("Infinity", "1e400"))
    assert _decode_typed(path) is None
    with pytest.raises(InvalidInput) as typed_err:
        load_detections(path)
    with pytest.raises(InvalidInput) as json_err:
        Detections.from_records(read_json(path), str(path))
    assert str(typed_err.value) == str(json_err.value)
    assert message in str(typed_err.value)


def test_unreadable_or_malformed_files_keep_their_messages(tmp_path):
    bad_utf8 = tmp_path / "bad.json"  # invalid UTF-8 in a key the typed decoder only skips
    bad_utf8.write_bytes(json.dumps(_records(3)).encode().replace(b'"score"', b'"x": "\xff", "score"', 1))
    truncated = tmp_path / "cut.json"
    truncated.write_text(json.dumps(_records(3))[:-20])
    for path, message in (
        (bad_utf8, "not valid JSON"),
        (truncated, "not valid JSON (line 1"),
        (tmp_path / "missing.json", "no such file"),
        (tmp_path, "is a directory"),
    ):
        assert _decode_typed(path) is None
        with pytest.raises(InvalidInput) as e:
            load_detections(path)
        assert message in str(e.value)


def _deep(depth: int = 100_000) -> str:
    return "[" * depth + "]" * depth


def test_json_nested_too_deeply_is_bad_input(tmp_path):
    path = tmp_path / "dt.json"
    record = '{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1, "x": '
    path.write_text(f"[{record}{_deep()}}}]")
    assert _decode_typed(path) is None
    with pytest.raises(InvalidInput, match="not valid JSON \\(nested too deeply\\)"):
        load_detections(path)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "-q", "evaluate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("nested", _deep(), "not valid JSON (nested too deeply)"),
        ("bad-utf8", None, "not valid JSON"),
        (
            "big-id",
            json.dumps([{"image_id": 2**64, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1}]),
            "not a uniform list",
        ),
    ],
)
def test_cli_refuses_in_one_line_without_a_traceback(tmp_path, name, text, message):
    gt = tmp_path / "gt.json"
    gt.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
                "categories": [{"id": 1, "name": "a"}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}],
            }
        )
    )
    dt = tmp_path / "dt.json"
    if text is None:
        dt.write_bytes(b'[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1, "x": "\xff"}]')
    else:
        dt.write_text(text)
    r = _cli("--gt", gt, "--dt", dt, "--out", tmp_path / "out")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("detpipe evaluate: error: "), r.stderr
    assert message in lines[0], r.stderr
    assert not (tmp_path / "out").exists()
