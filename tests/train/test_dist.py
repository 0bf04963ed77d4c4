"""The torchrun environment, the device per process, and write ordering across "nodes"."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from detpipe.errors import InvalidInput, Unavailable
from detpipe.train.dist import DistEnv, writers_first


def test_from_env_single_process() -> None:
    assert DistEnv.from_env({}) == DistEnv()
    assert DistEnv.from_env({"WORLD_SIZE": "1", "RANK": "0"}) == DistEnv()


def test_from_env_second_node() -> None:
    env = {"WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
    got = DistEnv.from_env(env)
    assert got == DistEnv(world_size=8, rank=5, local_rank=1, local_world_size=4)
    assert (got.distributed, got.is_main, got.is_node_main) == (True, False, False)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORLD_SIZE": "4", "RANK": "4", "LOCAL_RANK": "0"}, "RANK=4 WORLD_SIZE=4"),
        ({"WORLD_SIZE": "4", "LOCAL_RANK": "0"}, "RANK is not set: start with torchrun"),
        ({"WORLD_SIZE": "two"}, "must be integers"),
        ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"}, "LOCAL_RANK=2"),
    ],
)
def test_from_env_inconsistent(env: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        DistEnv.from_env(env)


def test_device_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    rank3 = DistEnv(world_size=8, rank=7, local_rank=3, local_world_size=4)
    monkeypatch.setattr("detpipe.train.dist.cuda_device_count", lambda: 0)
    assert rank3.device("auto") == "cpu" and rank3.device("cpu") == "cpu"
    with pytest.raises(Unavailable):
        rank3.device("cuda")
    monkeypatch.setattr("detpipe.train.dist.cuda_device_count", lambda: 4)
    assert rank3.device("cuda") == "3" and rank3.device("auto") == "3"  # cuda:LOCAL_RANK, never RANK
    assert DistEnv().device("auto") == "0" and DistEnv().device("1") == "1"
    with pytest.raises(InvalidInput, match="choose GPUs with CUDA_VISIBLE_DEVICES"):
        rank3.device("0,1")
    with pytest.raises(InvalidInput, match="use --launcher torchrun"):
        DistEnv().device("0,1")


def _writer(index: int, layout: list[tuple[int, int]], init: str, log: str) -> None:
    rank, local_rank = layout[index]
    env = DistEnv(world_size=len(layout), rank=rank, local_rank=local_rank, local_world_size=2)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=env.world_size)
    try:
        with writers_first(env):
            time.sleep(0.2 * (len(layout) - rank))  # later ranks would finish first if unordered
            with open(log, "a") as f:
                f.write(f"{rank}\n")
                f.flush()
                os.fsync(f.fileno())
    finally:
        dist.destroy_process_group()


def test_writers_first_orders_rank0_then_node_mains_then_the_rest(tmp_path: Path) -> None:
    """Two nodes x two processes: rank 0, then node 1's local rank 0 (rank 2), then ranks 1 and 3."""
    layout = [(0, 0), (1, 1), (2, 0), (3, 1)]  # (global rank, local rank)
    log = tmp_path / "order.txt"
    init = f"file://{tmp_path / 'store'}"
    mp.start_processes(_writer, args=(layout, init, str(log)), nprocs=4, join=True, start_method="fork")
    order = [int(x) for x in log.read_text().split()]
    assert order[:2] == [0, 2] and sorted(order[2:]) == [1, 3]
