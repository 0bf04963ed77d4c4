"""scripts/gpu_check.sh on a machine without a GPU: the CPU fallbacks run, every GPU check is
reported skipped, and setup problems end with one line (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
sys.path.insert(0, str(REPO / "scripts"))

import gpu_check  # noqa: E402

GPU_CHECKS = ("train_gpu", "train_torchrun_nccl", "predict_eval_gpu", "onnxruntime_cuda", "tensorrt")
TINY = ["--images", "16", "--val-images", "8", "--imgsz", "64", "--batch", "8", "--bench-iters", "5"]


def _run(*args: str, python: str = sys.executable, **env: str) -> subprocess.CompletedProcess:
    child = {**os.environ, "PYTHON": python, "CUDA_VISIBLE_DEVICES": "", **env}
    child.pop("PYTHONPATH", None)
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=child, timeout=300
    )


@pytest.mark.slow
def test_cpu_path_runs_the_fallbacks_and_skips_the_gpu_checks(tmp_path: Path) -> None:
    out = tmp_path / "report" / "gpu_check.json"
    # the project venv stands in for the machine's preinstalled torch: nothing is missing, no pip runs
    done = _run("--out", str(out), "--", *TINY, "--cpu-ddp-procs", "1", "--work", str(tmp_path / "w"),
                GPU_CHECK_VENV=sys.prefix)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    checks = report["checks"]
    assert report["passed"] is True and report["environment"]["gpus"] == []
    for name in GPU_CHECKS:
        assert checks[name]["status"] == gpu_check.NO_CUDA, name
    assert checks["train_torchrun_gloo"]["status"] == "skipped: --cpu-ddp-procs < 2"
    for name in ("data", "train_cpu", "predict_eval_cpu", "export_onnx", "onnxruntime_cpu"):
        assert checks[name]["status"] == "pass", (name, checks[name]["error"])
        assert checks[name]["seconds"] > 0
    train = checks["train_cpu"]["figures"]
    assert train["world_size"] == 1 and train["images_per_s"] > 0
    assert Path(train["weights"]).name == "best.pt"
    assert set(checks["export_onnx"]["figures"]["formats"]) == {"onnx", "onnx-int8"}
    assert checks["predict_eval_cpu"]["figures"]["device"] == "cpu"
    ran = [row["ran_on"] for row in checks["onnxruntime_cpu"]["figures"].values()]
    assert len(ran) == 2 and all(r["providers"][0] == "CPUExecutionProvider" for r in ran)
    assert report["counts"] == {"pass": 5, "fail": 0, "skipped": 6}
    assert "5 passed, 0 failed, 6 skipped" in done.stdout


def test_time_budget_and_pins(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--out", str(out), "--budget-s", "0"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["checks"] == {
        "data": {"status": "skipped: time budget", "seconds": 0.0, "figures": {}, "error": None}
    }
    pins = gpu_check.pins()
    assert all("==" in pins[dist] for dist in ("ultralytics", "onnxruntime", "numpy"))
    assert gpu_check.missing_requirements() == []  # this venv has everything


def test_setup_errors_are_one_line(tmp_path: Path) -> None:
    bad = _run("--frobnicate")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "gpu_check.sh: error: unknown option --frobnicate (see --help)"
    no_torch = tmp_path / "python3"
    no_torch.write_text('#!/bin/sh\n[ "$1" = -c ] && exit 1\nexit 0\n')  # an interpreter without torch
    no_torch.chmod(0o755)
    done = _run("--out", str(tmp_path / "x.json"), python=str(no_torch))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"gpu_check.sh: error: PyTorch is not importable by {no_torch} "
        "(the machine should have it preinstalled)"
    ]
    assert "--wheels" in _run("--help").stdout


def test_missing_wheels_are_asked_for(tmp_path: Path) -> None:
    # a "venv" that sees this interpreter's packages except one the check needs (onnxslim hidden)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    shim = venv / "bin" / "python"
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'onnxslim':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
    )
    shim.write_text(f'#!/bin/sh\nPYTHONPATH={hide}:$PYTHONPATH exec {sys.executable} "$@"\n')
    shim.chmod(0o755)
    done = _run("--out", str(tmp_path / "x.json"), "--", "--budget-s", "0", GPU_CHECK_VENV=str(venv))
    assert done.returncode == 2, done.stderr
    pin = gpu_check.pins()["onnxslim"]
    assert done.stderr.strip().splitlines()[-1] == (
        f"gpu_check.sh: error: missing {pin}: give a wheel folder (--wheels DIR or DETPIPE_WHEELS)"
    )
    done = _run(  # (a pip run itself is not tested: pip sees the metadata of the hidden package)
        "--out", str(tmp_path / "x.json"), "--wheels", str(tmp_path / "empty"), GPU_CHECK_VENV=str(venv)
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip().splitlines()[-1]
        == f"gpu_check.sh: error: --wheels {tmp_path / 'empty'}: not a directory"
    )
