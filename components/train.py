"""The training step: one YOLO model on one subset, with the local trainer or torchrun."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from detpipe.components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def train_op(
    dataset: Input[Dataset],
    subsets: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    arch: str = "yolov8n.yaml",
    fraction: float = 100.0,
    strategy: str = "p",
    epochs: int = 100,
    imgsz: int = 640,
    batch: int = 16,
    seed: int = 0,
    device: str = "auto",
    workers: int = 8,
    nproc_per_node: int = 1,
    train_overrides: dict = {},  # noqa: B006
) -> None:
    """Train ``arch`` from scratch on the ``train2017_<fraction>_<strategy>`` subset.

    ``train_overrides`` takes any other ultralytics train argument (``lr0``, ``optimizer``,
    ``mosaic``, ``nbs`` ...), as ``detpipe train --set`` does.

    The COCO dataset is converted to YOLO labels in the step's scratch space first. With
    ``nproc_per_node`` > 1 the step runs torchrun (one DDP process per GPU of its pod).
    The artifact holds ``weights/{best,last}.pt``, ``results.csv`` and ``train_summary.json``.
    """
    import tempfile
    import time
    from pathlib import Path

    from detpipe.data.layout import TRAIN_SPLIT, yolo_dataset
    from detpipe.subsets.config import list_name
    from detpipe.train import launch
    from detpipe.train.config import build_config
    from detpipe.ultralytics_env import configure_offline

    start = time.perf_counter()
    configure_offline()
    scratch = Path(tempfile.mkdtemp(prefix="detpipe-yolo-"))
    yolo_dataset(dataset.path, scratch / "yolo", subsets_dir=subsets.path)
    data_yaml = scratch / "yolo" / Path(list_name(TRAIN_SPLIT, fraction, strategy)).with_suffix(".yaml")
    flags = {
        "epochs": epochs,
        "imgsz": imgsz,
        "batch": batch,
        "seed": seed,
        "workers": workers,
        "plots": False,
    }
    cfg = build_config(str(data_yaml), arch, model.path, flags=flags, sets=train_overrides, device=device)
    launch.check_inputs(cfg, nproc_per_node)
    if nproc_per_node > 1:
        summary = launch.run_torchrun(cfg, launch.TorchrunOptions(nproc_per_node=nproc_per_node))
    else:
        summary = launch.run_local(cfg)
    assert summary is not None  # rank 0 runs in this pod
    for key in ("best_map5095", "best_map50", "best_epoch", "images_per_s"):
        if summary.get(key) is not None:
            metrics.log_metric(key, summary[key])
    model.metadata.update({"arch": arch, "fraction": fraction, "strategy": strategy, "seed": seed})
    model.metadata["framework"] = "ultralytics"
    metrics.log_metric("wall_time_s", round(time.perf_counter() - start, 3))


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def record_op(model: Input[Model], evaluation: Input[Artifact], runs: str) -> str:
    """File one sweep cell's ``train_summary.json`` (+ COCO ``metrics.json``) under ``runs``.

    ``runs`` is a directory or store URI prefix; the report step reads every summary there.
    Returns where the cell was recorded.
    """
    from pathlib import Path

    from detpipe.io import read_json
    from detpipe.store import open_store

    summary = read_json(Path(model.path) / "train_summary.json")
    pct = f"{summary['fraction']:g}" if summary.get("fraction") is not None else "full"
    cell = f"{summary['model']}_{pct}_{summary.get('strategy') or 'all'}_s{summary.get('seed', 0)}"
    store = open_store(runs)
    store.put_file(f"{cell}/train_summary.json", Path(model.path) / "train_summary.json")
    store.put_file(f"{cell}/metrics.json", Path(evaluation.path) / "metrics.json")
    return f"{store.uri}/{cell}"
