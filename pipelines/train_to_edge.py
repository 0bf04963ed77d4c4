"""train_to_edge: one model from a COCO dataset to a gated, benchmarked release.

    data -> subsets -> train -> evaluate, training-log analysis
                          \\-> export -> gate -> bench -> publish -> (deploy canary, edge publish or rollout)

The pipeline returns the release URI, so the serving and OTA steps append after ``publish``
without reshaping it (they take the URI as their input).
"""

from collections.abc import Callable
from typing import Any

from kfp import dsl, kubernetes

from detpipe.components.bench import bench_op
from detpipe.components.data import data_op
from detpipe.components.deploy import deploy_op
from detpipe.components.edge import edge_publish_op
from detpipe.components.export import export_op, gate_op
from detpipe.components.logs import logs_op
from detpipe.components.publish import publish_op
from detpipe.components.subsets import subsets_op
from detpipe.pipelines.settings import PipelineSettings
from detpipe.pipelines.tasks import configure, train_and_evaluate

ENGINE_FORMATS = ["onnx", "onnx-int8", "engine-fp16", "engine-int8"]
SIGNING_SECRET = "detpipe-release-key"
"""The k8s Secret with ``release.key``/``release.pub`` a cluster run signs releases with by default."""


def build_train_to_edge(settings: PipelineSettings) -> Callable[..., Any]:
    """The ``train_to_edge`` pipeline function for ``settings``."""

    @dsl.pipeline(
        name="train-to-edge",
        description="COCO-format data -> YOLO training -> COCO evaluation -> ONNX/INT8/TensorRT export "
        "-> accuracy gate -> latency benchmark -> release in the artifact store.",
    )
    def train_to_edge(
        store: str = "s3://detpipe",
        release_name: str = "",
        release_version: str = "0.1.0",
        coco_root: str = "",
        synth_images: int = 240,
        synth_imgsz: int = 320,
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
        nnodes: int = 1,
        launcher: str = "pytorchjob",
        job_timeout_s: int = 72 * 3600,
        queue_name: str = "",  # Kueue LocalQueue of the multi-node job: created suspended (empty: none)
        queue_timeout_s: int = 24 * 3600,  # how long it may wait for admission (0: no limit)
        formats: list = ENGINE_FORMATS,
        max_drop: str = "fp16=1.0,int8=2.0",
        min_map: float = 0.01,
        allow_missing: bool = False,
        calib_images: int = 300,
        export_batch: int = 1,
        bench_iters: int = 200,
        deploy: bool = False,
        deploy_strategy: str = "rollout",
        edge_device_class: str = "",
        edge_rollout_pct: int = 100,  # the share of the class's devices (without edge_rollout_steps)
        # "5,25,100": start a progressive rollout instead (wins over edge_rollout_pct): published at
        # the first step, the controller's first cycle records it with these gates, and the
        # CronJob `detpipe edge rollout --once` (k8s/edge/controller) carries it on. "": off.
        edge_rollout_steps: str = "",
        edge_rollout_max_failure_pct: float = 5.0,  # abort (signed rollback) above this failed share
        edge_rollout_min_reports: int = 1,  # valid device reports a step needs before it is judged
        edge_rollout_bake_s: int = 1800,  # least time per step
        edge_keys_dir: str = "",
        signing_key: str = SIGNING_SECRET if settings.target == "cluster" else "",
    ) -> str:
        data = configure(
            data_op(coco_root=coco_root, synth_images=synth_images, synth_imgsz=synth_imgsz, seed=seed),
            settings,
            retry=True,
            name="data",
        )
        dataset = data.outputs["dataset"]
        subsets = configure(subsets_op(dataset=dataset, seed=seed), settings, name="subsets")
        train, evaluation = train_and_evaluate(
            settings,
            dataset,
            subsets.outputs["subsets"],
            arch=arch,
            fraction=fraction,
            strategy=strategy,
            epochs=epochs,
            imgsz=imgsz,
            batch=batch,
            seed=seed,
            device=device,
            workers=workers,
            nproc_per_node=nproc_per_node,
            train_overrides=train_overrides,
            nnodes=nnodes,
            launcher=launcher,
            job_store=store,
            job_timeout_s=job_timeout_s,
            queue_name=queue_name,
            queue_timeout_s=queue_timeout_s,
        )
        model = train.outputs["model"]
        configure(logs_op(model=model), settings, name="training logs")  # detpipe logs analyze
        export = configure(
            export_op(
                model=model,
                dataset=dataset,
                subsets=subsets.outputs["subsets"],
                formats=formats,
                imgsz=imgsz,
                calib_images=calib_images,
                max_batch=export_batch,
                device=device,
                require_gpu=settings.target == "cluster" and settings.gpus > 0,
            ),
            settings,
            gpu=True,
            name="export",
        )
        exported = export.outputs["exported"]
        gate = configure(
            gate_op(exported=exported, max_drop=max_drop, min_map=min_map, allow_missing=allow_missing),
            settings,
            name="accuracy gate",
        )
        bench = configure(
            bench_op(exported=exported, iters=bench_iters, device=device), settings, gpu=True, name="bench"
        )
        bench.after(gate)
        publish = configure(
            publish_op(
                model=model,
                evaluation=evaluation.outputs["evaluation"],
                exported=exported,
                bench=bench.outputs["bench"],
                subsets=subsets.outputs["subsets"],
                store=store,
                name=release_name,
                version=release_version,
                arch=arch,
                coco_root=coco_root,
                fraction=fraction,
                strategy=strategy,
                signing_key_dir=settings.release_key_mount if settings.target == "cluster" else signing_key,
                max_drop=max_drop,  # the model card records the gate's decisions with its settings
                min_map=min_map,
                allow_missing=allow_missing,
            ),
            settings,
            store=True,
            retry=True,
            name="publish",
        )
        publish.after(gate)
        if settings.target == "cluster":  # the Secret's name is a run parameter; its keys never are
            kubernetes.use_secret_as_volume(
                publish, secret_name=signing_key, mount_path=settings.release_key_mount
            )
        # a canary of the new release; without a cluster (kfp.local) rendered only, as an artifact
        cluster = settings.target == "cluster"
        canary = {"release": publish.outputs["Output"], "strategy": deploy_strategy, "dry_run": not cluster}
        if cluster:
            with dsl.If(deploy == True, "deploy"):  # noqa: E712 (a condition on a pipeline parameter)
                configure(deploy_op(**canary), settings, cache=False, retry=True, name="deploy canary")
        else:  # kfp.local 2.16 cannot evaluate a condition on a parameter (it skips the branch always)
            configure(deploy_op(**canary, enabled=deploy), settings, cache=False, name="deploy canary")
        # OTA: the release's engine (or ONNX) signed for one device class; keys from a Secret.
        # Not a dsl.If: kfp.local cannot evaluate conditions on parameters, so the step itself is
        # a no-op for an empty edge_device_class.
        edge_publish(
            settings,
            publish.outputs["Output"],
            store,
            edge_device_class,
            edge_keys_dir,
            signing_key,
            rollout_pct=edge_rollout_pct,
            rollout_steps=edge_rollout_steps,
            rollout_max_failure_pct=edge_rollout_max_failure_pct,
            rollout_min_reports=edge_rollout_min_reports,
            rollout_bake_s=edge_rollout_bake_s,
        )
        return publish.outputs["Output"]

    return train_to_edge


