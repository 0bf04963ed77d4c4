"""train_summary.json pieces on fixed inputs: subset names, best epoch, time, dataset hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from detpipe.errors import InvalidInput
from detpipe.train.summary import (
    MAP50,
    MAP5095,
    best_row,
    build_summary,
    dataset_hash,
    parse_subset_name,
    read_results,
    subset_name,
    subset_seed,
    training_seconds,
    trim_results,
)

HEADER = f"epoch,time,train/box_loss,metrics/precision(B),{MAP50},{MAP5095}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("train2017_0.3125_p", (0.3125, "p")),
        ("/data/yolo/train2017_5_random.txt", (5.0, "random")),
        ("train2017_100_topn.yaml", (100.0, "topn")),
        ("dataset.yaml", None),
        ("/runs/train2017_5_p/dataset.yaml", (5.0, "p")),  # a run dir names its subset too
    ],
)
def test_parse_subset_name(text: str, expected: tuple | None) -> None:
    assert parse_subset_name(text) == expected


def test_subset_name_prefers_the_train_list(tmp_path: Path) -> None:
    data = tmp_path / "train2017_10_p.yaml"
    data.write_text("path: /d\ntrain: train2017_2.5_random.txt\nval: val2017.txt\nnames: {0: a}\n")
    assert subset_name(data) == "train2017_2.5_random"
    plain = tmp_path / "train2017_10_p_copy.yaml"
    plain.write_text("path: /d\ntrain: train2017.txt\nval: val2017.txt\nnames: {0: a}\n")
    assert subset_name(plain) == "train2017_10_p"
    other = tmp_path / "dataset.yaml"
    other.write_text("train: images/train\nval: images/val\nnames: {0: a}\n")
    assert subset_name(other) is None


def test_subset_seed_comes_from_the_data_yaml(tmp_path: Path) -> None:
    data = tmp_path / "train2017_10_p.yaml"
    data.write_text("path: /d\ntrain: train2017_10_p.txt\nval: val2017.txt\nnames: {0: a}\nsubset_seed: 2\n")
    assert subset_seed(data) == 2
    rows = read_results(_csv(tmp_path, ["1,10,2.0,0.1,0.30,0.20"]))
    summary = build_summary(
        model="yolo12n.yaml",
        data=str(data),
        seed=0,
        rows=rows,
        config={},
        dataset_sha256="",
        ranks=[],
        weights={},
    )
    assert (summary["subset"], summary["subset_seed"], summary["seed"]) == ("train2017_10_p", 2, 0)
    for text in ("subset_seed: true\n", "subset_seed: '2'\n", "names: {0: a}\n", "[1, 2]\n"):
        data.write_text(text)
        assert subset_seed(data) is None, text
    assert subset_seed(tmp_path / "missing.yaml") is None


def _csv(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "results.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def test_best_row_is_the_earliest_maximum(tmp_path: Path) -> None:
    rows = read_results(
        _csv(
            tmp_path,
            [
                "1,10,2.0,0.1,0.30,0.20",
                "2,20,1.9,0.2,0.50,0.35",
                "3,30,1.8,0.2,0.55,0.35",
                "4,40,1.7,0.2,0.40,0.30",
            ],
        )
    )
    best = best_row(rows)
    assert best is not None and (best["epoch"], best[MAP50]) == (2.0, 0.50)


def test_training_seconds_sums_resumed_sessions(tmp_path: Path) -> None:
    # a first session of 2 epochs (time up to 20 s), resumed: time restarts at 0
    rows = read_results(_csv(tmp_path, ["1,10,1,0,0,0", "2,20,1,0,0,0", "3,12,1,0,0,0", "4,25.5,1,0,0,0"]))
    assert training_seconds(rows) == 45.5


def test_trim_results_drops_rows_past_the_checkpoint(tmp_path: Path) -> None:
    path = _csv(tmp_path, ["1,10,1,0,0,0", "2,20,1,0,0,0", "3,30,1,0,0,0"])
    assert trim_results(path, 2) == 2
    assert [r["epoch"] for r in read_results(path)] == [1.0, 2.0]
    assert trim_results(path, 5) == 2  # nothing to drop
    assert trim_results(tmp_path / "missing.csv", 1) == 0


def _dataset(root: Path, labels: dict[str, str]) -> tuple[list[Path], list[Path]]:
    images, label_files = [], []
    for name, text in labels.items():
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        images.append(root / "images" / f"{name}.jpg")
        label = root / "labels" / f"{name}.txt"
        if text is not None:
            label.write_text(text)
        label_files.append(label)
    return images, label_files


def test_dataset_hash_ignores_location_and_order_but_not_content(tmp_path: Path) -> None:
    labels = {"a": "0 0.5 0.5 0.1 0.1\n", "b": "1 0.2 0.2 0.1 0.1\n", "c": None}
    images, label_files = _dataset(tmp_path / "one", labels)
    h = dataset_hash(images, label_files, tmp_path / "one")
    moved_images, moved_labels = _dataset(tmp_path / "two", labels)
    assert dataset_hash(moved_images[::-1], moved_labels[::-1], tmp_path / "two") == h
    (tmp_path / "two" / "labels" / "b.txt").write_text("1 0.2 0.2 0.1 0.2\n")
    assert dataset_hash(moved_images, moved_labels, tmp_path / "two") != h
    assert dataset_hash(images[:2], label_files[:2], tmp_path / "one") != h  # a different list
    assert len(h) == 64


def test_build_summary(tmp_path: Path) -> None:
    data = tmp_path / "train2017_5_p.yaml"
    data.write_text("path: /d\ntrain: train2017_5_p.txt\nval: val2017.txt\nnames: {0: a}\n")
    rows = read_results(_csv(tmp_path, ["1,10,2.0,0.1,0.30,0.20", "2,20,1.9,0.2,0.50,0.35"]))
    ranks = [
        {"rank": 0, "images": 60, "train_seconds": 10.0, "gpu_mem_peak_gb": 3.5},
        {"rank": 1, "images": 60, "train_seconds": 12.0, "gpu_mem_peak_gb": 4.25},
    ]
    summary = build_summary(
        model="/x/yolo12n.yaml",
        data=str(data),
        seed=3,
        rows=rows,
        config={"p": Path("/a")},
        dataset_sha256="ab" * 32,
        ranks=ranks,
        weights={"best": "weights/best.pt", "last": "weights/last.pt"},
    )
    expected = {
        "model": "yolo12n",
        "fraction": 5.0,
        "strategy": "p",
        "subset": "train2017_5_p",
        "subset_seed": None,  # the YAML has no subset_seed key
        "seed": 3,
        "best_epoch": 2,
        "last_epoch": 2,
        "best_map5095": 0.35,
        "best_map50": 0.5,
        "wall_time_s": 20.0,
        "images_per_s": 10.0,
        "gpu_mem_peak_gb": 4.25,
        "config": {"p": "/a"},
        "world_size": 2,
    }
    assert {k: summary[k] for k in expected} == expected
    with pytest.raises(InvalidInput, match="no epochs"):
        build_summary(
            model="m", data=str(data), seed=0, rows=[], config={}, dataset_sha256="", ranks=[], weights={}
        )
