"""Synthetic dataset: COCO layout that validates, determinism, and the properties later stages rely on."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from detpipe.data import synth
from detpipe.data.coco import load_coco
from detpipe.data.shapes import MAX_CLASSES
from detpipe.data.synth import SynthConfig, rle_encode, synthesize
from detpipe.errors import InvalidInput
from detpipe.io import sha256_file

TRAIN, VAL = 120, 40


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "data"
    summary = synthesize(SynthConfig(out=out, images=TRAIN, val_images=VAL, classes=6, imgsz=320, seed=0))
    return out, summary


def _coco(out, split):
    return json.loads((out / "annotations" / f"instances_{split}.json").read_text())


def _hashes(out):
    return {p.relative_to(out).as_posix(): sha256_file(p) for p in sorted(out.rglob("*")) if p.is_file()}


def test_layout_validates_and_images_match(dataset):
    out, _ = dataset
    assert sorted(p.name for p in (out / "annotations").iterdir()) == [
        "instances_train2017.json",
        "instances_val2017.json",
    ]
    ids = []
    for split, n in (("train2017", TRAIN), ("val2017", VAL)):
        ds = load_coco(out / "annotations" / f"instances_{split}.json", out / "images" / split)
        assert ds.num_images == n
        assert sorted(p.name for p in (out / "images" / split).iterdir()) == sorted(ds.file_names)
        coco = _coco(out, split)
        assert [c["id"] for c in coco["categories"]] == [1, 2, 3, 4, 5, 6]
        assert coco["categories"][0] == {"id": 1, "name": "disc", "supercategory": "shape"}
        for im in coco["images"]:
            assert im["file_name"] == f"{im['id']:012d}.jpg"
            assert max(im["width"], im["height"]) == 320
            with Image.open(out / "images" / split / im["file_name"]) as pil:
                assert (pil.format, pil.mode, pil.size) == ("JPEG", "RGB", (im["width"], im["height"]))
            ids.append(im["id"])
    assert ids == list(range(1, TRAIN + VAL + 1))  # unique across splits, like COCO
    sizes = {(im["width"], im["height"]) for im in _coco(out, "train2017")["images"]}
    assert len(sizes) >= 4  # varied aspect ratios, both orientations
    assert any(w > h for w, h in sizes) and any(h > w for w, h in sizes)


def test_annotations_are_consistent(dataset):
    out, _ = dataset
    coco = _coco(out, "train2017")
    images = {im["id"]: im for im in coco["images"]}
    tight = 0
    for a in coco["annotations"]:
        im = images[a["image_id"]]
        x, y, w, h = a["bbox"]
        assert min(x, y) >= 0 and min(w, h) >= 2
        assert x + w <= im["width"] and y + h <= im["height"]
        assert 12 <= a["area"] <= w * h
        if a["iscrowd"]:
            rle = mask_utils.frPyObjects(a["segmentation"], im["height"], im["width"])
            m = mask_utils.decode(rle)
            assert m.sum() == a["area"]
            assert mask_utils.toBbox(rle).tolist() == a["bbox"]
        else:
            assert a["segmentation"] and all(len(p) >= 6 and len(p) % 2 == 0 for p in a["segmentation"])
            pts = np.concatenate([np.reshape(p, (-1, 2)) for p in a["segmentation"]])
            lo, hi = pts.min(axis=0).tolist(), pts.max(axis=0).tolist()
            assert lo >= [x, y] and hi <= [x + w - 1, y + h - 1]
            tight += lo == [x, y] and hi == [x + w - 1, y + h - 1]  # traces the visible pixels
    assert tight >= 0.95 * len(coco["annotations"])  # the rest lost 1-2 px slivers of their outline


def test_summary_matches_files(dataset):
    out, summary = dataset
    assert summary["classes"] == ["disc", "square", "triangle", "star", "cross", "ring"]
    for split in ("train2017", "val2017"):
        coco = _coco(out, split)
        s = summary["splits"][split]
        plain = [a for a in coco["annotations"] if not a["iscrowd"]]
        per_class = Counter(summary["classes"][a["category_id"] - 1] for a in plain)
        assert s["per_class"] == {name: per_class[name] for name in summary["classes"]}
        assert s["instances"] == len(plain)
        assert s["crowd_regions"] == len(coco["annotations"]) - len(plain)
        assert s["images"] == len(coco["images"])
        assert sum(s["size_buckets"].values()) == len(plain)


def test_dataset_properties(dataset):
    _, summary = dataset
    train = summary["splits"]["train2017"]
    assert 0.05 <= train["empty_images"] / TRAIN <= 0.10
    counts = sorted(train["per_class"].values())
    assert counts[0] > 0 and counts[-1] >= 4 * counts[0], counts  # long tail
    assert min(train["size_buckets"].values()) >= 10, train["size_buckets"]  # small, medium and large
    assert train["multi_class_images"] >= TRAIN // 3
    assert train["crowd_regions"] == round(TRAIN * synth.CROWD_SHARE)
    assert summary["splits"]["val2017"]["crowd_regions"] == 1


def test_objects_occlude_each_other(dataset):
    out, _ = dataset
    boxes: dict[int, list] = {}
    for a in _coco(out, "train2017")["annotations"]:
        if not a["iscrowd"]:
            boxes.setdefault(a["image_id"], []).append(a["bbox"])

    def overlaps(a, b):
        return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]

    n = sum(overlaps(a, b) for bs in boxes.values() for i, a in enumerate(bs) for b in bs[i + 1 :])
    assert n >= 20


def test_same_seed_same_bytes_other_seed_differs(dataset, tmp_path):
    out, summary = dataset
    again = synthesize(SynthConfig(out=tmp_path / "a", images=TRAIN, val_images=VAL, seed=0))
    assert again["splits"] == summary["splits"]
    assert _hashes(tmp_path / "a") == _hashes(out)
    synthesize(SynthConfig(out=tmp_path / "b", images=TRAIN, val_images=VAL, seed=1))
    a, b = _hashes(tmp_path / "a"), _hashes(tmp_path / "b")
    assert a.keys() == b.keys()
    assert sum(a[k] != b[k] for k in a) == len(a)  # every image and both JSON files differ


def test_defaults_and_many_classes(tmp_path):
    cfg = SynthConfig(out=tmp_path / "d", images=24, classes=MAX_CLASSES, imgsz=128, seed=3)
    assert cfg.num_val == 6
    summary = synthesize(cfg)
    assert len(summary["classes"]) == len(set(summary["classes"])) == MAX_CLASSES
    assert summary["splits"]["val2017"]["images"] == 6
    load_coco(
        tmp_path / "d" / "annotations" / "instances_train2017.json", tmp_path / "d" / "images" / "train2017"
    )


def test_rle_matches_pycocotools():
    rng = np.random.default_rng(0)
    m = rng.random((7, 5)) > 0.5
    m[0, 0] = True  # a run of ones first: counts must start with a zero-length run
    for mask in (m, ~m, np.zeros((3, 4), bool)):
        rle = rle_encode(mask)
        assert rle["size"] == [mask.shape[0], mask.shape[1]]
        assert sum(rle["counts"]) == mask.size
        decoded = mask_utils.decode(mask_utils.frPyObjects(rle, *mask.shape))
        np.testing.assert_array_equal(decoded, mask)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": MAX_CLASSES + 1}, f"classes must be between 1 and {MAX_CLASSES}, got {MAX_CLASSES + 1}"),
        ({"images": 0}, "images must be >= 1, got 0"),
        ({"imgsz": 32}, "imgsz must be between 64 and 4096 px, got 32"),
        ({"seed": -1}, "seed must be >= 0, got -1"),
    ],
)
def test_bad_config(tmp_path, kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        synthesize(SynthConfig(out=tmp_path / "x", **kwargs))
    assert list(tmp_path.iterdir()) == []


def test_failure_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def broken(pixels):
        calls.append(1)
        if len(calls) == 5:
            raise OSError("disk full")
        return b"jpeg"

    monkeypatch.setattr(synth, "_jpeg", broken)
    with pytest.raises(OSError, match="disk full"):
        synthesize(SynthConfig(out=tmp_path / "x", images=10))
    assert list(tmp_path.iterdir()) == []


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", *args], capture_output=True, text=True, timeout=120
    )


def test_cli(tmp_path):
    res = _cli(
        "data", "synth", "--out", str(tmp_path / "d"), "--images", "12", "--classes", "3", "--seed", "5"
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["classes"] == ["disc", "square", "triangle"]
    assert summary["splits"]["val2017"]["images"] == 3

    res = _cli("data", "synth", "--out", str(tmp_path / "e"), "--classes", "17")
    assert res.returncode == 2
    assert res.stderr.strip() == f"detpipe data: error: classes must be between 1 and {MAX_CLASSES}, got 17"
    assert not (tmp_path / "e").exists()
