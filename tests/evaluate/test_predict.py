"""Prediction plumbing: dataset YAML -> images + annotations, predictor -> COCO detections -> metrics.

The dataset comes from ``detpipe data synth`` + ``detpipe data yolo``; the ultralytics test
uses an untrained yolov8n built from its YAML (nothing downloaded), so it checks format and
plumbing, not accuracy. An oracle predictor (answers the ground truth) checks the class
mapping end to end: any mistake there would not give AP 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from detpipe.data.coco import load_coco
from detpipe.errors import InvalidInput
from detpipe.evaluate.predict import PredictedBoxes, class_to_category, resolve_val_set
from detpipe.evaluate.stage import evaluate_predictor


def _detpipe(*args, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "-q", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("predict")
    r = _detpipe("data", "synth", "--out", root / "data", "--images", 2, "--val-images", 6, "--classes", 3,
                 "--imgsz", 160, "--seed", 3)  # fmt: skip
    assert r.returncode == 0, r.stderr
    ann = root / "data" / "annotations"
    images = root / "data" / "images"
    r = _detpipe("data", "yolo", "--annotations", ann / "instances_train2017.json",
                 "--images-dir", images / "train2017", "--val-annotations", ann / "instances_val2017.json",
                 "--val-images-dir", images / "val2017", "--out", root / "yolo")  # fmt: skip
    assert r.returncode == 0, r.stderr
    spec = yaml.safe_load((root / "yolo" / "dataset.yaml").read_text())
    spec["val_annotations"] = str(ann / "instances_val2017.json")
    (root / "with_gt.yaml").write_text(yaml.safe_dump(spec))
    return {
        "root": root,
        "yaml": root / "yolo" / "dataset.yaml",
        "yaml_with_gt": root / "with_gt.yaml",
        "gt": ann / "instances_val2017.json",
    }


class OraclePredictor:
    """Answers each image's ground truth (images arrive in ground-truth order)."""

    def __init__(self, gt, names):
        self.gt, self.names, self.seen = gt, dict(enumerate(names)), 0
        self.cls_of_cat = {c: i for i, c in enumerate(np.sort(gt.category_ids).tolist())}

    def __call__(self, images):
        out = []
        for _ in images:
            keep = (self.gt.ann_image == self.seen) & ~self.gt.ann_iscrowd
            xywh = self.gt.ann_bbox[keep]
            cats = self.gt.category_ids[self.gt.ann_category[keep]]
            out.append(
                PredictedBoxes(
                    boxes=np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]],
                    scores=np.linspace(0.9, 0.5, len(xywh)),
                    classes=np.array([self.cls_of_cat[c] for c in cats.tolist()], np.int64),
                )
            )
            self.seen += 1
        return out


def test_val_set_resolution(dataset):
    val = resolve_val_set(dataset["yaml_with_gt"])
    assert val.annotations == dataset["gt"]
    gt = load_coco(val.annotations)
    images = val.images_for(gt)
    assert [p.name for p in images] == gt.file_names and all(p.is_file() for p in images)
    assert resolve_val_set(dataset["yaml"], gt=dataset["gt"]).annotations == dataset["gt"]
    with pytest.raises(InvalidInput, match=r"pass --gt VAL\.json or add 'val_annotations: FILE' to the YAML"):
        resolve_val_set(dataset["yaml"])
    train = load_coco(dataset["root"] / "data" / "annotations" / "instances_train2017.json")
    with pytest.raises(InvalidInput, match="2 of 2 images are not in the dataset's val split"):
        val.images_for(train)


def test_class_index_is_the_category_sorted_by_id(dataset):
    gt = load_coco(dataset["gt"])
    ids = class_to_category(["a", "b", "c"], gt)
    assert ids.tolist() == sorted(gt.category_ids.tolist())
    with pytest.raises(InvalidInput, match=r"the model/dataset has 2 classes but .* has 3 categories"):
        class_to_category(["a", "b"], gt)


