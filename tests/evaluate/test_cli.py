"""``detpipe evaluate`` as a process: outputs on success, exit 2 and nothing written on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from evaluate_cases import pycocotools_eval, random_case

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "-q", "evaluate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    gt, dts = random_case(11, n_img=30, n_cat=6)
    (tmp / "gt.json").write_text(json.dumps(gt))
    (tmp / "dt.json").write_text(json.dumps(dts))
    return tmp, gt, dts


def test_directory_output(files):
    tmp, gt, dts = files
    out = tmp / "run"
    r = _cli("--gt", tmp / "gt.json", "--dt", tmp / "dt.json", "--out", out)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion_matrix.png",
        "metrics.json",
        "per_class_ap.png",
        "pr_curves.png",
        "summary.md",
        "summary.txt",
    ]
    for png in ("confusion_matrix.png", "per_class_ap.png", "pr_curves.png"):
        assert (out / png).read_bytes().startswith(PNG_MAGIC)
    metrics = json.loads((out / "metrics.json").read_text())
    ref = pycocotools_eval(gt, dts)
    np.testing.assert_allclose(metrics["coco_stats"], ref.stats, rtol=0, atol=1e-6)
    assert metrics["map50"] == metrics["coco_stats"][1] and metrics["ar_large"] == metrics["coco_stats"][11]
    assert len(metrics["per_class"]) == len(gt["categories"])
    assert metrics["counts"]["detections"] == len(dts)
    assert r.stdout == (out / "summary.txt").read_text()
    assert " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = " in r.stdout
    assert [p.name for p in tmp.iterdir() if p.name.startswith(".")] == []  # no temp dirs left behind


def test_metrics_file_output_and_json_stdout(files):
    tmp, _, _ = files
    out = tmp / "only" / "metrics.json"
    r = _cli("--gt", tmp / "gt.json", "--dt", tmp / "dt.json", "--out", out, "--json")
    assert r.returncode == 0, r.stderr
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]
    assert json.loads(r.stdout) == json.loads(out.read_text())


def _dt_variants(dts):
    return {
        "malformed JSON": ('[{"image_id": 1,', "not valid JSON (line 1"),
        "not a list": (json.dumps({"annotations": dts}), "top level is dict, expected a list"),
        "missing score": (
            json.dumps([*dts[:3], {k: v for k, v in dts[3].items() if k != "score"}]),
            "detection [3]: missing key(s) 'score'",
        ),
        "bad bbox": (
            json.dumps([{**dts[0], "bbox": [1, 2, 3]}]),
            "detection [0]: 'bbox' must be 4 finite numbers",
        ),
        "unknown image": (
            json.dumps([*dts, {**dts[0], "image_id": 123456}]),
            f"detection [{len(dts)}]: image_id=123456 is not in the ground truth",
        ),
        "unknown category": (
            json.dumps([{**dts[0], "category_id": 999}, *dts]),
            "detection [0]: category_id=999 is not in the ground truth",
        ),
    }


@pytest.mark.parametrize(
    "variant",
    ["malformed JSON", "not a list", "missing score", "bad bbox", "unknown image", "unknown category"],
)
def test_bad_detections_exit_2_and_write_nothing(files, variant):
    tmp, _, dts = files
    text, message = _dt_variants(dts)[variant]
    bad = tmp / f"bad-{variant.replace(' ', '-')}.json"
    bad.write_text(text)
    out = tmp / f"never-{variant.replace(' ', '-')}"
    r = _cli("--gt", tmp / "gt.json", "--dt", bad, "--out", out)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("detpipe evaluate: error: ") and message in lines[0], (
        r.stderr
    )
    assert "Traceback" not in r.stderr
    assert not out.exists()
    assert not [p for p in tmp.iterdir() if p.name.startswith(f".{out.name}")]


def test_bad_ground_truth_and_usage_exit_2(files):
    tmp, gt, _ = files
    (tmp / "gt-bad.json").write_text(json.dumps({k: v for k, v in gt.items() if k != "images"}))
    r = _cli("--gt", tmp / "gt-bad.json", "--dt", tmp / "dt.json", "--out", tmp / "never")
    assert (
        r.returncode == 2 and "missing or non-list key 'images'" in r.stderr and "Traceback" not in r.stderr
    )
    r = _cli("--dt", tmp / "dt.json", "--out", tmp / "never")
    assert (
        r.returncode == 2
        and r.stderr.strip()
        == "detpipe evaluate: error: --dt needs --gt, the ground truth it is evaluated against"
    )
    r = _cli("--gt", tmp / "gt.json", "--dt", tmp / "missing.json", "--out", tmp / "never")
    assert r.returncode == 2 and "missing.json: no such file" in r.stderr
    r = _cli("--gt", tmp / "gt.json", "--dt", tmp / "dt.json", "--out", tmp / "never", "--cm-score", "2")
    assert r.returncode == 2 and "must lie in [0, 1]" in r.stderr
    assert not (tmp / "never").exists()


def test_help_explains():
    r = _cli("--help")
    assert r.returncode == 0
    for phrase in (
        "pycocotools",
        "--weights",
        "val_annotations",
        "metrics.json",
        "background",
        "Exit status",
    ):
        assert phrase in r.stdout
