"""Resume after a kill, from S3: a preempted pod continues, it does not restart.

A real ``detpipe train`` process is SIGKILLed as soon as its first epoch is checkpointed in
the store mirror (a moto S3 server); the same command on a fresh disk must produce
results.csv rows 1..N exactly once, and its own statistics must show that it trained only
the remaining epochs. (The torchrun kill/resume with a local ``--resume`` is in test_ddp.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from store_servers import S3Server

from .conftest import TRAIN_FLAGS, TinyData, cli, cli_popen, kill_when, read_summary, results_epochs

pytestmark = pytest.mark.slow
BATCHES_PER_EPOCH = 3  # 24 train images, batch 8


def _args(tiny_data: TinyData, out: Path, epochs: int) -> list[str]:
    return [
        "train",
        "--data",
        str(tiny_data.full),
        "--model",
        "yolov8n.yaml",
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--batch",
        "8",
        "--close-mosaic",
        "0",
        *TRAIN_FLAGS,
    ]


def test_preempted_pod_continues_from_its_s3_checkpoint(
    tiny_data: TinyData, tmp_path: Path, s3: S3Server
) -> None:
    """Like a PyTorchJob pod: same command, fresh disk each time, the run mirrored to S3 (moto)."""
    uri = "s3://detpipe-test/train/preempted"
    mirror = s3.store(uri)
    first = tmp_path / "pod1"
    proc = cli_popen(*_args(tiny_data, first, epochs=2), "--resume", uri, env=s3.env)
    kill_when(proc, lambda: mirror.exists("weights/last.pt"))
    assert mirror.exists("results.csv") and not mirror.exists("train_summary.json")

    second = tmp_path / "pod2"  # a new pod: nothing on its disk
    resumed = cli(*_args(tiny_data, second, epochs=2), "--resume", uri, env=s3.env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming training" in resumed.stderr
    assert results_epochs(second) == [1, 2]
    summary = read_summary(second)
    assert summary["ranks"][0]["batches"] == BATCHES_PER_EPOCH  # only epoch 2 was trained here
    assert summary["mirror"] == uri
    assert mirror.list() == [
        "args.yaml",
        "results.csv",
        "train_summary.json",
        "weights/best.pt",
        "weights/last.pt",
    ]
    assert mirror.get_bytes("results.csv") == (second / "results.csv").read_bytes()

    third = tmp_path / "pod3"  # restarted after the job finished: nothing left to train
    finished = cli(*_args(tiny_data, third, epochs=2), "--resume", uri, env=s3.env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "already holds a finished run" in finished.stderr
    assert read_summary(third) == summary
    assert (third / "weights" / "best.pt").read_bytes() == (second / "weights" / "best.pt").read_bytes()
