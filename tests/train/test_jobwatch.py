"""Following a PyTorchJob: recorded condition sequences in, exit/raise/delete out.

The first tests drive :func:`watch` with an in-memory :class:`JobApi`; the last ones run
``detpipe train --launcher pytorchjob`` as a process against a loopback stand-in of the
Kubernetes API (through the real kubernetes client) and a moto S3 server for the outputs.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from store_servers import S3Server

from detpipe.errors import NotFound
from detpipe.train.jobwatch import PYTORCHJOB, JobFailed, JobTimeout, Phase, job_state, watch

from .conftest import cli, cli_popen
from .fake_kube import FakeKube, condition, serve

CREATED = [condition("Created", reason="PyTorchJobCreated")]
RUNNING = [*CREATED, condition("Running", reason="PyTorchJobRunning")]
RESTARTING = [*CREATED, condition("Restarting", reason="PyTorchJobRestarting", message="pod preempted")]
SUCCEEDED = [*CREATED, condition("Running", "False"), condition("Succeeded", reason="PyTorchJobSucceeded")]
FAILED = [
    *CREATED,
    condition("Running", "False"),
    condition("Failed", reason="BackoffLimitExceeded", message="master-0 exited 1"),
]


class RecordedJob:
    """A JobApi replaying recorded statuses (the last one repeats) and log chunks."""

    name = "train-x"
    kind = PYTORCHJOB

    def __init__(self, statuses: Sequence[Any], logs: Sequence[list[str]] = ()) -> None:
        self.statuses, self.chunks = list(statuses), list(logs)
        self.deleted = 0
        self.gets = 0

    def get(self) -> dict[str, Any]:
        self.gets += 1
        item = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if isinstance(item, Exception):
            raise item
        return {"metadata": {"name": self.name}, "status": {"conditions": item}}

    def delete(self) -> None:
        self.deleted += 1

    def logs(self) -> list[str]:
        return self.chunks.pop(0) if self.chunks else []


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _watch(api: RecordedJob, timeout_s: float = 1000, **kw: Any):
    clock = FakeClock()
    lines: list[str] = []
    kw.setdefault("sleep", clock.sleep)
    state = watch(api, timeout_s=timeout_s, poll_s=10, clock=clock, emit=lines.append, **kw)
    return state, lines, clock


def test_job_state_from_conditions() -> None:
    assert job_state({}).phase is Phase.PENDING
    assert job_state({"status": {"conditions": CREATED}}).phase is Phase.CREATED
    assert job_state({"status": {"conditions": RUNNING}}).phase is Phase.RUNNING
    restarting = job_state({"status": {"conditions": RESTARTING}})
    assert (restarting.phase, restarting.message) == (Phase.RESTARTING, "pod preempted")
    assert job_state({"status": {"conditions": SUCCEEDED}}).phase is Phase.SUCCEEDED
    failed = job_state({"status": {"conditions": [*FAILED, condition("Restarting")]}})  # terminal wins
    assert (failed.phase, failed.reason) == (Phase.FAILED, "BackoffLimitExceeded")


def test_succeeded_returns_and_streams_logs() -> None:
    api = RecordedJob([[], CREATED, RUNNING, SUCCEEDED], logs=[[], ["epoch 1"], ["epoch 2", "done"]])
    state, lines, clock = _watch(api)
    assert state.phase is Phase.SUCCEEDED
    assert lines == ["epoch 1", "epoch 2", "done"]
    assert api.deleted == 0 and api.gets == 4 and clock.sleeps == [10, 10, 10]


def test_failed_raises_with_the_operators_reason() -> None:
    api = RecordedJob([CREATED, RUNNING, FAILED])
    with pytest.raises(JobFailed) as e:
        _watch(api)
    assert str(e.value) == "PyTorchJob train-x failed: BackoffLimitExceeded: master-0 exited 1"
    assert e.value.exit_code == 1
    assert api.deleted == 0  # kept for post-mortem; the operator's TTL removes it


def test_restarting_then_running_then_succeeded(caplog: pytest.LogCaptureFixture) -> None:
    api = RecordedJob([CREATED, RUNNING, RESTARTING, RESTARTING, RUNNING, SUCCEEDED])
    with caplog.at_level(logging.INFO, logger="detpipe.train.jobwatch"):
        state, _, _ = _watch(api)
    assert state.phase is Phase.SUCCEEDED
    phases = [
        r.getMessage().split(": ", 1)[1] for r in caplog.records if r.getMessage().startswith("PyTorchJob")
    ]
    assert phases == [
        "Created (PyTorchJobCreated)",
        "Running (PyTorchJobRunning)",
        "Restarting (PyTorchJobRestarting)",
        "Running (PyTorchJobRunning)",
        "Succeeded (PyTorchJobSucceeded)",
    ]


def test_timeout_deletes_the_job() -> None:
    api = RecordedJob([CREATED, RUNNING])
    with pytest.raises(JobTimeout, match="timed out after 30 s and was deleted"):
        _watch(api, timeout_s=30)
    assert api.deleted == 1 and api.gets == 4


def test_ctrl_c_deletes_the_job() -> None:
    api = RecordedJob([RUNNING])

    def interrupted(_: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _watch(api, sleep=interrupted)
    assert api.deleted == 1


def test_sigterm_deletes_the_job_and_restores_the_handler() -> None:
    api = RecordedJob([RUNNING])
    before = signal.getsignal(signal.SIGTERM)

    def terminated(_: float) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler raises before this returns

    with pytest.raises(KeyboardInterrupt):
        _watch(api, sleep=terminated)
    assert api.deleted == 1
    assert signal.getsignal(signal.SIGTERM) is before


def test_vanished_job_is_a_failure() -> None:
    api = RecordedJob([RUNNING, NotFound("gone")])
    with pytest.raises(JobFailed, match="disappeared"):
        _watch(api)


# -- end to end: the CLI, the kubernetes client, a fake API server, S3 ------------------------

JOB = "train-yolo12n-e2e"


def _submit_args(tmp_path: Path, uri: str, *extra: str) -> list[str]:
    return [
        "train",
        "--data",
        "/data/yolo/train2017_5_p.yaml",
        "--model",
        "yolo12n.yaml",
        "--out",
        str(tmp_path / "run"),
        "--epochs",
        "2",
        "--batch",
        "16",
        "--launcher",
        "pytorchjob",
        "--nnodes",
        "2",
        "--nproc-per-node",
        "2",
        "--image",
        "img:1",
        "--job-name",
        JOB,
        "--resume",
        uri,
        "--poll",
        "1",
        *extra,
    ]


def test_cli_submits_follows_and_fetches_the_outputs(tmp_path: Path, s3: S3Server) -> None:
    uri = "s3://detpipe-test/train/e2e-ok"
    mirror = s3.store(uri)
    summary = {"model": "yolo12n", "fraction": 5.0, "best_map5095": 0.25, "best_epoch": 2, "last_epoch": 2}
    mirror.put_bytes("train_summary.json", json.dumps(summary).encode())
    mirror.put_bytes("weights/best.pt", b"weights")
    kube = FakeKube(
        [CREATED, RUNNING, RESTARTING, RUNNING, SUCCEEDED],
        logs=[[], ["epoch 1/2 ..."], [], ["epoch 2/2 ...", "training finished"]],
    )
    with serve(kube, tmp_path / "kubeconfig"):
        done = cli(*_submit_args(tmp_path, uri), env={**s3.env, "KUBECONFIG": str(tmp_path / "kubeconfig")})
    assert done.returncode == 0, done.stderr[-3000:]
    assert kube.requests[1] == "POST /apis/kubeflow.org/v1/namespaces/detpipe/pytorchjobs"
    (manifest,) = kube.created
    assert manifest["metadata"]["name"] == JOB and manifest["spec"]["nprocPerNode"] == "2"
    assert manifest["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
    assert kube.deleted == []
    assert "epoch 1/2 ..." in done.stderr and "training finished" in done.stderr
    assert json.loads(done.stdout) == summary
    assert (tmp_path / "run" / "weights" / "best.pt").read_bytes() == b"weights"


def test_cli_failed_job_exits_1_with_the_reason(tmp_path: Path, s3: S3Server) -> None:
    kube = FakeKube([CREATED, FAILED])
    with serve(kube, tmp_path / "kubeconfig"):
        done = cli(
            *_submit_args(tmp_path, "s3://detpipe-test/train/e2e-fail"),
            env={**s3.env, "KUBECONFIG": str(tmp_path / "kubeconfig")},
        )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"detpipe train: error: PyTorchJob {JOB} failed: BackoffLimitExceeded: master-0 exited 1"
    )


def test_cli_timeout_and_cancel_delete_the_job(tmp_path: Path, s3: S3Server) -> None:
    env = {**s3.env, "KUBECONFIG": str(tmp_path / "kubeconfig")}
    kube = FakeKube([CREATED, RUNNING])
    with serve(kube, tmp_path / "kubeconfig"):
        done = cli(*_submit_args(tmp_path, "s3://detpipe-test/train/e2e-slow", "--timeout", "2"), env=env)
        assert done.returncode == 1 and "timed out after 2 s and was deleted" in done.stderr
        assert kube.deleted == [JOB]

        cancelled = FakeKube([CREATED, RUNNING])
    with serve(cancelled, tmp_path / "kubeconfig"):
        proc = cli_popen(*_submit_args(tmp_path, "s3://detpipe-test/train/e2e-cancel"), env=env)
        deadline = time.monotonic() + 60
        while cancelled.gets < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # what a cancelled pipeline step receives
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err[-2000:]
        assert cancelled.deleted == [JOB]
