"""The export step (ONNX, ONNX INT8, TensorRT) and the accuracy gate that guards it."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from detpipe.components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def export_op(
    model: Input[Model],
    dataset: Input[Dataset],
    subsets: Input[Dataset],
    exported: Output[Model],
    metrics: Output[Metrics],
    formats: list = ["onnx", "onnx-int8", "engine-fp16", "engine-int8"],  # noqa: B006
    imgsz: int = 640,
    calib_images: int = 300,
    max_batch: int = 1,
    device: str = "auto",
    require_gpu: bool = False,
) -> None:
    """Export ``weights/best.pt`` and evaluate every format on val2017 against PyTorch.

    ``max_batch`` 1 exports a fixed batch of one (an edge camera stream); N > 1 a dynamic
    batch axis, engines with a 1..N profile (a server batching requests on a GPU).
    INT8 formats calibrate on ``calib_images`` images of the smallest nested proportional
    subset (``train2017_<pct>_p``, else the whole train split) that holds that many; fewer
    existing is logged as a warning and recorded in the report. ``device`` (``auto``: GPU 0
    when present) runs the PyTorch reference and the engines; on a GPU, or with
    ``require_gpu`` (the cluster's GPU step), a requested engine that cannot be built fails
    the step (exit 3). Only a CPU-only run records engines as skipped; ``gate_op`` then fails
    them as missing unless told ``allow_missing``.
    """
    import tempfile
    import time
    from pathlib import Path

    from detpipe.data.layout import VAL_SPLIT, coco_paths, yolo_dataset
    from detpipe.export.calib import calibration_list
    from detpipe.export.gate import GateConfig
    from detpipe.export.stage import ExportConfig, run_export
    from detpipe.ultralytics_env import configure_offline

    start = time.perf_counter()
    configure_offline()
    val_ann, val_images = coco_paths(dataset.path, VAL_SPLIT)
    # the YOLO dataset root resolves the list's ./images/... lines (the subsets dir does not)
    yolo = Path(tempfile.mkdtemp(prefix="detpipe-yolo-")) / "yolo"
    yolo_dataset(dataset.path, yolo, subsets_dir=subsets.path)
    cfg = ExportConfig(
        weights=Path(model.path) / "weights" / "best.pt",
        out=Path(exported.path),
        formats=tuple(formats),
        imgsz=(imgsz, imgsz),
        batch=max_batch,
        dynamic_batch=max_batch > 1,
        calib=calibration_list(yolo, calib_images) if any(f.endswith("int8") for f in formats) else None,
        calib_images=calib_images,
        val_annotations=val_ann,
        val_images=val_images,
        gate=GateConfig(enabled=False),
        device=device,
        require_gpu=require_gpu,
    )
    report = run_export(cfg)
    for fmt, entry in report["formats"].items():
        exported.metadata[fmt] = entry.get("status")
        if entry.get("status") == "skipped":
            exported.metadata[f"{fmt}_skipped"] = entry.get("reason", "")
    exported.metadata["device"] = report["device"]["resolved"]
    for fmt, acc in report.get("accuracy", {}).get("formats", {}).items():
        metrics.log_metric(f"{fmt}_map50_95", acc["mAP50-95"])
    calibration = report["formats"].get("onnx-int8", {}).get("calibration")
    if calibration:
        metrics.log_metric("calib_images", calibration["images"])
    metrics.log_metric("wall_time_s", round(time.perf_counter() - start, 3))


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def gate_op(
    exported: Input[Model],
    metrics: Output[Metrics],
    max_drop: str = "fp16=1.0,int8=2.0",
    min_map: float = 0.01,
    allow_missing: bool = False,
) -> bool:
    """Fail the run when an exported format lost more mAP50-95 points than ``max_drop`` allows,
    scores below ``min_map`` (a model that learned nothing), or was requested but has no
    accuracy result (an engine skipped on a CPU-only run) unless ``allow_missing``.

    ``max_drop`` takes precisions or format names: ``fp16=1.0,int8=2.0,onnx=0.5``. The
    message of a floor failure says what to change (epochs, data, pretrained weights).
    Nothing after this step (benchmark, publish, deploy) runs when it fails.
    """
    from pathlib import Path

    from detpipe.export.gate import GateConfig, enforce, gate_from_report, parse_gate
    from detpipe.io import read_json

    report = read_json(Path(exported.path) / "export_report.json")
    cfg = GateConfig(max_drop=parse_gate(max_drop), min_map=min_map, allow_missing=allow_missing)
    decisions = gate_from_report(report, cfg)
    for d in decisions:
        if d.drop_points is not None:
            metrics.log_metric(f"{d.format}_drop_points", round(d.drop_points, 4))
    enforce(decisions)
    return True
