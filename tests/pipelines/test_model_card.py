"""The publish step's model card: MODEL_CARD.md in the release (hashed in the signed manifest) and
the step's Markdown artifact, with the data, training configuration, metrics per format, gate
decisions, benchmark p50 per device and lineage hashes of the run it was published from."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from detpipe.components.export import gate_op
from detpipe.components.publish import publish_op
from detpipe.errors import SignatureError
from detpipe.io import sha256_file
from detpipe.signing import ReleaseVerifier, verify_release
from detpipe.store import ObjectMismatch, fetch_release, read_manifest
from detpipe.store.manifest import MODEL_CARD

CPU = {"model": "Intel(R) Xeon(R) Processor", "cores_available": 2, "machine": "x86_64", "int8_flags": []}
DATASET_HASH = "b43ade0afccc89fcfbdfc94726ba5df55576f7c72236aec5293b19103534bb03"
GPU = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "memory_gib": 79.2}


def _latency(p50: float, ips: float) -> dict:
    return {"n": 20, "batch": 1, "p50_ms": p50, "p99_ms": 2 * p50, "throughput_ips": ips}


def _bench_row(fmt: str, backend: str, device: str, infer: float, e2e: float) -> dict:
    return {
        "format": fmt,
        "backend": backend,
        "status": "ok",
        "ran_on": {"runtime": backend, "device": device},
        "batch": 1,
        "infer": _latency(infer, 1000 / infer),
        "e2e": _latency(e2e, 1000 / e2e),
    }


def run_outputs(root: Path) -> dict[str, Path]:
    """The directories a train_to_edge run hands publish (train, evaluate, export, bench, subsets)."""
    train, evaluation, export, bench, subsets = (
        root / n for n in ("train", "eval", "export", "bench", "sub")
    )
    for d in (train / "weights", evaluation, export, bench, subsets):
        d.mkdir(parents=True)
    (train / "weights" / "best.pt").write_bytes(b"weights")
    config = {"model": "yolov8n.yaml", "epochs": 30, "imgsz": 64, "batch": 8, "optimizer": "auto", "seed": 0}
    summary = {
        "model": "yolov8n",
        "fraction": 5.0,
        "strategy": "p",
        "subset": "train2017_5_p",
        "subset_seed": 0,
        "seed": 0,
        "best_epoch": 28,
        "last_epoch": 30,
        "best_map5095": 0.412,
        "best_map50": 0.6,
        "wall_time_s": 95.5,
        "config": config,
        "dataset_hash": DATASET_HASH,
        "world_size": 1,
        "ranks": [{"rank": 0, "images": 120}],
    }
    (train / "train_summary.json").write_text(json.dumps(summary))
    per_class = [
        {"name": "disc", "instances": 30, "ap50_95": 0.45, "ap50": 0.7},
        {"name": "square", "instances": 25, "ap50_95": 0.38, "ap50": 0.61},
    ]
    counts = {"images": 32, "instances": 55, "categories": 2}
    metrics = {"map50_95": 0.415, "map50": 0.655, "map75": 0.43, "ar100": 0.5, "per_class": per_class}
    (evaluation / "metrics.json").write_text(json.dumps({**metrics, "counts": counts}))
    (export / "model.onnx").write_bytes(b"onnx")
    (export / "model.int8.onnx").write_bytes(b"int8")
    accuracy = {
        "evaluated": True,
        "evaluator": "detpipe.evaluate (pycocotools-exact COCO bbox)",
        "val_images": 32,
        "pytorch": {"mAP50-95": 0.415, "mAP50": 0.655, "mAP75": 0.43, "AR100": 0.5},
        "formats": {
            "onnx": {
                "mAP50-95": 0.414,
                "mAP50": 0.655,
                "mAP75": 0.43,
                "AR100": 0.5,
                "delta_mAP50-95_points": -0.1,
            },
            "onnx-int8": {
                "mAP50-95": 0.39,
                "mAP50": 0.63,
                "mAP75": 0.4,
                "AR100": 0.48,
                "delta_mAP50-95_points": -2.5,
            },
        },
    }
    formats = {
        "onnx": {"status": "ok", "requested": True, "precision": "fp32"},
        "onnx-int8": {"status": "ok", "requested": True, "precision": "int8"},
        "engine-fp16": {
            "status": "skipped",
            "requested": True,
            "reason": "CPU-only run",
            "precision": "fp16",
        },
    }
    report = {"classes": {"0": "disc", "1": "square"}, "formats": formats, "accuracy": accuracy}
    (export / "export_report.json").write_text(json.dumps(report))
    rows = [
        _bench_row("onnx", "onnxruntime", "cpu", 4.0, 9.5),
        _bench_row("onnx-int8", "onnxruntime", "cpu", 2.5, 7.75),
        _bench_row("onnx", "onnxruntime-cuda", "cuda:0", 0.8, 3.2),
    ]
    device = {"cpu": CPU, "gpu": [GPU], "jetson": None}
    (bench / "bench.json").write_text(json.dumps({"device": device, "results": rows}))
    (subsets / "train2017_5_p.txt").write_text("./images/train2017/000000000009.jpg\n")
    return {"train": train, "evaluation": evaluation, "export": export, "bench": bench, "subsets": subsets}


def _publish(root: Path, release_keys, **params) -> tuple[str, Path]:
    from kfp.dsl import Artifact, Dataset, Markdown, Model

    dirs = run_outputs(root / "run")
    card = Markdown(name="card", uri=str(root / "card.md"), metadata={})
    uri = publish_op.python_func(
        model=Model(name="model", uri=str(dirs["train"]), metadata={}),
        evaluation=Artifact(name="evaluation", uri=str(dirs["evaluation"]), metadata={}),
        exported=Model(name="exported", uri=str(dirs["export"]), metadata={}),
        bench=Artifact(name="bench", uri=str(dirs["bench"]), metadata={}),
        subsets=Dataset(name="subsets", uri=str(dirs["subsets"]), metadata={}),
        card=card,
        store=str(root / "store"),
        name="",
        version="1.0.0",
        fraction=5.0,
        arch="yolov8n.yaml",
        coco_root="/data/coco",
        signing_key_dir=str(release_keys[0].parent),
        **params,
    )
    return uri.removeprefix("file://"), Path(card.path)  # the step's Markdown artifact


def _rows(card: str, heading: str) -> list[list[str]]:
    lines = card.splitlines()
    rows = []
    for line in lines[lines.index(heading) + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    return rows[1:]  # without the header


def test_the_card_is_in_the_signed_release_and_says_what_was_published(tmp_path, release_keys):
    uri, card_file = _publish(tmp_path, release_keys, min_map=0.05, max_drop="int8=3.0")
    verifier = ReleaseVerifier(release_keys[1])
    manifest = read_manifest(uri, verifier=verifier)
    entries = {e.path: e for e in manifest.objects}
    card = card_file.read_text()
    stored = Path(uri) / MODEL_CARD
    assert stored.read_text() == card and entries[MODEL_CARD].sha256 == sha256_file(stored)
    verify_release(uri, verifier)  # signature and every object, the card included

    assert card.startswith("# Model card: yolov8n-coco-5p 1.0.0\n")
    data = dict(map(tuple, _rows(card, "## Data")))
    assert data["dataset"] == "/data/coco" and data["subset"] == "`train2017_5_p`"
    assert data["share"] == "5 % of the train split, proportional (class-balanced), draw 0"
    assert data["val set"] == "32 images, 55 instances, 2 classes" and data["classes"] == "disc, square"
    training = dict(map(tuple, _rows(card, "## Training configuration")))
    assert (training["epochs"], training["imgsz"], training["batch"]) == ("30", "64", "8")
    assert training["best epoch / last epoch"] == "28 / 30"
    assert '"optimizer": "auto"' in card  # the full configuration follows the table
    formats = {r[0]: r for r in _rows(card, "## Metrics per format") if len(r) == 7}
    assert formats["pytorch (weights.pt)"][2:4] == ["0.415", "0.655"]
    assert formats["onnx-int8"][1:3] == ["int8", "0.390"] and formats["onnx-int8"][6] == "-2.50"
    assert "Not built: engine-fp16 (CPU-only run)." in card
    # the gate as the pipeline's gate step judged it: these limits, this floor
    gate = {r[0]: r for r in _rows(card, "## Accuracy gate")}
    assert gate["onnx"] == ["onnx", "41.40", "0.10", "0.50", "pass"]
    assert gate["onnx-int8"] == ["onnx-int8", "39.00", "2.50", "3.00", "pass"]
    assert gate["engine-fp16"][-1] == "FAIL (missing: skipped: CPU-only run)"
    assert "floor of 5.00 points" in card and "Verdict: **NOT passed**." in card
    bench = _rows(card, "## Benchmark (p50 latency per device)")
    assert [r[:2] + r[4:6] for r in bench] == [
        ["`h100-80gb-hbm3` (NVIDIA H100 80GB HBM3)", "onnx", "0.80", "3.20"],
        ["`x86_64-cpu` (Intel(R) Xeon(R) Processor)", "onnx", "4.00", "9.50"],
        ["`x86_64-cpu` (Intel(R) Xeon(R) Processor)", "onnx-int8", "2.50", "7.75"],
    ]
    lineage = dict(map(tuple, _rows(card, "## Lineage")))
    subset_sha = sha256_file(tmp_path / "run" / "sub" / "train2017_5_p.txt")
    assert lineage["subset list"] == f"`train2017_5_p.txt` sha256 `{subset_sha}`"
    assert lineage["training data (images + labels)"] == f"sha256 `{DATASET_HASH}`"
    assert lineage["code version"] == manifest.lineage["code_version"]
    for path, entry in entries.items():  # every other object, with the manifest's hash
        if path != MODEL_CARD:
            assert lineage[f"`{path}`"] == f"sha256 `{entry.sha256}`"


def test_an_altered_card_is_refused_like_any_object(tmp_path, release_keys):
    uri, _ = _publish(tmp_path, release_keys)
    card = Path(uri) / MODEL_CARD
    card.write_text(card.read_text().replace("yolov8n", "yolo-xl"))
    with pytest.raises(ObjectMismatch, match=r"MODEL_CARD\.md"):
        fetch_release(uri, tmp_path / "fetched", verifier=ReleaseVerifier(release_keys[1]))
    with pytest.raises(SignatureError, match=r"MODEL_CARD\.md"):
        verify_release(uri, ReleaseVerifier(release_keys[1]))


def test_the_card_judges_the_gate_with_the_gate_steps_defaults():
    publish, gate = inspect.signature(publish_op.python_func), inspect.signature(gate_op.python_func)
    for name in ("max_drop", "min_map", "allow_missing"):
        assert publish.parameters[name].default == gate.parameters[name].default, name
