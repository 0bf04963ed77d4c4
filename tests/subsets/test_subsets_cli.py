"""``detpipe subsets`` as a process: success, help, and every bad input -> exit 2, nothing written."""

from __future__ import annotations

import json

import pytest
from subsets_cases import cli, long_tailed_coco, write_coco

from detpipe.cli.main import get_args_parser


@pytest.fixture
def good(tmp_path):
    return write_coco(
        tmp_path / "annotations" / "instances_train2017.json", long_tailed_coco(200, 5, seed=2, empty=5)
    )


def test_cli_writes_lists_and_prints_a_table(good, tmp_path):
    out = tmp_path / "subsets"
    res = cli(
        "subsets", "--annotations", str(good), "--out", str(out), "--fractions", "5,50", "100", "--no-plots"
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("kept 195 of 200 images (dropped 5 without annotations); ")
    assert [ln.split()[0] for ln in lines[3:6]] == ["5", "50", "100"]
    assert lines[-1] == f"wrote 9 lists, class_distribution.csv, summary.json to {out}"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["class_distribution.csv", "summary.json"]
        + [f"train2017_{f}_{s}.txt" for f in ("5", "50", "100") for s in ("p", "random", "topn")]
    )
    assert len((out / "train2017_5_p.txt").read_text().splitlines()) == 10  # 9.75 -> 10


def test_cli_options_reach_the_library(good, tmp_path):
    out = tmp_path / "o"
    res = cli(
        "-q", "subsets", "--annotations", str(good), "--out", str(out), "--fractions", "10",
        "--strategies", "random,p", "--seed", "7", "--no-nested", "--image-prefix", "imgs/",
        "--drop-crowd-only", "--json",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert (summary["seed"], summary["nested"], summary["image_prefix"]) == (7, False, "imgs/")
    assert summary["filter"]["dropped_crowd_only"] == 5
    assert [r["file"] for r in summary["subsets"]] == ["train2017_10_random.txt", "train2017_10_p.txt"]
    assert summary["plots"] == ["images_objects.png", "p_per_class.png", "deviation.png"]
    assert (out / "train2017_10_p.txt").read_text().startswith("imgs/")


def test_help_explains():
    res = cli("subsets", "--help")
    assert res.returncode == 0
    for text in (
        "--no-nested",
        "--image-prefix",
        "round half up",
        "class_distribution.csv",
        "--drop-crowd-only",
    ):
        assert text in res.stdout


def test_parser_without_a_process():
    args = get_args_parser().parse_args(["subsets", "--annotations", __file__, "--out", "x"])
    assert (args.fractions, args.strategies, args.seed, args.nested, args.plots) == (
        None,
        None,
        0,
        True,
        True,
    )


def _validate(path):
    return cli("data", "validate", "--annotations", str(path))


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda d: d["annotations"][0].update(category_id=12345), id="dangling-category"),
        pytest.param(lambda d: d["annotations"][1].update(image_id=-1), id="dangling-image"),
        pytest.param(lambda d: d["annotations"][2].update(bbox=[630, 1, 50, 5]), id="box-outside"),
        pytest.param(lambda d: d["images"].append(dict(d["images"][0])), id="duplicate-image"),
    ],
)
def test_invalid_files_exit_2_with_validates_messages_and_no_output(tmp_path, breakage):
    coco = long_tailed_coco(120, 4, seed=1)
    breakage(coco)
    bad = write_coco(tmp_path / "instances_train2017.json", coco)
    out = tmp_path / "out"
    res = cli("subsets", "--annotations", str(bad), "--out", str(out))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    ref = _validate(bad)
    assert ref.returncode == 2
    # the same problem lines; only the command name in the final line differs
    assert res.stderr.replace("detpipe subsets: error:", "detpipe data: error:") == ref.stderr
    assert res.stderr.splitlines()[-1].startswith(f"detpipe subsets: error: {bad}: 1 problem(s) found")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instances_train2017.json"]


