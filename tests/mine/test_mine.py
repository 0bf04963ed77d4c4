"""``detpipe mine`` with the session's trained pico model on constructed pools: deterministic
picks, blank images first for uncertainty, no near-duplicates for diversity, pre-annotations
that pycocotools loads with the pool's file names, --exclude, a store prefix as the pool, and
the CLI (a summary; exit 2 in one line on bad input)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from detpipe.errors import InvalidInput
from detpipe.mine.scores import class_entropy, k_center_greedy, uncertainty
from detpipe.mine.stage import MineConfig, mine
from detpipe.runtime.nms import Detections


@pytest.fixture(scope="module")
def pool(small_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 val images of the synthetic set and 3 blank (uniform grey) images."""
    d = tmp_path_factory.mktemp("pool")
    for src in sorted(small_data.val_images.glob("*.jpg"))[:12]:
        shutil.copy(src, d / src.name)
    for i in range(3):
        cv2.imwrite(str(d / f"blank-{i}.jpg"), np.full((64, 64, 3), 114, np.uint8))
    return d


def picks(out: Path) -> list[str]:
    return [p["image"] for p in json.loads((out / "selection.json").read_text())["picks"]]


def test_uncertainty_puts_images_without_a_confident_detection_first(pool, trained_pico, tmp_path):
    summary = mine(MineConfig(str(pool), trained_pico, 5, tmp_path / "u", progress=False))
    assert summary["picked"] == 5 and summary["pool_images"] == 15
    sel = json.loads((tmp_path / "u/selection.json").read_text())["picks"]
    blanks = [p for p in sel if p["image"].startswith("blank-")]
    assert len(blanks) == 3 and all(p["score"] == 1.0 for p in blanks)  # no confident detection
    assert all(p["score"] == 1.0 for p in sel if p["rank"] <= max(b["rank"] for b in blanks))
    assert [p["rank"] for p in sel] == [1, 2, 3, 4, 5]
    assert [p["score"] for p in sel] == sorted((p["score"] for p in sel), reverse=True)
    assert (tmp_path / "u/contact_sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_pool_model_and_seed_same_picks(pool, trained_pico, tmp_path):
    for strategy in ("random", "diversity", "entropy"):
        a = mine(
            MineConfig(
                str(pool), trained_pico, 4, tmp_path / f"{strategy}-a", strategy, seed=3, progress=False
            )
        )
        b = mine(
            MineConfig(
                str(pool), trained_pico, 4, tmp_path / f"{strategy}-b", strategy, seed=3, progress=False
            )
        )
        assert picks(tmp_path / f"{strategy}-a") == picks(tmp_path / f"{strategy}-b"), strategy
        assert a["picked"] == b["picked"] == 4
    other = mine(MineConfig(str(pool), trained_pico, 4, tmp_path / "r-7", "random", seed=7, progress=False))
    assert other["picked"] == 4 and picks(tmp_path / "r-7") != picks(tmp_path / "random-a")


def test_diversity_skips_near_duplicates(small_data, trained_pico, tmp_path):
    d = tmp_path / "dups"
    d.mkdir()
    sources = sorted(small_data.val_images.glob("*.jpg"))[:4]
    for i, src in enumerate(sources):  # each image five times, slightly different JPEG noise
        img = cv2.imread(str(src))
        for k in range(5):
            noisy = np.clip(
                img.astype(np.int16) + np.random.default_rng(k).integers(-2, 3, img.shape), 0, 255
            )
            cv2.imwrite(str(d / f"img{i}-copy{k}.jpg"), noisy.astype(np.uint8))
    mine(MineConfig(str(d), trained_pico, 4, tmp_path / "div", "diversity", progress=False))
    assert sorted(p.split("-")[0] for p in picks(tmp_path / "div")) == ["img0", "img1", "img2", "img3"]


def test_preannotations_load_in_pycocotools_with_the_pool_names(pool, trained_pico, tmp_path):
    from pycocotools.coco import COCO

    mine(MineConfig(str(pool), trained_pico, 15, tmp_path / "all", "random", progress=False))
    coco = COCO(str(tmp_path / "all/preannotations.json"))
    names = {im["file_name"] for im in coco.dataset["images"]}
    assert names == {p.name for p in pool.iterdir()}
    assert coco.dataset["annotations"], "the trained model finds objects on the val images"
    for ann in coco.dataset["annotations"]:
        assert ann["image_id"] in coco.imgs and ann["category_id"] in coco.cats and 0 < ann["score"] <= 1
        im = coco.imgs[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and x + w <= im["width"] + 0.01 and y + h <= im["height"] + 0.01


def test_exclude_and_a_store_prefix_pool(pool, trained_pico, tmp_path):
    from detpipe.store import LocalStore

    labeled = {"images": [{"id": 1, "file_name": "val2017/blank-0.jpg"}], "annotations": [], "categories": []}
    (tmp_path / "labeled.json").write_text(json.dumps(labeled))
    store = LocalStore(tmp_path / "store")
    for p in sorted(pool.iterdir()):
        store.put_file(f"payloads/pico/1/2026-12-06/{p.name}", p)
    out = tmp_path / "s"
    cfg = MineConfig(f"{store.uri}/payloads/pico", trained_pico, 3, out, exclude=tmp_path / "labeled.json")
    summary = mine(cfg)
    assert summary["pool_images"] == 14
    assert "1/2026-12-06/blank-0.jpg" not in picks(out)
    assert {"1/2026-12-06/blank-1.jpg", "1/2026-12-06/blank-2.jpg"} <= set(picks(out))


def test_scores_on_constructed_outputs():
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    sure = Detections(np.ones((2, 4), np.float32), np.array([0.9, 0.6], np.float32), np.zeros(2, np.int64))
    assert uncertainty(empty) == 1.0 and uncertainty(sure) == pytest.approx(0.4)
    raw = np.zeros((4 + 3, 10), np.float32)
    raw[4:, :] = [[0.9], [0.01], [0.01]]
    confused = raw.copy()
    confused[4:, :] = 0.5
    assert class_entropy(raw) < 0.2 < 0.99 < class_entropy(confused) <= 1.0
    feats = np.array([[1, 0], [1, 0.01], [0, 1], [-1, 0]], np.float64)
    chosen, _ = k_center_greedy(feats, 3, seed=0)
    assert len(set(chosen)) == 3 and not {0, 1} <= set(chosen)


def test_cli_summary_and_bad_input(pool, trained_pico, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    base = [
        sys.executable,
        "-m",
        "detpipe.cli.main",
        "mine",
        "--pool",
        str(pool),
        "--weights",
        str(trained_pico),
    ]
    args = [*base, "--budget", "2", "--out", str(tmp_path / "c")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["picked"] == 2
    for bad, message in [
        (
            ["--budget", "2", "--out", str(tmp_path / "x"), "--pool", str(tmp_path / "nope")],
            "no such directory",
        ),
        (
            [
                "--budget",
                "2",
                "--out",
                str(tmp_path / "y"),
                "--strategy",
                "diversity",
                "--weights",
                str(tmp_path / "c/selection.json"),
            ],
            "PyTorch weights",
        ),
    ]:
        done = subprocess.run([*base, *bad], capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr.strip().splitlines()[-1] and "Traceback" not in done.stderr
    with pytest.raises(InvalidInput, match="one of"):
        MineConfig(str(pool), trained_pico, 1, tmp_path, strategy="magic")
