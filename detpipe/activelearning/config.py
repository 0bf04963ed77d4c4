"""The settings of one active-learning cell (one strategy, one seed).

::

    cfg = CellConfig(data=Path("runs/data"), out=Path("runs/al/uncertainty_s0"), strategy="uncertainty",
                     seed=0, rounds=3, budget=30, seed_fraction=10.0, epochs=30, imgsz=64)

``data`` is a dataset root in COCO layout (:mod:`detpipe.data.layout`): the train split is
the pool the seed set and the picks come from, the val split the fixed validation set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detpipe.errors import InvalidInput
from detpipe.mine.strategy import STRATEGIES

BASELINE = "random"
"""The strategy every other one is measured against."""


@dataclass(frozen=True)
class CellConfig:
    """One cell of the experiment.

    Attributes:
        data: dataset root (``images/{train2017,val2017}``, ``annotations/instances_*.json``).
        out: the cell's directory (replaced atomically when the cell is done).
        strategy: how the picks are chosen, one of :data:`detpipe.mine.strategy.STRATEGIES`.
        seed: the seed set's draw, the training seed and the random/diversity picks' seed; the
            same seed gives every strategy the same seed set and the same round-0 model.
        rounds: selection rounds after the seed round (the cell trains ``rounds + 1`` times).
        budget: images picked (and labeled) per round.
        seed_fraction: the seed set, in percent of the training images with annotations.
        finetune: rounds after the first start from the previous round's weights (else each
            round trains ``model`` from scratch).
        model: a model config (``yolov8-pico.yaml``) or weights, as ``detpipe train --model``.
        epochs: epochs of the seed round and of every round trained from scratch.
        finetune_epochs: epochs of a fine-tuned round (0: ``epochs``).
        imgsz, batch, device, workers: training (and evaluation, mining) settings.
        train_overrides: other ultralytics train arguments (``detpipe train --set``).
        mine_batch: images per inference batch when scoring the pool.
        progress: progress bars.
    """

    data: Path
    out: Path
    strategy: str = "uncertainty"
    seed: int = 0
    rounds: int = 3
    budget: int = 30
    seed_fraction: float = 10.0
    finetune: bool = False
    model: str = "yolov8-pico.yaml"
    epochs: int = 30
    finetune_epochs: int = 0
    imgsz: int = 64
    batch: int = 16
    device: str = "auto"
    workers: int = 0
    train_overrides: Mapping[str, Any] = field(default_factory=dict)
    mine_batch: int = 16
    progress: bool = False

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InvalidInput(f"strategy {self.strategy!r}: one of {', '.join(STRATEGIES)}")
        for name in ("rounds", "seed", "finetune_epochs"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("budget", "epochs", "imgsz", "batch", "mine_batch"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.seed_fraction) and 0 < self.seed_fraction < 100):
            raise InvalidInput(f"seed_fraction must be in (0, 100) percent, got {self.seed_fraction}")
        object.__setattr__(self, "train_overrides", dict(self.train_overrides))

    @property
    def name(self) -> str:
        """``<strategy>_s<seed>`` (+ ``_ft`` when fine-tuned): the cell's name in the runs prefix."""
        return f"{self.strategy}_s{self.seed}{'_ft' if self.finetune else ''}"

    def round_epochs(self, round_index: int) -> int:
        """Epochs of round ``round_index`` (0 is the seed round)."""
        if self.finetune and round_index > 0:
            return self.finetune_epochs or self.epochs
        return self.epochs

    def pick_seed(self, round_index: int) -> int:
        """The seed of the picks made after round ``round_index`` (random and diversity use it)."""
        return self.seed * 1000 + round_index

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON (what ``cell.json`` records)."""
        return {
            "strategy": self.strategy,
            "seed": self.seed,
            "rounds": self.rounds,
            "budget": self.budget,
            "seed_fraction": self.seed_fraction,
            "finetune": self.finetune,
            "model": self.model,
            "epochs": self.epochs,
            "finetune_epochs": self.finetune_epochs,
            "imgsz": self.imgsz,
            "batch": self.batch,
            "device": self.device,
            "train_overrides": dict(self.train_overrides),
        }


def plan_cells(strategies: Sequence[str], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """The experiment's cells: every strategy x seed, the :data:`BASELINE` added when missing.

    Raises:
        InvalidInput: an unknown strategy, a repeated one, or a seed that is not an integer >= 0.
    """
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise InvalidInput(f"strategies {list(strategies)}: each one of {', '.join(STRATEGIES)}")
    if len(set(strategies)) != len(strategies):
        raise InvalidInput(f"strategies {list(strategies)}: each once")
    checked = []
    for seed in seeds:
        if isinstance(seed, float) and seed.is_integer():  # Kubeflow hands list items over as floats
            seed = int(seed)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InvalidInput(f"seeds {list(seeds)}: integers >= 0")
        checked.append(seed)
    if not checked or len(set(checked)) != len(checked):
        raise InvalidInput(f"seeds {list(seeds)}: at least one, each once")
    ordered = [*strategies, *([] if BASELINE in strategies else [BASELINE])]
    return [{"strategy": s, "seed": seed} for s in ordered for seed in checked]
