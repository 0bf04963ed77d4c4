"""Training schedules of a sweep cell: fixed epochs, or epochs matched to the optimizer steps.

The study trained every fraction for the same number of epochs (600), so a 5 % model took
1/20 of the optimizer steps of the 100 % one; it proposed iteration-matched schedules as the
follow-up that separates "less data" from "less training". With ``iterations`` a cell's epochs
are scaled by ``steps_per_epoch(100 %) / steps_per_epoch(cell)`` (ultralytics runs
``ceil(images / batch)`` steps an epoch: its train loader keeps the last partial batch), so
every cell sees the same number of optimizer steps; the scale is capped at
``max_epochs_scale`` (a 0.3125 % cell would otherwise train 320x as many epochs), and capped
cells are flagged. Warm-up epochs scale alike, so warm-up covers the same steps too::

    schedule(ScheduleConfig(policy="iterations", epochs=600, batch=256), images=5_860, full_images=117_266)
    # Schedule(epochs=6000, warmup_epochs=30.0, scale=10.0, capped=True, steps_per_epoch=23)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from detpipe.errors import InvalidInput
from detpipe.train.config import TrainConfig

POLICIES = ("fixed", "iterations")
MAX_EPOCHS_SCALE = 10.0
"""Default cap on the epochs scale: fractions down to 10 % are matched exactly (detpipe's choice;
at the study's 600 epochs a capped 0.3125 % cell still trains 6000 epochs)."""
ULTRALYTICS_WARMUP_EPOCHS: float = TrainConfig.warmup_epochs
"""ultralytics' default ``warmup_epochs`` (as :class:`TrainConfig` repeats it), for runs that set none."""


@dataclass(frozen=True)
class ScheduleConfig:
    """How a sweep schedules its cells.

    Attributes:
        policy: ``fixed`` (every cell trains ``epochs``) or ``iterations`` (matched steps).
        epochs: the epochs of the 100 % cell (and of every cell under ``fixed``).
        batch: the global batch size (steps per epoch = ceil(images / batch)).
        warmup_epochs: the 100 % cell's warm-up epochs.
        max_epochs_scale: the largest factor ``iterations`` multiplies the epochs by (>= 1).
    """

    policy: str = "fixed"
    epochs: int = 600
    batch: int = 16
    warmup_epochs: float = ULTRALYTICS_WARMUP_EPOCHS
    max_epochs_scale: float = MAX_EPOCHS_SCALE

    @classmethod
    def for_training(
        cls, policy: str, epochs: int, batch: int, train_overrides: Mapping[str, Any], max_epochs_scale: float
    ) -> ScheduleConfig:
        """The schedule of a sweep whose runs take ``train_overrides`` (their ``warmup_epochs``, if
        any, is the 100 % cell's warm-up; else ultralytics' default)."""
        warmup = train_overrides.get("warmup_epochs", ULTRALYTICS_WARMUP_EPOCHS)
        if isinstance(warmup, bool) or not isinstance(warmup, int | float):
            raise InvalidInput(f"train_overrides warmup_epochs must be a number, got {warmup!r}")
        return cls(policy, epochs, batch, float(warmup), max_epochs_scale).checked()

    def checked(self) -> ScheduleConfig:
        """This config, or InvalidInput naming the bad value."""
        if self.policy not in POLICIES:
            raise InvalidInput(f"epochs_policy {self.policy!r}: choose from {', '.join(POLICIES)}")
        if self.epochs < 1:
            raise InvalidInput(f"epochs must be >= 1, got {self.epochs}")
        if self.batch < 1:
            raise InvalidInput(f"batch must be >= 1 for a sweep (no auto-batch), got {self.batch}")
        if not (math.isfinite(self.warmup_epochs) and self.warmup_epochs >= 0):
            raise InvalidInput(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not (math.isfinite(self.max_epochs_scale) and self.max_epochs_scale >= 1):
            raise InvalidInput(f"max_epochs_scale must be >= 1, got {self.max_epochs_scale}")
        return self


@dataclass(frozen=True)
class Schedule:
    """One cell's schedule.

    Attributes:
        epochs: epochs to train.
        warmup_epochs: warm-up epochs.
        scale: epochs / the config's epochs (1 under ``fixed``).
        capped: ``iterations`` wanted a larger scale than ``max_epochs_scale``.
        steps_per_epoch: optimizer steps an epoch (before gradient accumulation).
    """

    epochs: int
    warmup_epochs: float
    scale: float
    capped: bool
    steps_per_epoch: int


def steps_per_epoch(images: int, batch: int) -> int:
    """Batches an epoch of ``images`` takes at global ``batch`` (the last partial one included)."""
    return math.ceil(images / batch)


def schedule(config: ScheduleConfig, images: int, full_images: int) -> Schedule:
    """The schedule of a cell training on ``images`` of the ``full_images`` of the 100 % set.

    Raises:
        InvalidInput: a bad config, or image counts that are not 1 <= images <= full_images.
    """
    cfg = config.checked()
    if not 1 <= images <= full_images:
        raise InvalidInput(f"a cell needs 1 <= images <= full images, got {images} of {full_images}")
    steps = steps_per_epoch(images, cfg.batch)
    if cfg.policy == "fixed":
        return Schedule(cfg.epochs, cfg.warmup_epochs, 1.0, False, steps)
    wanted = steps_per_epoch(full_images, cfg.batch) / steps
    scale = min(wanted, cfg.max_epochs_scale)
    epochs = max(1, round(cfg.epochs * scale))
    actual = epochs / cfg.epochs
    return Schedule(
        epochs=epochs,
        warmup_epochs=round(cfg.warmup_epochs * actual, 4),
        scale=round(actual, 4),
        capped=wanted > cfg.max_epochs_scale,
        steps_per_epoch=steps,
    )
