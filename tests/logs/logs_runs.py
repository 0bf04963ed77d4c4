"""Small fixed results.csv run directories, with values checkable by hand."""

from __future__ import annotations

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