def edge_publish(
    settings: PipelineSettings,
    release: Any,
    store: str,
    device_class: Any,
    keys_dir: Any,
    signing_key: Any,
    **rollout: Any,
) -> Any:
    """The edge-publish task. On the cluster the OTA keys are the ``settings.edge_keys_secret``
    Secret and the release's public key the ``settings.release_pub_config_map`` ConfigMap, both
    mounted as files (the compiled YAML names them, never a key); locally ``keys_dir`` (a
    ``detpipe edge keygen`` directory) and ``signing_key`` (a ``detpipe release keygen``
    directory) are used. ``rollout``: ``edge_publish_op``'s ``rollout_*`` parameters (the share,
    or the steps and gates of a rollout it starts)."""
    cluster = settings.target == "cluster"
    task = edge_publish_op(
        release=release,
        store=store,
        device_class=device_class,
        keys_dir=settings.edge_keys_mount if cluster else keys_dir,
        release_key_dir=settings.release_key_mount if cluster else signing_key,
        **rollout,
    )
    configure(task, settings, store=True, cache=False, retry=True, name="edge publish")  # never cached
    if cluster:
        kubernetes.use_secret_as_volume(
            task, secret_name=settings.edge_keys_secret, mount_path=settings.edge_keys_mount
        )
        # only the public half: the ConfigMap the serving pods verify with, never the signing Secret
        kubernetes.use_config_map_as_volume(
            task, config_map_name=settings.release_pub_config_map, mount_path=settings.release_key_mount
        )
    return task
