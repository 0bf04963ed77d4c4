"""The evaluation step: pycocotools-exact COCO metrics of the trained model on val2017."""

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from detpipe.components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def evaluate_op(
    model: Input[Model],
    dataset: Input[Dataset],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    confusion_matrix: Output[ClassificationMetrics],
    summary: Output[Markdown],
    imgsz: int = 0,
    device: str = "auto",
) -> None:
    """Predict on val2017 with ``weights/best.pt`` and evaluate (12 COCO stats, per class, plots).

    ``imgsz`` 0: the size the weights were trained at (as export does; the pipeline passes
    the training size). ``device`` is resolved by :func:`detpipe.device.resolve_device`
    (``auto``: GPU 0 when the node has one, else CPU); the device used is recorded in
    ``metrics.json`` (inputs.predict).

    The artifact holds ``metrics.json``, ``detections.json``, ``summary.txt``, ``summary.md``
    and the PNGs. What the run shows: ``confusion_matrix``, the detection confusion matrix
    (IoU-matched detections vs ground truth per class, plus background) with the class names;
    ``summary``, overall and per-class AP as markdown.
    """
    import tempfile
    import time
    from pathlib import Path

    from detpipe.data.layout import VAL_SPLIT, coco_paths, yolo_dataset
    from detpipe.evaluate.analysis import unique_labels
    from detpipe.evaluate.stage import EvaluateConfig, run_evaluation
    from detpipe.evaluate.summary import format_markdown
    from detpipe.io import write_text
    from detpipe.ultralytics_env import configure_offline

    start = time.perf_counter()
    configure_offline()
    scratch = Path(tempfile.mkdtemp(prefix="detpipe-yolo-"))
    (data_yaml,) = yolo_dataset(dataset.path, scratch / "yolo")
    gt, _ = coco_paths(dataset.path, VAL_SPLIT)
    cfg = EvaluateConfig(
        out=Path(evaluation.path),
        gt=gt,
        weights=Path(model.path) / "weights" / "best.pt",
        data=data_yaml,
        imgsz=imgsz or None,
        device=device,
        progress=False,
    )
    result = run_evaluation(cfg)
    for key in ("map50_95", "map50", "map75", "map_small", "map_medium", "map_large", "ar100"):
        metrics.log_metric(key, result[key])
    cm = result["confusion_matrix"]
    confusion_matrix.log_confusion_matrix(unique_labels(cm["labels"]), cm["matrix"])
    confusion_matrix.metadata.update(iou_threshold=cm["iou_threshold"], score_threshold=cm["score_threshold"])
    write_text(summary.path, format_markdown(result))
    metrics.log_metric("wall_time_s", round(time.perf_counter() - start, 3))
