"""``detpipe data merge`` on a synthetic COCO set split in two: ids renumbered, categories matched
by name (remapped when numbered otherwise), duplicates (file name or content) and unknown
categories refused with nothing written; the result loads in pycocotools."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from detpipe.data.coco import load_coco
from detpipe.data.merge import MergeConfig, merge_coco
from detpipe.data.synth import SynthConfig, synthesize
from detpipe.errors import InvalidInput


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(base.json, add.json, images dir): the synthetic train set's first 16 images and the rest."""
    root = tmp_path_factory.mktemp("merge")
    synthesize(SynthConfig(out=root / "data", images=24, val_images=4, classes=3, imgsz=96, seed=0))
    raw = json.loads((root / "data/annotations/instances_train2017.json").read_text())
    base_ids = {im["id"] for im in raw["images"][:16]}

    def part(keep) -> dict:
        return {**raw, "images": [im for im in raw["images"] if keep(im["id"])],
                "annotations": [a for a in raw["annotations"] if keep(a["image_id"])]}  # fmt: skip

    (root / "base.json").write_text(json.dumps(part(lambda i: i in base_ids)))
    added = part(lambda i: i not in base_ids)
    for im in added["images"]:  # the labeling tool numbered from 1
        old = im["id"]
        im["id"] = old - 16
        for a in added["annotations"]:
            if a["image_id"] == old:
                a["image_id"] = im["id"]
    (root / "add.json").write_text(json.dumps(added))
    return root / "base.json", root / "add.json", root / "data/images/train2017"


def test_merge_renumbers_and_loads_in_pycocotools(split, tmp_path: Path):
    from pycocotools.coco import COCO

    base, add, images = split
    summary = merge_coco(MergeConfig(base, add, images, tmp_path / "merged.json"))
    merged = load_coco(tmp_path / "merged.json", images)
    b, a = load_coco(base), load_coco(add)
    assert merged.num_images == b.num_images + a.num_images == summary["images"] == 24
    assert merged.num_annotations == b.num_annotations + a.num_annotations
    assert (
        len(set(merged.image_ids.tolist())) == 24
        and len(set(merged.ann_ids.tolist())) == merged.num_annotations
    )
    assert summary["image_ids_from"] == int(b.image_ids.max()) + 1
    coco = COCO(str(tmp_path / "merged.json"))
    assert len(coco.getImgIds()) == 24 and len(coco.getAnnIds()) == merged.num_annotations
    # every added annotation still sits on its own image (by file name)
    raw_add = json.loads(add.read_text())
    name = {im["id"]: im["file_name"] for im in raw_add["images"]}
    per_file = {}
    for ann in raw_add["annotations"]:
        per_file.setdefault(name[ann["image_id"]], []).append(ann["bbox"])
    merged_raw = json.loads((tmp_path / "merged.json").read_text())
    mname = {im["id"]: im["file_name"] for im in merged_raw["images"]}
    for file_name, boxes in per_file.items():
        assert sorted(
            a["bbox"] for a in merged_raw["annotations"] if mname[a["image_id"]] == file_name
        ) == sorted(boxes)


def test_categories_numbered_otherwise_are_remapped_by_name(split, tmp_path: Path):
    base, add, images = split
    raw = json.loads(add.read_text())
    shift = {c["id"]: c["id"] + 100 for c in raw["categories"]}
    raw["categories"] = [{**c, "id": shift[c["id"]]} for c in raw["categories"]]
    raw["annotations"] = [{**a, "category_id": shift[a["category_id"]]} for a in raw["annotations"]]
    (tmp_path / "add.json").write_text(json.dumps(raw))
    summary = merge_coco(MergeConfig(base, tmp_path / "add.json", images, tmp_path / "merged.json"))
    assert summary["categories_remapped"] == {str(new): old for old, new in shift.items()}
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert {a["category_id"] for a in merged["annotations"]} <= {c["id"] for c in merged["categories"]}


def test_unknown_category_and_duplicates_are_refused_and_nothing_is_written(split, tmp_path: Path):
    base, add, images = split
    out = tmp_path / "merged.json"
    raw = json.loads(add.read_text())
    raw["categories"][0] = {**raw["categories"][0], "name": "zebra"}
    (tmp_path / "bad-cat.json").write_text(json.dumps(raw))
    with pytest.raises(InvalidInput, match=r"categories \['zebra'\] are not in"):
        merge_coco(MergeConfig(base, tmp_path / "bad-cat.json", images, out))

    dup = json.loads(base.read_text())  # an image of the base, labeled again
    dup["images"] = dup["images"][:1]
    dup["annotations"] = [a for a in dup["annotations"] if a["image_id"] == dup["images"][0]["id"]]
    (tmp_path / "dup-name.json").write_text(json.dumps(dup))
    with pytest.raises(InvalidInput, match="same file name"):
        merge_coco(MergeConfig(base, tmp_path / "dup-name.json", images, out))

    copies = tmp_path / "copies"  # the same photo under another name
    copies.mkdir()
    shutil.copy(images / dup["images"][0]["file_name"], copies / "renamed.jpg")
    dup["images"][0] = {**dup["images"][0], "file_name": "renamed.jpg"}
    (tmp_path / "dup-content.json").write_text(json.dumps(dup))
    with pytest.raises(InvalidInput, match=r"renamed.jpg is \S+ of .*base.json already \(same content"):
        merge_coco(MergeConfig(base, tmp_path / "dup-content.json", images, out, add_images_dir=copies))
    assert not out.exists()


def test_cli_prints_a_summary_and_exits_2_in_one_line(split, tmp_path: Path):
    base, add, images = split
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}

    def merge(base_file: Path, out: Path) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "detpipe.cli.main", "data", "merge", "--base", str(base_file),
               "--add", str(add), "--images-dir", str(images), "--out", str(out)]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)

    done = merge(base, tmp_path / "m.json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["added_images"] == 8
    again = merge(tmp_path / "m.json", tmp_path / "m2.json")  # the same images a second time
    assert again.returncode == 2 and "same file name" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and "Traceback" not in again.stderr
    assert not (tmp_path / "m2.json").exists()
