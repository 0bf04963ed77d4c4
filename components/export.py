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
    calib_fraction: float = 5.0,
    calib_images: int = 300,
    max_batch: int = 1,
) -> None:
    """Export ``weights/best.pt`` and evaluate every format on val2017 against PyTorch.

    ``max_batch`` 1 exports a fixed batch of one (an edge camera stream); N > 1 a dynamic
    batch axis, engines with a 1..N profile (a server batching requests on a GPU).
    INT8 formats calibrate on images of the proportional ``train2017_<calib_fraction>_p``
    subset. Engine formats are skipped (with the reason in export_report.json) where
    TensorRT or a GPU is missing. The gate is recorded here and enforced by ``gate_op``.
    """
    import tempfile
    import time
    from pathlib import Path

    from detpipe.data.layout import TRAIN_SPLIT, VAL_SPLIT, coco_paths, yolo_dataset
    from detpipe.export.gate import GateConfig
    from detpipe.export.stage import ExportConfig, run_export
    from detpipe.subsets.config import list_name
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
        calib=yolo / list_name(TRAIN_SPLIT, calib_fraction, "p"),
        calib_images=calib_images,
        val_annotations=val_ann,
        val_images=val_images,
        gate=GateConfig(enabled=False),
    )
    report = run_export(cfg)
    for fmt, entry in report["formats"].items():
        exported.metadata[fmt] = entry.get("status")
    for fmt, acc in report.get("accuracy", {}).get("formats", {}).items():
        metrics.log_metric(f"{fmt}_map50_95", acc["mAP50-95"])
    metrics.log_metric("wall_time_s", round(time.perf_counter() - start, 3))


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def gate_op(exported: Input[Model], metrics: Output[Metrics], max_drop: str = "fp16=1.0,int8=2.0") -> bool:
    """Fail the run when an exported format lost more mAP50-95 points than ``max_drop`` allows.

    ``max_drop`` takes precisions or format names: ``fp16=1.0,int8=2.0,onnx=0.5``. Nothing
    after this step (benchmark, publish, deploy) runs when it fails.
    """
    from pathlib import Path

    from detpipe.export.gate import GateConfig, enforce, gate_from_report, parse_gate
    from detpipe.io import read_json

    report = read_json(Path(exported.path) / "export_report.json")
    decisions = gate_from_report(report, GateConfig(max_drop=parse_gate(max_drop)))
    for d in decisions:
        metrics.log_metric(f"{d.format}_drop_points", round(d.drop_points, 4))
    enforce(decisions)
    return True