def test_oracle_predictor_scores_ap_one(dataset):
    val = resolve_val_set(dataset["yaml_with_gt"])
    gt = load_coco(val.annotations)
    metrics, dt = evaluate_predictor(
        OraclePredictor(gt, val.names), gt, val.images_for(gt), batch=4, progress=False
    )
    assert len(dt) == int((~gt.ann_iscrowd).sum())
    assert metrics["map50_95"] == pytest.approx(1.0, abs=1e-3)  # boxes rounded to 3 decimals
    assert metrics["map50"] == 1.0
    assert np.trace(np.array(metrics["confusion_matrix"]["matrix"])[:-1, :-1]) == len(dt)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    from detpipe.ultralytics_env import configure_offline

    configure_offline()
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    model = YOLO("yolov8n.yaml")  # the architecture only: random weights, nothing downloaded
    model.model = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
    model.model.names = {0: "disc", 1: "square", 2: "triangle"}
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    model.save(path)
    return path


@pytest.mark.slow
def test_weights_and_data_predict_then_evaluate(dataset, tiny_weights, tmp_path):
    out = tmp_path / "eval"
    r = _detpipe("evaluate", "--weights", tiny_weights, "--data", dataset["yaml_with_gt"], "--out", out,
                 "--imgsz", 160, "--batch", 4)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert {"metrics.json", "detections.json", "summary.txt", "pr_curves.png"} <= {
        p.name for p in out.iterdir()
    }
    gt = load_coco(dataset["gt"])
    dets = json.loads((out / "detections.json").read_text())
    assert isinstance(dets, list) and dets, "an untrained head still scores many boxes above conf 0.001"
    assert {tuple(sorted(d)) for d in dets} == {("bbox", "category_id", "image_id", "score")}
    assert {d["image_id"] for d in dets} <= set(gt.image_ids.tolist())
    assert {d["category_id"] for d in dets} <= set(gt.category_ids.tolist())
    per_image = np.bincount([d["image_id"] for d in dets])
    assert per_image.max() <= 100  # max_det
    assert all(len(d["bbox"]) == 4 and d["bbox"][2] >= 0 and d["bbox"][3] >= 0 for d in dets)
    assert min(d["score"] for d in dets) >= 0.001
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["inputs"]["weights"] == str(tiny_weights) and metrics["counts"]["detections"] == len(dets)
    # the written detections evaluate to the very same numbers
    again = _detpipe(
        "evaluate", "--gt", dataset["gt"], "--dt", out / "detections.json", "--out", tmp_path / "m.json"
    )
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "m.json").read_text())["coco_stats"] == metrics["coco_stats"]


def test_weights_without_annotations_exit_2(dataset, tiny_weights, tmp_path):
    r = _detpipe("evaluate", "--weights", tiny_weights, "--data", dataset["yaml"], "--out", tmp_path / "x")
    assert r.returncode == 2 and "no val annotations" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()


def test_weights_are_evaluated_at_their_training_size_unless_imgsz(small_data, trained_pico, tmp_path):
    """Issue 21: evaluate defaulted to 640 while export used the training size (0.051 vs 0.139)."""
    common = ("--weights", trained_pico, "--data", small_data.yolo / "dataset.yaml",
              "--gt", small_data.val_annotations, "--device", "cpu")  # fmt: skip
    r = _detpipe("evaluate", *common, "--out", tmp_path / "default.json")
    assert r.returncode == 0, r.stderr
    default = json.loads((tmp_path / "default.json").read_text())
    assert default["inputs"]["predict"]["imgsz"] == 64  # the pico model is trained at 64 px
    assert default["map50_95"] > 0.1  # it scores ~0.27 at its own size
    r = _detpipe("evaluate", *common, "--imgsz", 96, "--out", tmp_path / "explicit.json")
    assert r.returncode == 0, r.stderr
    explicit = json.loads((tmp_path / "explicit.json").read_text())
    assert explicit["inputs"]["predict"]["imgsz"] == 96  # an explicit --imgsz still wins
    assert explicit["coco_stats"] != default["coco_stats"]
