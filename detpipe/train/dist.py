"""The torchrun environment of one training process, and the process group's lifetime.

torchrun (and the Training Operator's PyTorchJob, through torchrun) starts one process per
GPU and tells each who it is: ``WORLD_SIZE`` (processes in the whole job, all nodes),
``RANK`` (this process in the job), ``LOCAL_RANK`` (this process on its node: its GPU) and
``LOCAL_WORLD_SIZE``. Everything here keys off those four, never off a local device list::

    env = DistEnv.from_env()                      # WORLD_SIZE=8 RANK=5 LOCAL_RANK=1 on node 1
    device = env.device("auto")                   # "1" (cuda:1) or "cpu"
    with process_group(env, device):              # nccl on CUDA, gloo on CPU
        ...
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta

from detpipe.device import cuda_device_count, parse_device, resolve_device
from detpipe.errors import InvalidInput, Unavailable

log = logging.getLogger(__name__)

# As long as ultralytics allows: rank 0 alone runs validation and the final evaluation while
# the other ranks wait at the next collective.
PROCESS_GROUP_TIMEOUT = timedelta(hours=3)


@dataclass(frozen=True)
class DistEnv:
    """Who this process is in a torchrun job (a single process is ``DistEnv()``).

    Attributes:
        world_size: processes in the job, all nodes together.
        rank: global rank, 0 .. world_size-1; rank 0 logs, validates and saves.
        local_rank: rank on this node; the CUDA device index.
        local_world_size: processes on this node.
    """

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    local_world_size: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise InvalidInput(
                f"inconsistent torchrun environment: RANK={self.rank} WORLD_SIZE={self.world_size}"
            )
        if not 0 <= self.local_rank < self.local_world_size or self.local_world_size > self.world_size:
            raise InvalidInput(
                f"inconsistent torchrun environment: LOCAL_RANK={self.local_rank} "
                f"LOCAL_WORLD_SIZE={self.local_world_size} WORLD_SIZE={self.world_size}"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DistEnv:
        """Read WORLD_SIZE/RANK/LOCAL_RANK/LOCAL_WORLD_SIZE; absent means a single process.

        Raises:
            InvalidInput: values that are not integers or contradict each other.
        """
        env = os.environ if env is None else env
        try:
            world = int(env.get("WORLD_SIZE", "1"))
            if world <= 1:
                return cls()
            return cls(
                world_size=world,
                rank=int(env["RANK"]),
                local_rank=int(env["LOCAL_RANK"]),
                local_world_size=int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", "1"))),
            )
        except KeyError as e:
            raise InvalidInput(
                f"WORLD_SIZE={env.get('WORLD_SIZE')} but {e.args[0]} is not set: start with torchrun"
            ) from None
        except ValueError:
            raise InvalidInput("WORLD_SIZE, RANK and LOCAL_RANK must be integers") from None

    @property
    def distributed(self) -> bool:
        """More than one process: DDP with a process group."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Global rank 0: the only process that logs, validates and writes outputs."""
        return self.rank == 0

    @property
    def is_node_main(self) -> bool:
        """Local rank 0: the process that prepares this node's files (downloads)."""
        return self.local_rank == 0

    def device(self, requested: str) -> str:
        """The ultralytics device string for this process.

        Args:
            requested: ``--device``: ``auto``, ``cpu``, ``cuda`` or GPU indices.

        Returns:
            ``"cpu"`` or a single CUDA index: ``LOCAL_RANK`` under torchrun.

        Raises:
            InvalidInput: several GPUs for one process (use torchrun), or GPU indices under
                torchrun (restrict GPUs with CUDA_VISIBLE_DEVICES instead).
            Unavailable: CUDA requested but not present.
        """
        kind, indices = parse_device(requested)
        if kind == "mps":
            if self.distributed:
                raise InvalidInput(f"--device {requested}: MPS runs one process (use --launcher local)")
            return resolve_device(requested)
        if kind == "auto":
            kind = "cuda" if cuda_device_count() else "cpu"
        if kind == "cpu":
            return "cpu"
        if not cuda_device_count():
            raise Unavailable(f"--device {requested}: CUDA is not available here (use --device cpu)")
        if self.distributed:
            if indices:
                raise InvalidInput(
                    f"--device {requested}: under torchrun each process uses cuda:LOCAL_RANK; pass "
                    "--device cuda and choose GPUs with CUDA_VISIBLE_DEVICES"
                )
            return str(self.local_rank)
        if len(indices) > 1:
            raise InvalidInput(
                f"--device {requested}: several GPUs need one process each: use --launcher torchrun"
            )
        return str(indices[0]) if indices else "0"


@contextlib.contextmanager
def process_group(env: DistEnv, device: str) -> Iterator[None]:
    """Initialize the global process group for ``env`` (no-op for a single process).

    nccl when ``device`` is a CUDA index (pinned to it first), gloo on CPU; ranks and world
    size come from ``env`` (torchrun's global values), the rendezvous from MASTER_ADDR/PORT.
    The group is destroyed on exit.
    """
    if not env.distributed:
        yield
        return
    import torch
    import torch.distributed as dist

    if device == "cpu":
        backend, device_id = "gloo", None
    else:
        device_id = torch.device("cuda", int(device))
        torch.cuda.set_device(device_id)
        backend = "nccl"
    dist.init_process_group(
        backend=backend,
        init_method="env://",
        rank=env.rank,
        world_size=env.world_size,
        timeout=PROCESS_GROUP_TIMEOUT,
        device_id=device_id,
    )
    log.debug("process group up: %s rank %d/%d (local %d)", backend, env.rank, env.world_size, env.local_rank)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    """Wait for every process of the job (no-op for a single process)."""
    if env.distributed:
        import torch.distributed as dist

        dist.barrier()


@contextlib.contextmanager
def writers_first(env: DistEnv) -> Iterator[None]:
    """Run the block on global rank 0 first, then on each node's local rank 0, then the rest.

    For work that writes a file others then read (ultralytics' label ``.cache`` files, a
    downloaded checkpoint): with a shared filesystem rank 0 writes it once and everyone
    else reads it; with one filesystem per node, each node's local rank 0 writes its own copy.
    ultralytics orders by LOCAL_RANK only, so on shared storage the local rank 0 of every node
    would write the same file at once. Every rank passes exactly two barriers.
    """
    if not env.distributed:
        yield
        return
    stage = 0 if env.is_main else 1 if env.is_node_main else 2
    for _ in range(stage):
        barrier(env)
    yield
    for _ in range(2 - stage):
        barrier(env)
