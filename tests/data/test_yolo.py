"""COCO -> YOLO conversion: exact label lines, layout ultralytics reads, dataset and subset YAMLs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from detpipe.data.yolo import YoloConfig, convert
from detpipe.errors import InvalidInput, ValidationFailed

# categories deliberately out of id order: class index = rank of the id, so dog=0, cat=1
CATEGORIES = [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}]


def _train_coco() -> dict:
    return {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
            {"id": 2, "file_name": "b.jpg", "width": 50, "height": 50},
            {"id": 3, "file_name": "c.jpg", "width": 64, "height": 48},
        ],
        "categories": CATEGORIES,
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 20, 30, 40], "iscrowd": 0},
            {
                "id": 2,
                "image_id": 1,
                "category_id": 3,
                "bbox": [50, 40, 50, 40],
                "iscrowd": 1,
            },  # crowd: skipped
            {"id": 3, "image_id": 1, "category_id": 3, "bbox": [0, 0, 20, 8], "iscrowd": 0},
            # touches the right edge and overhangs it by 0.5 px (within COCO tolerance): clipped
            {"id": 4, "image_id": 2, "category_id": 3, "bbox": [40.0, 30.0, 10.5, 20.0]},
        ],
    }


EXPECTED = {
    "a.txt": "1 0.250000 0.500000 0.300000 0.500000\n0 0.100000 0.050000 0.200000 0.100000\n",
    "b.txt": "0 0.900000 0.800000 0.200000 0.400000\n",
    "c.txt": "",  # no annotations: an empty label file
}


def _val_coco() -> dict:
    return {
        "images": [{"id": 10, "file_name": "v.jpg", "width": 40, "height": 40}],
        "categories": CATEGORIES,
        "annotations": [{"id": 1, "image_id": 10, "category_id": 7, "bbox": [0, 0, 40, 20]}],
    }


def _write_split(root, split, coco):
    images = root / "images" / split
    images.mkdir(parents=True)
    for im in coco["images"]:
        Image.new("RGB", (im["width"], im["height"]), (90, 120, 150)).save(images / im["file_name"])
    ann = root / "annotations" / f"instances_{split}.json"
    ann.parent.mkdir(exist_ok=True)
    ann.write_text(json.dumps(coco))
    return ann, images


@pytest.fixture
def src(tmp_path):
    root = tmp_path / "coco"
    train = _write_split(root, "train2017", _train_coco())
    val = _write_split(root, "val2017", _val_coco())
    return train, val


def _cfg(src, out, **kw):
    (train_ann, train_images), (val_ann, val_images) = src
    return YoloConfig(
        annotations=train_ann,
        images_dir=train_images,
        val_annotations=val_ann,
        val_images_dir=val_images,
        out=out,
        **kw,
    )


def test_labels_layout_and_yaml(src, tmp_path):
    out = tmp_path / "yolo"
    yamls = convert(_cfg(src, out))
    assert yamls == [out / "dataset.yaml"]
    labels = out / "labels" / "train2017"
    assert {p.name: p.read_text() for p in labels.iterdir()} == EXPECTED
    assert (out / "labels" / "val2017" / "v.txt").read_text() == "1 0.500000 0.250000 1.000000 0.500000\n"
    (_, train_images), (_, val_images) = src
    assert (out / "images" / "train2017").readlink() == train_images
    assert (out / "images" / "val2017").readlink() == val_images
    assert (out / "train2017.txt").read_text() == (
        "./images/train2017/a.jpg\n./images/train2017/b.jpg\n./images/train2017/c.jpg\n"
    )
    assert (out / "val2017.txt").read_text() == "./images/val2017/v.jpg\n"
    assert yaml.safe_load((out / "dataset.yaml").read_text()) == {
        "path": str(out),
        "train": "train2017.txt",
        "val": "val2017.txt",
        "names": {0: "dog", 1: "cat"},
    }


def test_without_val_the_yaml_validates_on_train(src, tmp_path):
    (train_ann, train_images), _ = src
    out = tmp_path / "yolo"
    convert(YoloConfig(annotations=train_ann, images_dir=train_images, out=out))
    doc = yaml.safe_load((out / "dataset.yaml").read_text())
    assert (doc["train"], doc["val"]) == ("train2017.txt", "train2017.txt")
    assert sorted(p.name for p in (out / "images").iterdir()) == ["train2017"]


def _subsets(tmp_path):
    d = tmp_path / "subsets"
    d.mkdir()
    (d / "train2017_50_p.txt").write_text("./images/train2017/a.jpg\n./images/train2017/c.jpg\n")
    (d / "train2017_0.3125_random.txt").write_text("./images/train2017/b.jpg\n")
    (d / "summary.json").write_text("{}")  # other outputs of `detpipe subsets` are ignored
    (d / "class_distribution.csv").write_text("strategy,fraction\n")
    return d


def test_subset_yamls(src, tmp_path):
    out = tmp_path / "yolo"
    yamls = convert(_cfg(src, out, subsets_dir=_subsets(tmp_path)))
    assert yamls == [out / "dataset.yaml", out / "train2017_0.3125_random.yaml", out / "train2017_50_p.yaml"]
    assert (out / "train2017_50_p.txt").read_text() == "./images/train2017/a.jpg\n./images/train2017/c.jpg\n"
    assert (out / "train2017_0.3125_random.txt").read_text() == "./images/train2017/b.jpg\n"
    assert yaml.safe_load((out / "train2017_50_p.yaml").read_text()) == {
        "path": str(out),
        "train": "train2017_50_p.txt",
        "val": "val2017.txt",
        "names": {0: "dog", 1: "cat"},
    }
    assert not (out / "summary.json").exists()


def test_subset_yamls_carry_the_seed_of_the_draw(src, tmp_path):
    """``subset_seed`` = the subsets dir's summary.json ``seed``; ultralytics reads the YAML as before."""
    from detpipe.ultralytics_env import configure_offline

    d = _subsets(tmp_path)
    (d / "summary.json").write_text(json.dumps({"seed": 3, "subsets": []}))
    out = tmp_path / "yolo"
    convert(_cfg(src, out, subsets_dir=d))
    doc = yaml.safe_load((out / "train2017_50_p.yaml").read_text())
    assert doc == {
        "path": str(out),
        "train": "train2017_50_p.txt",
        "val": "val2017.txt",
        "names": {0: "dog", 1: "cat"},
        "subset_seed": 3,
    }
    assert "subset_seed" not in yaml.safe_load((out / "dataset.yaml").read_text())  # not a subset

    configure_offline(tmp_path / "ul")
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(out / "train2017_50_p.yaml"))
    assert (data["train"], data["nc"], data["subset_seed"]) == (str(out / "train2017_50_p.txt"), 2, 3)

    (d / "summary.json").unlink()  # lists without a summary: no key
    convert(_cfg(src, out, subsets_dir=d))
    assert "subset_seed" not in yaml.safe_load((out / "train2017_50_p.yaml").read_text())
    (d / "summary.json").write_text('{"seed": "3"}')
    with pytest.raises(InvalidInput, match=r"summary\.json: 'seed' is '3', expected an integer"):
        convert(_cfg(src, tmp_path / "yolo2", subsets_dir=d))
    assert not (tmp_path / "yolo2").exists()


