"""DDP for real: torchrun processes on CPU (gloo), one node x 2 and two "nodes" x 1.

Each run trains the tiny dataset for one epoch. The summary's per-rank statistics (gathered
from every process by the run itself) show the sharding: a DistributedSampler over the
global world on every rank, each rank training half the images, and identical weights on
every rank at the end (DDP averaged the gradients; independent replicas would differ).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from detpipe.train.checkpoints import checkpoint_epoch

from .conftest import (
    TRAIN_FLAGS,
    TinyData,
    cli,
    cli_popen,
    kill_when,
    read_summary,
    results_epochs,
)

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_sharded_run(summary: dict, images: int, per_rank_batch: int) -> None:
    assert summary["world_size"] == 2
    ranks = summary["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    for r in ranks:
        assert r["sampler"] == "DistributedSampler"
        assert r["sampler_replicas"] == 2
        assert r["batch"] == per_rank_batch  # global batch // WORLD_SIZE
        assert r["images"] == images // 2  # each rank trains its own half
        assert r["batches"] == -(-(images // 2) // per_rank_batch)
        assert r["device"] == "cpu"
    assert ranks[0]["params_sha256"] == ranks[1]["params_sha256"]  # replicas stayed in sync
    assert summary["config"]["batch"] == 2 * per_rank_batch


def test_torchrun_single_node_two_processes_killed_and_resumed(tiny_data: TinyData, tmp_path: Path) -> None:
    """`--launcher torchrun --nproc-per-node 2`, killed (all processes) after epoch 1, resumed."""
    out = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(tiny_data.subset),
        "--model",
        "yolov8n.yaml",
        "--out",
        str(out),
        "--epochs",
        "2",
        "--batch",
        "4",
        "--close-mosaic",
        "0",
        *TRAIN_FLAGS,
        "--launcher",
        "torchrun",
        "--nproc-per-node",
        "2",
    ]
    proc = cli_popen(*args)
    kill_when(proc, lambda: (out / "weights" / "last.pt").is_file() and (out / "results.csv").is_file())
    assert checkpoint_epoch(out / "weights" / "last.pt") == 1

    done = cli(*args, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = read_summary(out)
    # this session trained epoch 2 only: 6 images per rank, 2 per step
    _check_sharded_run(summary, images=tiny_data.subset_images, per_rank_batch=2)
    assert (summary["model"], summary["fraction"], summary["strategy"]) == ("yolov8n", 50.0, "random")
    assert summary["subset_seed"] == 1  # ultralytics trained on a data YAML with the extra key
    assert summary["last_epoch"] == 2 and results_epochs(out) == [1, 2]
    assert sorted(p.name for p in (out / "weights").iterdir()) == ["best.pt", "last.pt"]
    assert '"world_size": 2' in done.stdout  # the summary is printed on stdout


def test_two_nodes_one_process_each(tiny_data: TinyData, tmp_path: Path) -> None:
    """Two `detpipe train --launcher torchrun` "nodes" (--nnodes 2, static rendezvous at
    127.0.0.1, as a multi-node job starts them) with one disk each for the run dir.

    Both get LOCAL_RANK 0 and WORLD_SIZE 2 (what ultralytics mishandles). The same relative
    --out resolves to a different directory per "node", as on separate machines: rank 0's
    node gets the whole run, the other node's directory stays empty. (It used a dynamic c10d
    rendezvous before, which the CLI never launches; its agents race at exit: the one hosting
    the store leaves while the other still polls it, an upstream torchrun issue.)
    """
    port = _free_port()
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    procs = []
    for node_rank, cwd in enumerate(nodes):
        cwd.mkdir()
        args = ["train", "--data", str(tiny_data.full), "--model", "yolo12n.yaml", "--out", "run",
                "--epochs", "1", "--batch", "8", *TRAIN_FLAGS, "--launcher", "torchrun",
                "--nnodes", "2", "--node-rank", str(node_rank), "--master-addr", "127.0.0.1",
                "--master-port", str(port)]  # fmt: skip
        procs.append(cli_popen(*args, cwd=cwd))
    logs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(out[-1500:] + err[-3000:] for out, err in logs)

    written = [cwd / "run" for cwd in nodes if (cwd / "run" / "train_summary.json").exists()]
    main, other = nodes[0] / "run", nodes[1] / "run"
    assert written == [main]  # static rendezvous: node 0 hosts global rank 0
    assert not other.exists() or [p for p in other.rglob("*") if p.is_file()] == []
    summary = read_summary(main)
    _check_sharded_run(summary, images=tiny_data.train_images, per_rank_batch=4)
    assert [r["local_rank"] for r in summary["ranks"]] == [0, 0]
    assert summary["model"] == "yolo12n" and summary["fraction"] is None
    assert (main / "weights" / "best.pt").is_file() and (main / "weights" / "last.pt").is_file()
    assert results_epochs(main) == [1]
