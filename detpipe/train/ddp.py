"""ultralytics' DetectionTrainer, made correct under torchrun, single- and multi-node.

What ultralytics 8.4 does with torchrun's variables, and what goes wrong:

* It derives its ``world_size`` from the *local* device list (``device='0,1,2,3'`` -> 4;
  one device -> 1; CPU -> 0), while ``RANK`` is global. Multi-node with ``device='0,1,2,3'``
  on every node: ``init_process_group(rank=RANK, world_size=4)`` is an impossible world
  (rank 5 of 4): the second node fails. One device per process (``device=LOCAL_RANK``, the
  torchrun way): world_size 1, so no process group, no DDP, and ``build_dataloader`` (which
  picks a DistributedSampler from ``rank != -1``) fails with "Default process group has not
  been initialized". On CPU (world_size 0) it never sets up DDP: it fails the same way, and
  past that would scale the loss by ``world_size`` = 0.
* It splits the batch by that local count, so a 4-node job trains with 4x the intended batch.
* With several devices and no torchrun it re-spawns itself through a generated temp script.
* Distributed validation gathers statistics from every rank, and the final evaluation of
  ``best.pt`` runs on every rank: ranks on a node without that file (one disk per node)
  skip it while rank 0 waits in the gather forever; on CPU it builds ``cuda:<n>``.
* Label caches are written by every node's local rank 0 at once (same file on shared storage).

:class:`DetpipeDetectionTrainer` keeps ultralytics' training loop and fixes those:

* world = torchrun's ``WORLD_SIZE``/``RANK``; the process group (nccl on CUDA, gloo on CPU) is
  set up before the trainer by :func:`detpipe.train.dist.process_group`; the device is
  ``cuda:LOCAL_RANK`` or cpu; ultralytics never spawns its own DDP subprocess;
* per-process batch = global ``batch // WORLD_SIZE`` (``batch`` must divide evenly), so
  gradient accumulation and weight decay scaling see the same global batch as one GPU would;
* the train loader shards with a DistributedSampler over the global group (checked); label
  caches are built by global rank 0 first (:func:`~detpipe.train.dist.writers_first`);
* the model is wrapped in DDP (``find_unused_parameters`` as ultralytics sets it) with
  ``device_ids`` only on CUDA; the AMP decision of rank 0 is broadcast;
* validation, the final evaluation, checkpoints, results.csv, plots and logs: global rank 0
  only, over the whole val set, with no collectives inside (so no rank can hang on them);
* checkpoints are written atomically (temp file + rename): a kill mid-save leaves the
  previous ``last.pt`` intact for ``--resume``.

Usage (what :func:`detpipe.train.run.train` does in every process)::

    env = DistEnv.from_env()
    device = env.device("auto")
    with process_group(env, device):
        trainer = DetpipeDetectionTrainer(overrides={**overrides, "device": device}, dist_env=env)
        trainer.train()
        ranks = gather_stats(env, trainer.finish_stats())   # every rank's numbers, on rank 0
"""

from __future__ import annotations

import hashlib
import os
import time
from copy import copy
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from ultralytics.data import build_dataloader
from ultralytics.models.yolo.detect import DetectionTrainer, DetectionValidator
from ultralytics.nn.tasks import load_checkpoint
from ultralytics.utils import DEFAULT_CFG, LOGGER
from ultralytics.utils import RANK as ULTRALYTICS_RANK
from ultralytics.utils.torch_utils import TORCH_2_13, strip_optimizer, unwrap_model

from detpipe.errors import InvalidInput
from detpipe.io import fsync_path
from detpipe.train.dist import DistEnv, writers_first


@dataclass
class RankStats:
    """What one process did in this session (gathered into ``train_summary.json``)."""

    rank: int
    local_rank: int
    device: str
    sampler: str = ""
    sampler_replicas: int = 1
    batch: int = 0
    batches: int = 0
    images: int = 0
    train_seconds: float = 0.0
    gpu_mem_peak_gb: float | None = None
    params_sha256: str = ""


