"""Fixtures for the training tests: a tiny real dataset and helpers to run the CLI as a process.

The dataset comes from the pipeline's own tools (``detpipe data synth`` -> ``detpipe data
yolo``), with one subset list so that fraction/strategy parsing is exercised end to end.
Training runs stay tiny (imgsz 64, 24 images, 1-3 epochs) so the whole directory runs in
a few minutes on two CPU cores.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from detpipe.ultralytics_env import configure_offline

REPO = Path(__file__).resolve().parents[2]
TRAIN_FLAGS = ["--imgsz", "64", "--workers", "0", "--device", "cpu", "--no-plots"]


@dataclass(frozen=True)
class TinyData:
    """The tiny dataset: its root, the full YAML and a 50 % random subset YAML."""

    root: Path
    full: Path
    subset: Path
    train_images: int
    subset_images: int


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 240):
    """Run ``detpipe ARGS`` as a process (python -m detpipe.cli.main); returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", *args],
        cwd=cwd or REPO,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_popen(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``detpipe ARGS`` as a process without waiting (output to pipes)."""
    return subprocess.Popen(
        [sys.executable, "-m", "detpipe.cli.main", *args],
        cwd=cwd or REPO,
        env=child_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 240) -> None:
    """SIGKILL ``proc`` and its children as soon as ``ready()`` (polled every 20 ms), like a lost node.

    Fails the test if the process exits before that.
    """
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"exited {proc.returncode} before the kill point:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            _kill_tree(proc.pid)
            pytest.fail("kill point not reached in time")
        time.sleep(0.02)
    _kill_tree(proc.pid)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (torchrun starts its workers in new sessions)."""
    import psutil

    root = psutil.Process(pid)
    for p in [*root.children(recursive=True), root]:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for child processes: repo importable, ultralytics config in a temp dir."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    env.update(extra or {})
    return env


@pytest.fixture(scope="session", autouse=True)
def _offline_workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """ultralytics offline, its settings and fonts in a temp dir, here and in every child process.

    As in production (:func:`detpipe.train.run.train`), before this process imports ultralytics.
    """
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    configure_offline()
    yield
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> TinyData:
    """24 train + 8 val synthetic images as a YOLO dataset, plus train2017_50_random.yaml (subset_seed 1)."""
    base = tmp_path_factory.mktemp("tiny")
    coco = base / "coco"
    done = cli(
        "data",
        "synth",
        "--out",
        str(coco),
        "--images",
        "24",
        "--val-images",
        "8",
        "--classes",
        "3",
        "--imgsz",
        "96",
        "--seed",
        "0",
    )
    assert done.returncode == 0, done.stderr
    train_names = sorted(p.name for p in (coco / "images" / "train2017").iterdir())
    assert len(train_names) == 24
    subsets = base / "subsets"
    subsets.mkdir()
    half = train_names[::2]
    (subsets / "train2017_50_random.txt").write_text("".join(f"./images/train2017/{n}\n" for n in half))
    (subsets / "summary.json").write_text('{"seed": 1}')  # a draw of subset seed 1: subset_seed in the YAML
    yolo = base / "yolo"
    done = cli(
        "data",
        "yolo",
        "--annotations",
        str(coco / "annotations" / "instances_train2017.json"),
        "--images-dir",
        str(coco / "images" / "train2017"),
        "--val-annotations",
        str(coco / "annotations" / "instances_val2017.json"),
        "--val-images-dir",
        str(coco / "images" / "val2017"),
        "--subsets",
        str(subsets),
        "--out",
        str(yolo),
    )
    assert done.returncode == 0, done.stderr
    return TinyData(yolo, yolo / "dataset.yaml", yolo / "train2017_50_random.yaml", 24, len(half))


def read_summary(out: Path) -> dict:
    return json.loads((out / "train_summary.json").read_text())


def results_epochs(out: Path) -> list[int]:
    lines = (out / "results.csv").read_text().splitlines()[1:]
    return [int(float(line.split(",")[0])) for line in lines if line.strip()]