def test_rerun_replaces_output(src, tmp_path):
    out = tmp_path / "yolo"
    convert(_cfg(src, out, subsets_dir=_subsets(tmp_path)))
    convert(_cfg(src, out))
    assert sorted(p.name for p in out.iterdir()) == [
        "dataset.yaml",
        "images",
        "labels",
        "train2017.txt",
        "val2017.txt",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco", "subsets", "yolo"]  # no temp dirs left


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (
            lambda d: (d / "train2017_5_p.txt").write_text("./images/train2017/zzz.jpg\n"),
            "line 1: './images/train2017/zzz.jpg'",
        ),
        (
            lambda d: (d / "train2017_5_p.txt").write_text("images/train2017/a.jpg\n"),
            "expected ./images/train2017/<file_name>",
        ),
        (lambda d: (d / "train2017_5_p.txt").write_text("\n"), "train2017_5_p.txt: lists no images"),
        (
            lambda d: [p.unlink() for p in d.glob("*.txt")],
            "no subset lists named train2017_<pct>_<strategy>.txt",
        ),
    ],
)
def test_bad_subsets_write_nothing(src, tmp_path, mutate, error):
    d = _subsets(tmp_path)
    mutate(d)
    with pytest.raises(InvalidInput, match=re.escape(error)):
        convert(_cfg(src, tmp_path / "yolo", subsets_dir=d))
    assert not (tmp_path / "yolo").exists()


