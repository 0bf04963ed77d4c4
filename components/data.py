"""The dataset step: a COCO-format dataset artifact, synthesized or taken from a path."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from detpipe.components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def data_op(
    dataset: Output[Dataset],
    metrics: Output[Metrics],
    coco_root: str = "",
    synth_images: int = 240,
    synth_classes: int = 6,
    synth_imgsz: int = 320,
    seed: int = 0,
) -> None:
    """Provide the COCO-format dataset every later step reads.

    With ``coco_root`` (a directory with ``images/{train2017,val2017}`` and
    ``annotations/instances_{train2017,val2017}.json``, e.g. a PVC mount) the artifact
    records a reference to it after validating both annotation files; without it a synthetic
    dataset is rendered into the artifact (``detpipe data synth``).
    """
    import time

    from detpipe.data.layout import link_coco_root
    from detpipe.data.synth import SynthConfig, synthesize

    start = time.perf_counter()
    if coco_root:
        summary = link_coco_root(coco_root, dataset.path)
    else:
        cfg = SynthConfig(
            out=dataset.path, images=synth_images, classes=synth_classes, imgsz=synth_imgsz, seed=seed
        )
        summary = synthesize(cfg)
    for split, info in summary["splits"].items():
        metrics.log_metric(f"{split}_images", info["images"])
        metrics.log_metric(f"{split}_instances", info["instances"])
    dataset.metadata["source"] = coco_root or "synthetic"
    metrics.log_metric("wall_time_s", round(time.perf_counter() - start, 3))
