"""Launchers: train in this process, or start a torchrun job on this machine.

``local`` calls :func:`detpipe.train.run.train` in-process. ``torchrun`` runs
``python -m torch.distributed.run ... -m detpipe.train.worker <the same flags>``: standalone
on one machine, or as one node of a multi-node job (static rendezvous at
``--master-addr``; start the same command on every node with its own ``--node-rank``)::

    opts = TorchrunOptions(nproc_per_node=4)
    cmd = torchrun_command(cfg, opts)     # ['/venv/bin/python', '-m', 'torch.distributed.run',
                                          #  '--standalone', '--nproc-per-node', '4', '-m', ...]
    summary = run_torchrun(cfg, opts)     # the summary on the node of rank 0, else None
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detpipe.errors import DetpipeError, InvalidInput
from detpipe.io import read_json
from detpipe.train import checkpoints as ck
from detpipe.train.config import TrainConfig, parse_device
from detpipe.train.models import is_store_uri, resolve_model
from detpipe.train.run import check_data

log = logging.getLogger(__name__)

WORKER_MODULE = "detpipe.train.worker"
RUN_MARKERS = ("args.yaml", "results.csv", "weights", ck.SUMMARY)  # what makes a directory a run


@dataclass(frozen=True)
class TorchrunOptions:
    """How torchrun lays out the job.

    Attributes:
        nproc_per_node: processes (GPUs) on this machine.
        nnodes: machines in the job.
        node_rank: this machine's index, 0 .. nnodes-1 (node 0 hosts global rank 0).
        master_addr: address of node 0 (multi-node only).
        master_port: its rendezvous port.
    """

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int = 29500

    def __post_init__(self) -> None:
        if self.nproc_per_node < 1 or self.nnodes < 1:
            raise InvalidInput("--nproc-per-node and --nnodes must be >= 1")
        if not 0 <= self.node_rank < self.nnodes:
            raise InvalidInput(f"--node-rank {self.node_rank}: must be in 0..{self.nnodes - 1}")
        if self.nnodes > 1 and not self.master_addr:
            raise InvalidInput("--nnodes > 1 needs --master-addr (the address of node 0)")

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


def check_inputs(cfg: TrainConfig, world_size: int = 1, *, read_data: bool = True) -> None:
    """Fail fast, before any process starts (and before ultralytics is imported).

    Checks the data YAML, the model, local pretrained weights, that a local ``--resume``
    checkpoint exists, and that the global batch splits over ``world_size`` processes.

    Args:
        cfg: the run.
        world_size: processes the global batch is split over.
        read_data: check the data YAML. A dry run passes False: it only prints what would
            run, and the data may live where the job runs, not here (a multi-node torchrun
            job's shared path, a cluster volume); a missing file is then only a warning.

    Raises:
        InvalidInput: the first problem found.
    """
    if read_data:
        check_data(cfg.data)
    elif not Path(cfg.data).is_file():
        log.warning(
            "--data %s: not found here, not checked (dry run); it must exist where the job runs", cfg.data
        )
    resolve_model(cfg.model)
    if cfg.pretrained and not is_store_uri(cfg.pretrained) and not Path(cfg.pretrained).is_file():
        raise InvalidInput(f"--pretrained {cfg.pretrained}: no such file (local path or s3:// URI)")
    if cfg.resume and not is_store_uri(cfg.resume):
        ck.local_checkpoint(cfg.resume, Path(cfg.out))
    if cfg.batch % world_size:
        raise InvalidInput(f"--batch {cfg.batch} (global) does not split evenly over {world_size} processes")


def check_resumable(cfg: TrainConfig) -> None:
    """A local ``--resume`` checkpoint must be a readable, unfinished training checkpoint.

    Imports ultralytics (the checkpoint pickles its classes): call after ``configure_offline``.

    Raises:
        InvalidInput: no checkpoint, an unreadable one, or a finished run's.
    """
    if cfg.resume and not is_store_uri(cfg.resume):
        ck.checkpoint_epoch(ck.local_checkpoint(cfg.resume, Path(cfg.out)))


def prepare_out(cfg: TrainConfig, overwrite: bool = False) -> None:
    """Refuse to train into a non-empty OUT unless resuming; ``overwrite`` clears an old run.

    Raises:
        InvalidInput: OUT is a file, holds something else than a run, or a run without
            ``--resume``/``--overwrite``.
    """
    out = Path(cfg.out)
    if not out.exists() or cfg.resume is not None:
        return
    if not out.is_dir():
        raise InvalidInput(f"--out {out}: exists and is not a directory")
    if not any(out.iterdir()):
        return
    is_run = any((out / m).exists() for m in RUN_MARKERS)
    if not overwrite or not is_run:
        hint = (
            "use --resume to continue it or --overwrite to replace it" if is_run else "choose another --out"
        )
        raise InvalidInput(f"--out {out}: not empty ({hint})")
    log.warning("removing the previous run in %s (--overwrite)", out)
    shutil.rmtree(out)


def torchrun_command(cfg: TrainConfig, opts: TorchrunOptions, python: str | None = None) -> list[str]:
    """The torchrun command line that trains ``cfg`` on this machine."""
    cmd = [python or sys.executable, "-m", "torch.distributed.run"]
    if opts.nnodes == 1:
        cmd += ["--standalone"]  # c10d rendezvous on a free local port
    else:
        cmd += [
            "--nnodes", str(opts.nnodes),
            "--node-rank", str(opts.node_rank),
            "--master-addr", str(opts.master_addr),
            "--master-port", str(opts.master_port),
        ]  # fmt: skip
    kind, _ = parse_device(cfg.device)
    worker_cfg = cfg if kind in ("auto", "cpu", "mps") else _with_device(cfg, "cuda")
    return [*cmd, "--nproc-per-node", str(opts.nproc_per_node), "-m", WORKER_MODULE, *worker_cfg.to_argv()]


def torchrun_env(cfg: TrainConfig, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for torchrun: ``--device 0,2`` becomes CUDA_VISIBLE_DEVICES=0,2."""
    env = dict(os.environ if base is None else base)
    _, indices = parse_device(cfg.device)
    if indices:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in indices)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        env.pop(name, None)  # torchrun sets these for its workers
    return env