@dataclass
class ValidationView:
    """What ultralytics' validator reads from its trainer, as a world of one process.

    Validation runs on global rank 0 alone; with ``world_size`` 1 the validator skips its
    cross-rank loss reduction, which would wait for ranks that are not validating.
    """

    device: torch.device
    data: dict[str, Any]
    amp: bool
    loss_items: dict[str, torch.Tensor]
    stopper: Any
    epoch: int
    epochs: int
    ema: Any
    label_loss_items: Any
    world_size: int = 1


class RankZeroDetectionValidator(DetectionValidator):
    """DetectionValidator for one process validating the whole val set (global rank 0).

    ultralytics decides whether to gather from its global RANK constant: on rank 0 of a job it
    would wait in ``gather_object``/``reduce`` for ranks that are not validating. Here there
    is nothing to gather, exactly as in a single-process run.
    """

    def gather_stats(self) -> None:
        """Nothing to gather: this process saw every val image."""


class DetpipeDetectionTrainer(DetectionTrainer):
    """DetectionTrainer for torchrun jobs of any shape (and single processes, unchanged).

    Args:
        cfg: ultralytics base configuration.
        overrides: train arguments; ``device`` must already be this process's device
            (:meth:`DistEnv.device`).
        _callbacks: ultralytics callbacks.
        dist_env: this process's place in the job; a single process by default.
    """

    def __init__(
        self,
        cfg: Any = DEFAULT_CFG,
        overrides: dict[str, Any] | None = None,
        _callbacks: dict | None = None,
        dist_env: DistEnv | None = None,
    ) -> None:
        self.dist_env = dist_env or DistEnv()
        expected = self.dist_env.rank if self.dist_env.distributed else -1
        if expected != ULTRALYTICS_RANK:
            raise RuntimeError(
                f"ultralytics read RANK={ULTRALYTICS_RANK} at import but this process is rank {expected}: "
                "import ultralytics only after torchrun has set the environment"
            )
        if self.dist_env.distributed and not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("enter detpipe.train.dist.process_group() before building the trainer")
        super().__init__(cfg, overrides, _callbacks)
        self.ddp = False  # never let ultralytics re-spawn itself through a generated DDP script
        if self.dist_env.distributed:
            self.world_size = self.dist_env.world_size
            if self.batch_size % self.world_size:
                raise InvalidInput(
                    f"batch {self.batch_size} (global) does not split evenly over {self.world_size} processes"
                )
        self.rank_stats = RankStats(self.dist_env.rank, self.dist_env.local_rank, str(self.device))
        self._epoch_started_at = 0.0
        self.add_callback("on_train_epoch_start", DetpipeDetectionTrainer._start_epoch_clock)
        self.add_callback("on_train_epoch_end", DetpipeDetectionTrainer._stop_epoch_clock)

    @property
    def per_process_batch(self) -> int:
        """Images per process and step: the global batch split over the world."""
        return self.batch_size // max(self.dist_env.world_size, 1)

    # -- distributed setup ---------------------------------------------------------------------

    def _setup_ddp(self) -> None:
        """Check the process group (already up) instead of ultralytics' local-count init."""
        if dist.get_world_size() != self.world_size or dist.get_rank() != self.dist_env.rank:
            raise RuntimeError(
                f"process group is rank {dist.get_rank()}/{dist.get_world_size()}, "
                f"expected {self.dist_env.rank}/{self.world_size}"
            )

    def _setup_train(self) -> None:
        """ultralytics' setup, then AMP agreement and the DDP wrap done right for CPU and CUDA.

        ultralytics wraps with ``device_ids=[device.index]`` (``[None]`` on CPU, which DDP
        rejects) and broadcasts AMP inside ``_setup_train`` when its world_size > 1; both are
        done here instead, after the rest of its setup, which sees world_size 1 meanwhile.
        Nothing in between depends on the wrap: the optimizer and EMA unwrap the model.
        """
        if not self.dist_env.distributed:
            super()._setup_train()
            self._record_sampler()
            return
        world = self.world_size
        self.world_size = 1
        try:
            super()._setup_train()
        finally:
            self.world_size = world
        self._agree_on_amp()
        self.model = nn.parallel.DistributedDataParallel(
            self.model,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=not bool(self.args.compile),
            static_graph=bool(self.args.compile),
            **{"forward_sync_buffers" if TORCH_2_13 else "broadcast_buffers": False},
        )
        # DDP broadcast rank 0's weights to all ranks; the EMA copies were made per rank before.
        for tensor in self.ema.ema.state_dict().values():
            dist.broadcast(tensor, src=0)
        self._record_sampler()

    def _agree_on_amp(self) -> None:
        """Use rank 0's AMP decision (its AMP check ran alone) on every rank."""
        flag = torch.tensor(int(self.amp), device=self.device)
        dist.broadcast(flag, src=0)
        amp = bool(flag.item())
        if amp != self.amp:  # only ever turns AMP off; a disabled scaler has no state to keep
            self.amp = amp
            self.scaler = torch.amp.GradScaler("cuda", enabled=amp and self.args.amp != "bf16")

    def _record_sampler(self) -> None:
        sampler = self.train_loader.sampler
        self.rank_stats.sampler = type(sampler).__name__ if sampler is not None else "none"
        self.rank_stats.sampler_replicas = int(getattr(sampler, "num_replicas", 1))
        self.rank_stats.batch = int(self.train_loader.batch_size)

    def get_dataloader(self, dataset_path: str, batch_size: int = 16, rank: int = 0, mode: str = "train"):
        """Train loader sharded over the global world; val loader whole, for rank 0.

        ultralytics passes ``batch // its world size``; under torchrun the per-process batch is
        taken from the global batch here instead, in one place (:attr:`per_process_batch`).
        """
        if not self.dist_env.distributed:
            return super().get_dataloader(dataset_path, batch_size, rank, mode)
        train = mode == "train"
        batch = self.per_process_batch if train else 2 * self.per_process_batch
        with writers_first(self.dist_env):
            dataset = self.build_dataset(dataset_path, mode, batch)
        shuffle = train
        if (
            getattr(dataset, "rect", False)
            and shuffle
            and not np.all(dataset.batch_shapes == dataset.batch_shapes[0])
        ):
            LOGGER.warning("'rect=True' is incompatible with DataLoader shuffle, setting shuffle=False")
            shuffle = False
        loader = build_dataloader(
            dataset,
            batch=batch,
            workers=self.args.workers if train else self.args.workers * 2,
            shuffle=shuffle,
            rank=self.dist_env.local_rank if train else -1,  # any rank != -1 selects a sampler
            drop_last=bool(self.args.compile) and train,
            device=self.device,
        )
        if train:
            sampler = loader.sampler
            world, rank = self.dist_env.world_size, self.dist_env.rank
            if getattr(sampler, "num_replicas", None) != world or getattr(sampler, "rank", None) != rank:
                raise RuntimeError(f"train sampler {sampler!r} does not shard over the global world")
        return loader

    # -- one process validates and writes ------------------------------------------------------

    def get_validator(self) -> DetectionValidator:
        """ultralytics' validator, or under torchrun one that validates alone on rank 0."""
        if not self.dist_env.distributed:
            return super().get_validator()
        return RankZeroDetectionValidator(
            self.test_loader, save_dir=self.save_dir, args=copy(self.args), _callbacks=self.callbacks
        )

    def _validation_view(self, ema: Any = None) -> ValidationView:
        return ValidationView(
            device=self.device,
            data=self.data,
            amp=self.amp,
            loss_items=self.loss_items,
            stopper=self.stopper,
            epoch=self.epoch,
            epochs=self.epochs,
            ema=ema or self.ema,
            label_loss_items=self.label_loss_items,
        )

    def validate(self) -> tuple[dict[str, float] | None, float | None]:
        """Validate on global rank 0 only (the other ranks go on to the next collective)."""
        if not self.dist_env.distributed:
            return super().validate()
        if not self.dist_env.is_main:
            return None, None
        metrics = self.validator(self._validation_view())
        fitness = metrics.pop("fitness", -self.loss.detach().cpu().numpy())
        if self.best_fitness is None or self.best_fitness < fitness:
            self.best_fitness = fitness
        return metrics, fitness

    def final_eval(self) -> None:
        """Strip the optimizer from the checkpoints and validate ``best.pt``: rank 0 only."""
        if not self.dist_env.distributed:
            super().final_eval()
            return
        if not self.dist_env.is_main:
            return
        ckpt = strip_optimizer(self.last) if self.last.exists() else {}
        if not self.best.exists():
            return
        strip_optimizer(self.best, updates={"train_results": ckpt.get("train_results")})
        model, _ = load_checkpoint(self.best, device=self.device)
        model.args = self.args  # the loss needs the hyperparameters as a namespace
        LOGGER.info(f"\nValidating {self.best}...")
        self.validator.args.plots = self.args.plots
        self.metrics = self.validator(self._validation_view(ema=SimpleNamespace(ema=model)))
        self.metrics.pop("fitness", None)
        self.epoch += 1  # log best metrics at step epochs+1, as ultralytics does
        self.run_callbacks("on_fit_epoch_end")
        self.epoch -= 1

    def save_model(self) -> bool:
        """ultralytics' checkpoint, written to temp files and renamed into place."""
        final_last, final_best = self.last, self.best
        tmp_last = self.wdir / f".last.pt.{os.getpid()}.tmp"
        tmp_best = self.wdir / f".best.pt.{os.getpid()}.tmp"
        self.last, self.best = tmp_last, tmp_best
        try:
            saved = super().save_model()
            for tmp, dest in ((tmp_last, final_last), (tmp_best, final_best)):
                if tmp.exists():
                    fsync_path(tmp)
                    os.replace(tmp, dest)
            fsync_path(self.wdir)
        finally:
            self.last, self.best = final_last, final_best
            for tmp in (tmp_last, tmp_best):
                tmp.unlink(missing_ok=True)
        return saved

    # -- bookkeeping ---------------------------------------------------------------------------

    def preprocess_batch(self, batch: dict) -> dict:
        """Count what this rank trains on, then ultralytics' preprocessing."""
        self.rank_stats.batches += 1
        self.rank_stats.images += int(batch["img"].shape[0])
        return super().preprocess_batch(batch)

    def _start_epoch_clock(self) -> None:
        self._epoch_started_at = time.perf_counter()

    def _stop_epoch_clock(self) -> None:
        self.rank_stats.train_seconds += time.perf_counter() - self._epoch_started_at

    def finish_stats(self) -> RankStats:
        """This rank's statistics, with its peak GPU memory."""
        if self.device.type == "cuda":
            self.rank_stats.gpu_mem_peak_gb = round(torch.cuda.max_memory_reserved(self.device) / 2**30, 3)
        self.rank_stats.train_seconds = round(self.rank_stats.train_seconds, 3)
        digest = hashlib.sha256()  # equal on every rank iff DDP kept the replicas in sync
        for param in unwrap_model(self.model).parameters():
            digest.update(param.detach().cpu().contiguous().numpy().tobytes())
        self.rank_stats.params_sha256 = digest.hexdigest()
        return self.rank_stats


def gather_stats(env: DistEnv, stats: RankStats) -> list[dict[str, Any]]:
    """Every rank's statistics on rank 0 (an empty list elsewhere); a collective call."""
    if not env.distributed:
        return [asdict(stats)]
    gathered: list[Any] | None = [None] * env.world_size if env.is_main else None
    dist.gather_object(asdict(stats), gathered, dst=0)
    return sorted(gathered, key=lambda s: s["rank"]) if gathered else []


__all__ = ["DetpipeDetectionTrainer", "RankStats", "ValidationView", "gather_stats"]
