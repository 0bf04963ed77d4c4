"""``detpipe recommend``: the choices it makes, its outputs, and that train takes its hyp.yaml."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from detpipe.cli.main import main
from detpipe.recommend.dataset import measure
from detpipe.recommend.stage import RecommendConfig, recommend
from detpipe.report.stage import ReportConfig, write_report
from detpipe.train.config import build_config, load_hyp_file

SCALING = Path(__file__).parents[1] / "report" / "scaling.csv"


def _detpipe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "-q", "recommend", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _rec(tmp_path: Path, **kw) -> dict:
    base = {"platform": "orin-nx", "fps": 30.0, "sensor": "rgb", "classes": 5, "images": 50_000}
    return recommend(RecommendConfig(out=tmp_path / "rec", **{**base, **kw}))


def test_largest_scale_fast_enough(tmp_path):
    rec = _rec(tmp_path)  # orin-nx fp16 at 640: l 56.8 FPS >= 36, x 32.6 < 36
    assert (rec["model"], rec["imgsz"], rec["precision"]) == ("yolo12l", 640, "fp16")
    assert rec["fps_estimates"]["yolo12x"] == 32.6
    assert (rec["epochs"], rec["patience"], rec["lr0"]) == (429, 86, 0.007746)
    assert rec["augmentation"]["mixup"] == 0.15
    assert rec["images_needed"] == {"rule": 8000, "fit": None}


def test_int8_budget_allows_a_larger_scale(tmp_path):
    rec = _rec(tmp_path, map_budget=2.0)  # int8: x 48.9 FPS
    assert (rec["model"], rec["precision"]) == ("yolo12x", "int8")


def test_too_little_data_steps_the_scale_down(tmp_path):
    rec = _rec(tmp_path, images=8000)
    assert rec["model"] == "yolo12m"
    assert "8000 images is below yolo12l's minimum of 10000: yolo12m instead" in rec["warnings"]
    assert rec["reasons"][-1].startswith("images needed: 500 + 5 x 1500 = 8000")
    tiny = _rec(tmp_path, images=500)
    assert tiny["model"] == "yolo12n" and any(
        "below even yolo12n's minimum of 1000" in w for w in tiny["warnings"]
    )


def test_jetson_nano_lowers_the_input_size_for_fps(tmp_path):
    rec = _rec(tmp_path, platform="jetson-nano", fps=10.0)
    assert (rec["model"], rec["imgsz"], rec["precision"]) == ("yolo11n", 320, "fp16")
    assert "input reduced from 640 to 320 px to reach 10 FPS: small objects will suffer" in rec["warnings"]
    rec = _rec(tmp_path, platform="jetson-nano", fps=30.0)
    assert rec["model"] == "yolo11n" and rec["warnings"][0].startswith("no yolo11 scale reaches 30 FPS")


def test_thermal_small_objects(tmp_path):
    rec = _rec(tmp_path, sensor="thermal", small_share=0.6, platform="rtx-3080")
    assert rec["imgsz"] == 960 and rec["epochs"] == 935
    aug = rec["augmentation"]
    assert (aug["hsv_h"], aug["hsv_s"], aug["mixup"], aug["scale"]) == (0.0, 0.0, 0.0, 0.3)


def _coco(path: Path) -> Path:
    ann = [
        (1, 1, [0, 0, 20, 20], 0),  # 20 px at 640: small
        (1, 1, [100, 100, 40, 40], 0),
        (1, 2, [200, 200, 10, 10], 0),  # small
        (2, 1, [0, 0, 60, 60], 0),  # 1280 px image: 30 px at 640, small
        (2, 1, [300, 300, 100, 100], 0),
        (2, 2, [500, 500, 5, 5], 1),  # crowd: not counted
    ]
    data = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 640, "height": 480},
            {"id": 2, "file_name": "b.jpg", "width": 1280, "height": 1280},
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}],
        "annotations": [
            {
                "id": i,
                "image_id": img,
                "category_id": cat,
                "bbox": box,
                "area": box[2] * box[3],
                "iscrowd": crowd,
            }
            for i, (img, cat, box, crowd) in enumerate(ann, 1)
        ],
    }
    path.write_text(json.dumps(data))
    return path


def test_measure_a_coco_file(tmp_path):
    stats = measure(_coco(tmp_path / "ann.json"))
    assert (stats.classes, stats.images, stats.instances) == (2, 2, 5)
    assert (stats.imbalance, stats.small_share, stats.empty_classes) == (4.0, 0.6, ("c",))


def test_cli_writes_outputs_train_accepts(tmp_path):
    out = tmp_path / "rec"
    coco = _coco(tmp_path / "ann.json")
    proc = _detpipe(
        "--platform", "agx-orin", "--fps", "60", "--sensor", "thermal", "--coco", str(coco), "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["hyp.yaml", "recommendation.json"]
    rec = json.loads((out / "recommendation.json").read_text())
    for key in ("model", "imgsz", "epochs", "patience", "lr0", "augmentation", "precision", "images_needed"):
        assert key in rec
    assert rec["inputs"]["classes"] == 2 and rec["inputs"]["small_share"] == 0.6 and rec["imgsz"] == 960
    assert rec["epochs"] == round(600 + 150 * 2**0.5) and rec["model"] == "yolo12n"  # 2 images only
    assert "categories without instances: c" in rec["warnings"]
    assert proc.stdout.startswith("model          yolo12n\n")

    hyp = load_hyp_file(out / "hyp.yaml")  # what detpipe train --config reads
    cfg = build_config("d.yaml", rec["model_yaml"], str(tmp_path / "t"), hyp_file=out / "hyp.yaml")
    assert (cfg.epochs, cfg.imgsz, cfg.lr0, cfg.hsv_h, cfg.mixup) == (
        rec["epochs"],
        960,
        rec["lr0"],
        0.0,
        0.0,
    )
    assert cfg.extra["scale"] == 0.3 and cfg.extra["fliplr"] == 0.5
    overrides = yaml.safe_load((out / "hyp.yaml").read_text())  # the pipeline's train_overrides
    assert overrides == hyp
    assert (
        build_config("d.yaml", "yolo12n.yaml", str(tmp_path / "t"), sets=overrides).patience
        == rec["patience"]
    )


def test_images_from_a_sweep_report(tmp_path):
    write_report(ReportConfig(out=tmp_path / "report", table=SCALING, target=0.55, full_images=118287))
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    rec = _rec(tmp_path, platform="orin-nano", report=tmp_path / "report" / "report.json")
    assert rec["model"] == "yolo12s"  # a model the report has
    fit = rec["images_needed"]["fit"]
    assert fit["images"] == report["models"]["yolo12s"]["fit"]["target"]["images"]
    assert fit["target_map"] == 0.55 and fit["model"] == "yolo12s"
    out = _rec(tmp_path, platform="orin-nx", report=tmp_path / "report" / "report.json")
    assert out["images_needed"]["fit"] is None and any(
        "no yolo12l in the report" in w for w in out["warnings"]
    )


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--classes", "3"], "give --classes and --images, or --coco FILE"),
        (["--classes", "3", "--images", "10", "--fps", "0"], "--fps must be > 0"),
        (["--coco", "missing.json"], "missing.json"),
        (["--classes", "3", "--images", "10", "--target-map", "1.5"], "--target-map must be an mAP50-95"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, reason):
    base = ["-q", "recommend", "--platform", "orin-nx", "--sensor", "rgb", "--fps", "30"]
    assert main([*base, *args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("detpipe recommend: error: ")
    assert reason in err
    assert not (tmp_path / "out").exists()


def test_help_explains():
    proc = _detpipe("--help")
    assert proc.returncode == 0
    for word in ("jetson-nano", "thermal", "hyp.yaml", "--map-budget", "sqrt"):
        assert word in proc.stdout