def test_dangling_category_message(tmp_path):
    coco = long_tailed_coco(50, 3, seed=1)
    coco["annotations"][0]["category_id"] = 77
    bad = write_coco(tmp_path / "x.json", coco)
    res = cli("subsets", "--annotations", str(bad), "--out", str(tmp_path / "out"))
    assert res.returncode == 2
    assert res.stderr.splitlines()[0] == f"{bad}: annotation id=1: category_id=77 is not a known category"


def test_malformed_json_exit_2_one_line(tmp_path):
    bad = tmp_path / "instances_train2017.json"
    bad.write_text('{"images": [1, 2,}')
    out = tmp_path / "out"
    res = cli("subsets", "--annotations", str(bad), "--out", str(out))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"detpipe subsets: error: {bad}: not valid JSON (line 1, column 18)"
    ]
    assert _validate(bad).stderr.replace("detpipe data:", "detpipe subsets:") == res.stderr
    assert not out.exists()


def test_failure_leaves_an_existing_output_untouched(good, tmp_path):
    out = tmp_path / "subsets"
    ok = cli(
        "-q", "subsets", "--annotations", str(good), "--out", str(out), "--fractions", "50", "--no-plots"
    )
    assert ok.returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    coco = json.loads(good.read_text())
    coco["annotations"][0]["bbox"] = [1, 1, -3, 4]
    bad = write_coco(tmp_path / "bad.json", coco)
    res = cli("subsets", "--annotations", str(bad), "--out", str(out))
    assert res.returncode == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotations", "bad.json", "subsets"]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--fractions", "0"], "fractions are percentages in (0, 100], got 0"),
        (["--fractions", "5,abc"], "expected a percentage, got 'abc'"),
        (["--strategies", "p,stratified"], "unknown strategy 'stratified'"),
        (["--seed", "x"], "invalid int value"),
    ],
)
def test_bad_flags_exit_2(good, tmp_path, args, reason):
    res = cli("subsets", "--annotations", str(good), "--out", str(tmp_path / "o"), *args)
    assert res.returncode == 2
    assert reason in res.stderr.splitlines()[-1]
    assert not (tmp_path / "o").exists()


def test_missing_file_and_file_as_out(good, tmp_path):
    res = cli("subsets", "--annotations", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "no such file" in res.stderr
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    res = cli("subsets", "--annotations", str(good), "--out", str(blocker), "--fractions", "50")
    assert res.returncode == 2
    assert res.stderr.strip() == f"detpipe subsets: error: {blocker}: exists and is not a directory"


def test_no_image_with_annotations(tmp_path):
    coco = long_tailed_coco(10, 2, seed=0, empty=0, crowd_only=0)
    coco["annotations"] = []
    path = write_coco(tmp_path / "instances_train2017.json", coco)
    res = cli("subsets", "--annotations", str(path), "--out", str(tmp_path / "o"))
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"detpipe subsets: error: {path}: no image has annotations, nothing to draw subsets from"
    )
    assert not (tmp_path / "o").exists()


def test_images_dir_is_checked_like_validate(good, tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    coco = json.loads(good.read_text())
    for im in coco["images"][1:]:
        (imgs / im["file_name"]).write_bytes(b"")
    out = tmp_path / "o"
    args = ["--annotations", str(good), "--images-dir", str(imgs)]
    res = cli("subsets", *args, "--out", str(out), "--fractions", "50", "--no-plots")
    assert res.returncode == 2
    missing = imgs / coco["images"][0]["file_name"]
    assert (
        res.stderr.splitlines()[0]
        == f"{good}: image id={coco['images'][0]['id']}: file {missing} does not exist"
    )
    assert res.stderr.splitlines()[0] == cli("data", "validate", *args).stderr.splitlines()[0]
    assert not out.exists()
    missing.write_bytes(b"")
    assert cli("subsets", *args, "--out", str(out), "--fractions", "50", "--no-plots").returncode == 0
