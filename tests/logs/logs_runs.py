"""Small fixed results.csv run directories, with values checkable by hand."""

from __future__ import annotations

import math
import random
import statistics
from pathlib import Path

import yaml

NAN = float("nan")
COLUMNS = (
    "epoch", "time", "train/box_loss", "train/cls_loss", "train/dfl_loss", "metrics/precision(B)",
    "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)", "val/box_loss", "val/cls_loss",
    "val/dfl_loss", "lr/pg0", "lr/pg1", "lr/pg2",
)  # fmt: skip


def write_run(root: Path, name: str, columns: dict[str, list[float]], **args: int) -> Path:
    """A run dir with results.csv (ultralytics' column order and '%.6g' cells) and args.yaml."""
    run = root / name
    run.mkdir(parents=True)
    n = len(columns["train/box_loss"])
    full = {"epoch": list(range(1, n + 1)), "time": [10.0 * (i + 1) for i in range(n)]}
    for c in COLUMNS[2:]:
        full[c] = columns.get(c, [0.5] * n)
    full.update({k: v for k, v in columns.items() if k in ("epoch", "time")})
    lines = [",".join(COLUMNS)]
    lines += [",".join(f"{full[c][i]:.6g}" for c in COLUMNS) for i in range(n)]
    (run / "results.csv").write_text("\n".join(lines) + "\n")
    if args:
        (run / "args.yaml").write_text(yaml.safe_dump(args))
    return run


def clean(root: Path) -> Path:
    """12 of 12 epochs; box loss 2.0 -> 1.0; mAP50 flat at 0.6 from epoch 6; LR warm-up 1-2."""
    return write_run(
        root,
        "clean",
        {
            "train/box_loss": [2.0, 1.8, 1.6, 1.5, 1.4, 1.3, 1.25, 1.2, 1.15, 1.1, 1.05, 1.0],
            "val/box_loss": [2.5, 2.0, 1.9, 1.8, 1.7, 1.6, 1.6, 1.6, 1.6, 1.6, 1.6, 1.6],
            "metrics/mAP50(B)": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6],
            "metrics/mAP50-95(B)": [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.31, 0.32, 0.32, 0.33, 0.33, 0.32],
            "lr/pg0": [0.003, 0.006, 0.0099, 0.009, 0.008, 0.007, 0.006, 0.005, 0.004, 0.003, 0.002, 0.001],
        },
        epochs=12,
        patience=100,
    )


def nan_loss(root: Path) -> Path:
    """The box loss turns NaN at epoch 4 of 6."""
    return write_run(
        root,
        "nan",
        {"train/box_loss": [2.0, 1.5, 1.2, NAN, NAN, NAN], "metrics/mAP50-95(B)": [0.1, 0.2, 0.2, 0, 0, 0]},
        epochs=6,
        patience=100,
    )


def stopped_early(root: Path) -> Path:
    """8 of 20 epochs, patience 3, best mAP50-95 at epoch 5: ultralytics' early stop."""
    return write_run(
        root,
        "early",
        {
            "train/box_loss": [2.0, 1.9, 1.8, 1.7, 1.6, 1.5, 1.4, 1.3],
            "metrics/mAP50-95(B)": [0.1, 0.2, 0.3, 0.35, 0.4, 0.39, 0.38, 0.4],
        },
        epochs=20,
        patience=3,
    )


def crashed(root: Path) -> Path:
    """8 of 20 epochs, patience 100: not early stopping."""
    return write_run(
        root,
        "crashed",
        {"train/box_loss": [2.0, 1.9, 1.8, 1.7, 1.6, 1.5, 1.4, 1.3], "metrics/mAP50-95(B)": [0.1] * 8},
        epochs=20,
        patience=100,
    )


def spiky(root: Path) -> Path:
    """Box loss spikes at epoch 6 (1.2 vs a median of 0.8); mAP50 zigzags."""
    return write_run(
        root,
        "spiky",
        {
            "train/box_loss": [1.0, 0.9, 0.8, 0.8, 0.8, 1.2, 0.8, 0.8],
            "metrics/mAP50(B)": [0.1, 0.3, 0.2, 0.4, 0.3, 0.5, 0.5, 0.5],
            "metrics/mAP50-95(B)": [0.05, 0.15, 0.1, 0.2, 0.15, 0.25, 0.25, 0.25],
        },
        epochs=8,
        patience=100,
    )


SEED_QUARTER_COVS = (1.3, 0.9, 0.4, 0.2)
"""The railway study's seed-002 log: mAP50 CoV (%) per quarter of its 100 epochs; it oscillates
by ±0.3 % over epochs 40-60 and the study read it as stable after epoch 65."""
RAILWAY_SHAPES = (
    (0.0764, 50.0, 0.0093, 0.0003),
    (0.0807, 43.6, 0.0061, 0.0006),
    (0.0839, 36.8, 0.006, 0.0013),
)
"""(c, tau, noise before epoch 40, noise from epoch 40) fitted offline (scipy least_squares)
so that noise draws 0, 1 and 2 give ``SEED_QUARTER_COVS``."""


def railway_map50(c: float, tau: float, early: float, late: float, draw: int) -> list[float]:
    """100 epochs of mAP50 = (0.955 - c e^(-epoch/tau)) x (1 + osc + noise): osc = ±0.3 %
    epoch by epoch over epochs 40-60, noise a normal draw (``random.Random(draw)``) of relative
    size ``early`` before epoch 40 and ``late`` from it (below the oscillation, which shows)."""
    rng, normal = random.Random(draw), statistics.NormalDist()
    out = []
    for e in range(1, 101):
        osc = (0.003 if e % 2 == 0 else -0.003) if 40 <= e <= 60 else 0.0
        noise = (early if e < 40 else late) * normal.inv_cdf(rng.random())
        out.append((0.955 - c * math.exp(-e / tau)) * (1 + osc + noise))
    return out


def railway_like(root: Path, draw: int = 0) -> Path:
    """A run dir shaped like the seed's log (``RAILWAY_SHAPES[draw]``), named ``railway<draw>``."""
    return _map50_run(root, f"railway{draw}", railway_map50(*RAILWAY_SHAPES[draw], draw=draw))


def flat(root: Path) -> Path:
    """100 epochs of mAP50 0.9 ± 0.05 % (a run that starts where it ends)."""
    rng = random.Random(5)
    return _map50_run(root, "flat", [0.9 * (1 + 0.0005 * (2 * rng.random() - 1)) for _ in range(100)])


def never_settling(root: Path) -> Path:
    """100 epochs of mAP50 rising 0.3 -> 0.6 with 2 % noise to the end."""
    rng = random.Random(6)
    values = [(0.3 + 0.003 * e) * (1 + 0.02 * (2 * rng.random() - 1)) for e in range(100)]
    return _map50_run(root, "never", values)


def noisy_plateau(root: Path) -> Path:
    """100 epochs of mAP50 0.8 ± 1.5 %: no trend, but as noisy at the end as at the start."""
    rng = random.Random(7)
    return _map50_run(root, "noisy", [0.8 * (1 + 0.015 * (2 * rng.random() - 1)) for _ in range(100)])


def _map50_run(root: Path, name: str, map50: list[float]) -> Path:
    n = len(map50)
    return write_run(
        root,
        name,
        {
            "train/box_loss": [1.5 - 0.5 * i / n for i in range(n)],
            "metrics/mAP50(B)": map50,
            "metrics/mAP50-95(B)": [0.6 * v for v in map50],
        },
        epochs=n,
        patience=100,
    )
