"""The publish step: the run's outputs as a release in MinIO (or the local store)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

from detpipe.components.images import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def publish_op(
    model: Input[Model],
    evaluation: Input[Artifact],
    exported: Input[Model],
    bench: Input[Artifact],
    subsets: Input[Dataset],
    card: Output[Markdown],
    store: str,
    name: str,
    version: str,
    fraction: float = 100.0,
    strategy: str = "p",
    force: bool = False,
    arch: str = "",
    coco_root: str = "",
    signing_key_dir: str = "",
    max_drop: str = "fp16=1.0,int8=2.0",
    min_map: float = 0.01,
    allow_missing: bool = False,
) -> str:
    """Upload ``models/<name>/<version>/...`` with a manifest (hashes, metrics, lineage) written last.

    An empty ``name`` is derived from the model and the data actually used
    (:func:`detpipe.publish.release_name`: ``yolov8n-synth``, ``yolov8n-coco-5p`` ...).

    ``signing_key_dir`` holds ``release.key`` (``detpipe release keygen``): on the cluster the
    Secret the pipeline's ``signing_key`` names, mounted as files; the release is signed
    (``manifest.sig``). Empty: published unsigned.

    The release holds ``MODEL_CARD.md`` (hashed and signed with the rest; ``detpipe serve``
    answers it at ``GET /v1/models/{name}/card``): the data and subset, the training
    configuration, metrics per exported format, the gate's decisions (judged with
    ``max_drop``/``min_map``/``allow_missing``, the gate step's settings), benchmark p50 per
    device and lineage hashes. ``card`` is that card, what the run shows.

    Returns the release URI. Store credentials come from the environment (on the cluster:
    the ``detpipe-minio`` Secret), never from parameters.
    """
    from pathlib import Path

    from detpipe.data.layout import TRAIN_SPLIT
    from detpipe.export.gate import GateConfig, parse_gate
    from detpipe.publish import PublishConfig, publish_run, release_name
    from detpipe.signing.keys import PRIVATE_KEY
    from detpipe.subsets.config import list_name

    cfg = PublishConfig(
        store=store,
        name=name or release_name(arch, coco_root, fraction, strategy),
        version=version,
        train_dir=Path(model.path),
        evaluation_dir=Path(evaluation.path),
        export_dir=Path(exported.path),
        bench_json=Path(bench.path) / "bench.json",
        subset_list=Path(subsets.path) / list_name(TRAIN_SPLIT, fraction, strategy),
        force=force,
        signing_key=Path(signing_key_dir) / PRIVATE_KEY if signing_key_dir else None,
        gate=GateConfig(max_drop=parse_gate(max_drop), min_map=min_map, allow_missing=allow_missing),
        data_source=coco_root or "synthetic (detpipe data synth)",
        card_out=Path(card.path),
    )
    uri, _ = publish_run(cfg)
    return uri