def test_bad_inputs(src, tmp_path):
    (train_ann, train_images), (val_ann, _) = src
    out = tmp_path / "yolo"
    with pytest.raises(InvalidInput, match="give --val-annotations and --val-images-dir together"):
        convert(YoloConfig(annotations=train_ann, images_dir=train_images, val_annotations=val_ann, out=out))
    other = json.loads(val_ann.read_text())
    other["categories"] = [{"id": 7, "name": "cat"}, {"id": 3, "name": "wolf"}]
    val_ann.write_text(json.dumps(other))
    with pytest.raises(InvalidInput, match="categories differ"):
        convert(_cfg(src, out))
    with pytest.raises(InvalidInput, match="output would replace the images"):
        convert(YoloConfig(annotations=train_ann, images_dir=train_images, out=train_images.parent))
    coco = _train_coco()
    coco["annotations"][0]["bbox"] = [90, 20, 30, 40]  # outside the 100 px wide image
    train_ann.write_text(json.dumps(coco))
    with pytest.raises(ValidationFailed) as err:
        convert(YoloConfig(annotations=train_ann, images_dir=train_images, out=out))
    assert err.value.problems == [
        f"{train_ann}: annotation id=1: bbox [90, 20, 30, 40] lies outside image id=1 (100x80)"
    ]
    assert not out.exists()


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", *args], capture_output=True, text=True, timeout=120
    )


def test_cli(src, tmp_path):
    (train_ann, train_images), (val_ann, val_images) = src
    out = tmp_path / "yolo"
    base = [
        "data",
        "yolo",
        "--annotations",
        str(train_ann),
        "--images-dir",
        str(train_images),
        "--out",
        str(out),
    ]
    res = _cli(*base, "--val-annotations", str(val_ann), "--val-images-dir", str(val_images))
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{out / 'dataset.yaml'}\n"

    bad = tmp_path / "bad.json"
    coco = _train_coco()
    coco["annotations"][3]["category_id"] = 5
    bad.write_text(json.dumps(coco))
    out2 = tmp_path / "yolo2"
    res = _cli(
        "data", "yolo", "--annotations", str(bad), "--images-dir", str(train_images), "--out", str(out2)
    )
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        f"{bad}: annotation id=4: category_id=5 is not a known category",
        f"detpipe data: error: {bad}: 1 problem(s) found, nothing written",
    ]
    res = _cli(*base[:-1], str(out2), "--val-annotations", str(val_ann))
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "detpipe data: error: give --val-annotations and --val-images-dir together, or neither"
    )
    assert not out2.exists()


def test_ultralytics_reads_the_labels_through_the_link(src, tmp_path):
    """ultralytics maps .../images/... to .../labels/... without resolving the symlink."""
    from detpipe.ultralytics_env import configure_offline

    configure_offline(tmp_path / "ul")
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    out = tmp_path / "yolo"
    convert(_cfg(src, out))
    data = check_det_dataset(str(out / "dataset.yaml"))
    assert (data["train"], data["nc"], data["names"]) == (str(out / "train2017.txt"), 2, {0: "dog", 1: "cat"})
    ds = YOLODataset(img_path=data["train"], data=data, augment=False, imgsz=64, task="detect")
    assert ds.label_files == [str(out / "labels" / "train2017" / n) for n in ("a.txt", "b.txt", "c.txt")]
    got = {Path(lb["im_file"]).name: (lb["cls"].ravel().tolist(), lb["bboxes"]) for lb in ds.labels}
    assert got["a.jpg"][0] == [1.0, 0.0]
    np.testing.assert_allclose(got["a.jpg"][1], [[0.25, 0.5, 0.3, 0.5], [0.1, 0.05, 0.2, 0.1]], atol=1e-6)
    np.testing.assert_allclose(got["b.jpg"][1], [[0.9, 0.8, 0.2, 0.4]], atol=1e-6)
    assert got["c.jpg"][0] == [] and got["c.jpg"][1].shape == (0, 4)
