"""What ``generate`` writes: list files, the CSV, summary.json and plots, checked independently."""

from __future__ import annotations

import csv
import json
import math
from decimal import Decimal

import pytest
from subsets_cases import expected_stats, long_tailed_coco, write_coco

from detpipe.subsets import DEFAULT_FRACTIONS, SubsetsConfig, generate
from detpipe.subsets.config import format_pct
from detpipe.subsets.outputs import CSV_COLUMNS, format_table

STRATEGIES = ("p", "random", "topn")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One full default run on 600 images (8 classes, 12 empty, 4 crowd-only), plots included."""
    root = tmp_path_factory.mktemp("run")
    coco = long_tailed_coco(images=600, classes=8, seed=4, empty=12, crowd_only=4)
    path = write_coco(root / "annotations" / "instances_train2017.json", coco)
    out = root / "subsets"
    summary = generate(SubsetsConfig(annotations=path, out=out, seed=3, progress=False))
    return coco, out, summary


def _expected_count(pct: float, n: int) -> int:
    """round half up of pct/100 x n, at least 1 (the documented rule), in exact decimals."""
    return max(1, math.floor(Decimal(str(pct)) * n / 100 + Decimal("0.5")))


def test_expected_counts_on_588():
    assert [_expected_count(f, 588) for f in DEFAULT_FRACTIONS] == [
        2,
        4,
        7,
        15,
        29,
        59,
        118,
        176,
        235,
        294,
        353,
        412,
        470,
        529,
        588,
    ]  # 1.8375, 3.675, 7.35, 14.7, 29.4, 58.8, 117.6, 176.4, 235.2, 294, 352.8, 411.6, 470.4, 529.2


def _lines(path):
    return path.read_text().splitlines()


def test_all_45_lists_with_the_right_names_and_lines(run):
    coco, out, _summary = run
    kept = [
        im["file_name"]
        for im in coco["images"]
        if any(a["image_id"] == im["id"] for a in coco["annotations"])
    ]
    assert len(kept) == 588
    names = sorted(p.name for p in out.glob("*.txt"))
    assert names == sorted(
        f"train2017_{format_pct(f)}_{s}.txt" for f in DEFAULT_FRACTIONS for s in STRATEGIES
    )
    assert "train2017_0.3125_p.txt" in names and "train2017_100_topn.txt" in names
    order = {name: i for i, name in enumerate(kept)}
    for f in DEFAULT_FRACTIONS:
        for s in STRATEGIES:
            lines = _lines(out / f"train2017_{format_pct(f)}_{s}.txt")
            assert len(lines) == _expected_count(f, 588)
            assert all(line.startswith("./images/train2017/") for line in lines)
            files = [line.removeprefix("./images/train2017/") for line in lines]
            assert all(name in order for name in files)  # only kept images
            assert [order[n] for n in files] == sorted(order[n] for n in files)  # file order, no repeats
            assert len(set(files)) == len(files)
            if s == "topn":
                assert files == kept[: len(files)]
    assert (out / "train2017_100_p.txt").read_text() == "".join(f"./images/train2017/{n}\n" for n in kept)


def test_lists_are_nested(run):
    _, out, _ = run
    for s in STRATEGIES:
        previous: set[str] = set()
        for f in DEFAULT_FRACTIONS:
            current = set(_lines(out / f"train2017_{format_pct(f)}_{s}.txt"))
            assert previous <= current
            previous = current


def test_csv_rows_match_the_lists(run):
    coco, out, _ = run
    with (out / "class_distribution.csv").open() as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        rows = list(reader)
    assert len(rows) == 15 * 3 * 8
    by = {(r["strategy"], float(r["pct"]), int(r["class_id"])): r for r in rows}
    for f in (0.3125, 5, 50, 100):
        for s in STRATEGIES:
            pct = format_pct(f)
            files = [line.rsplit("/", 1)[1] for line in _lines(out / f"train2017_{pct}_{s}.txt")]
            exp = expected_stats(coco, files)
            for c, cat in enumerate(coco["categories"]):
                r = by[(s, float(f), cat["id"])]
                assert r["class_name"] == cat["name"]
                assert int(r["instances"]) == exp["class_instances"][c]
                assert int(r["images"]) == exp["class_images"][c]
                assert [int(r[b]) for b in ("small", "medium", "large")] == exp["class_sizes"][c]
                assert float(r["share"]) == pytest.approx(exp["shares"][c], rel=1e-7)
                assert float(r["full_share"]) == pytest.approx(exp["full_shares"][c], rel=1e-7)
                assert float(r["rel_deviation"]) == pytest.approx(
                    exp["rel_dev"][cat["id"]], rel=1e-6, abs=1e-9
                )


def test_summary_numbers_recomputed(run):
    coco, out, summary = run
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["subsets"] == summary["subsets"]
    assert summary["filter"] == {
        "images_in": 600,
        "images_kept": 588,
        "dropped": "images without annotations",
        "dropped_empty": 12,
        "dropped_crowd_only": 0,
        "crowd_only_kept": 4,
        "instances_counted": "all annotations (iscrowd included)",
    }
    assert summary["full"]["instances"] == len(coco["annotations"])
    assert summary["full"]["class_names"] == [c["name"] for c in coco["categories"]]
    assert len(summary["subsets"]) == 45
    assert [r["pct"] for r in summary["subsets"][:15]] == list(DEFAULT_FRACTIONS)  # JSON numbers: 0.3125, 5
    assert json.dumps(summary["subsets"][4]["pct"]) == "5"
    for row in summary["subsets"]:
        files = [line.rsplit("/", 1)[1] for line in _lines(out / row["file"])]
        exp = expected_stats(coco, files)
        assert row["images"] == exp["images"] == _expected_count(float(row["pct"]), 588)
        assert row["instances"] == exp["instances"]
        assert row["class_instances"] == exp["class_instances"]
        assert row["classes_present"] == exp["classes_present"]
        assert row["all_classes_present"] == (exp["classes_present"] == 8)
        assert row["mean_rel_deviation"] == pytest.approx(exp["mean_rel_dev"], rel=1e-5, abs=1e-9)
        assert row["max_rel_deviation"] == pytest.approx(exp["max_rel_dev"], rel=1e-5, abs=1e-9)
        assert row["size_mix_deviation"]["mean"] == pytest.approx(exp["mean_size_dev"], rel=1e-5, abs=1e-9)
        assert row["size_mix_deviation"]["max"] == pytest.approx(exp["max_size_dev"], rel=1e-5, abs=1e-9)
        if row["strategy"] == "p" and row["images"] >= 8:
            assert row["all_classes_present"]
    pairs = {q["pct"]: q for q in summary["p_vs_random"]}
    by = {(r["strategy"], r["pct"]): r for r in summary["subsets"]}
    for pct, q in pairs.items():
        assert q["p"] == by[("p", pct)]["mean_rel_deviation"]
        assert q["random"] == by[("random", pct)]["mean_rel_deviation"]
    small = [q for q in pairs.values() if float(q["pct"]) <= 10]
    assert summary["p_lower_than_random_up_to_10pct"] == all(q["p"] < q["random"] for q in small)


def test_plots_are_pngs(run):
    _, out, summary = run
    assert summary["plots"] == ["images_objects.png", "p_per_class.png", "deviation.png"]
    for name in summary["plots"]:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_no_temp_dirs_left_and_table(run):
    _, out, summary = run
    assert sorted(p.name for p in out.parent.iterdir()) == ["annotations", "subsets"]
    table = format_table(summary)
    assert table.splitlines()[0] == (
        "kept 588 of 600 images (dropped 12 without annotations); "
        f"{summary['full']['instances']} instances, 8 classes"
    )
    assert len(table.splitlines()) == 3 + 15 + 1


def test_drop_crowd_only_prefix_split_and_subset_of_options(tmp_path):
    coco = long_tailed_coco(images=200, classes=5, seed=9, empty=6, crowd_only=7)
    path = write_coco(tmp_path / "instances_val2017.json", coco)
    summary = generate(
        SubsetsConfig(
            annotations=path,
            out=tmp_path / "o",
            fractions=(5, 50),
            strategies=("random",),
            drop_crowd_only=True,
            plots=False,
            progress=False,
        )
    )
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "class_distribution.csv",
        "summary.json",
        "val2017_50_random.txt",
        "val2017_5_random.txt",
    ]
    f = summary["filter"]
    assert (f["images_kept"], f["dropped_empty"], f["dropped_crowd_only"]) == (187, 6, 7)
    assert f["dropped"] == "images without annotations and images whose annotations are all iscrowd"
    assert f["instances_counted"] == "non-crowd annotations"
    assert summary["full"]["instances"] == sum(1 for a in coco["annotations"] if not a["iscrowd"])
    assert _lines(tmp_path / "o" / "val2017_5_random.txt")[0].startswith("./images/val2017/")
    assert "p_vs_random" not in summary

    generate(
        SubsetsConfig(
            path, tmp_path / "o", fractions=(5,), strategies=("topn",), image_prefix="s3://b/x/", plots=False
        )
    )
    assert sorted(p.name for p in (tmp_path / "o").glob("*.txt")) == ["val2017_5_topn.txt"]  # replaced
    first = next(im for im in coco["images"] if any(a["image_id"] == im["id"] for a in coco["annotations"]))
    assert _lines(tmp_path / "o" / "val2017_5_topn.txt")[0] == f"s3://b/x/{first['file_name']}"