def default_nproc(cfg: TrainConfig) -> int:
    """One process per listed GPU, per visible GPU for ``cuda``/``auto``, else 1."""
    kind, indices = parse_device(cfg.device)
    if indices:
        return len(indices)
    if kind in ("cuda", "auto"):
        import torch

        return max(torch.cuda.device_count(), 1)
    return 1


def run_local(cfg: TrainConfig) -> dict[str, Any] | None:
    """Train in this process."""
    from detpipe.train.run import train

    return train(cfg)


def run_torchrun(cfg: TrainConfig, opts: TorchrunOptions) -> dict[str, Any] | None:
    """Start torchrun and wait; the summary on the node holding rank 0, else ``None``.

    Raises:
        DetpipeError: torchrun (a worker) failed; the workers printed the reason.
    """
    cmd = torchrun_command(cfg, opts)
    log.info("starting: %s", " ".join(cmd))
    proc = subprocess.Popen(cmd, env=torchrun_env(cfg))
    try:
        rc = proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)  # torchrun stops its workers and exits
        proc.wait()
        raise
    if rc != 0:
        raise DetpipeError(f"torchrun exited with status {rc} (the failing worker's reason is above)")
    summary = Path(cfg.out) / ck.SUMMARY
    return read_json(summary) if opts.node_rank == 0 and summary.is_file() else None


def _with_device(cfg: TrainConfig, device: str) -> TrainConfig:
    from dataclasses import replace

    return replace(cfg, device=device)
