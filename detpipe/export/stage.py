"""The export stage: PyTorch weights -> ONNX, ONNX INT8, TensorRT FP16/INT8, evaluated and gated.

    cfg = ExportConfig(weights=Path("best.pt"), out=Path("runs/export"),
                       formats=("onnx", "onnx-int8", "engine-fp16"),
                       calib=Path("yolo/train2017_5_p.txt"),
                       val_annotations=Path("data/annotations/instances_val2017.json"),
                       val_images=Path("data/images/val2017"))
    report = run_export(cfg)      # raises GateFailed after writing the report when a format fails

    # or: detpipe export --weights best.pt --formats onnx,onnx-int8,engine-fp16 --out runs/export \
    #         --calib yolo/train2017_5_p.txt --val-annotations ... --val-images ...
    #     (--data yolo/dataset.yaml --val-annotations ... : val split and calibration from the YAML)

Output directory (replaced atomically as a whole)::

    model.onnx                      FP32, always written (the base of every other format)
    model.int8.onnx                 onnxruntime static INT8 (QDQ)
    model.fp16.engine(.json)        TensorRT engines with their sidecars
    model.int8.engine(.json), model.int8.calib.cache, timing.cache
    export_report.json / .md        per format: status, file, sha256, numeric check, mAP, delta, gate
    accuracy.png                    mAP per format against PyTorch

Where the export runs is resolved once (:func:`detpipe.device.resolve_device`; ``auto``: GPU 0
when there is one). On a GPU (or with ``require_gpu``, the cluster's GPU step) a requested
engine format that cannot be built fails the export with the reason
(:class:`~detpipe.errors.Unavailable`, exit 3). Only a CPU-only run skips engine formats, as
``"status": "skipped"`` with the reason; the accuracy gate then fails them as missing unless
``allow_missing`` (:mod:`detpipe.export.gate`).
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detpipe import __version__
from detpipe.device import gpu_index, is_gpu, parse_device, resolve_device, torch_device
from detpipe.errors import DetpipeError, InvalidInput, Unavailable
from detpipe.export.gate import GateConfig, enforce, evaluate_gate, missing_formats
from detpipe.io import atomic_dir, sha256_file, write_json, write_text

log = logging.getLogger(__name__)

FORMATS = ("onnx", "onnx-int8", "engine-fp16", "engine-int8")
FILE_OF_FORMAT = {
    "onnx": "model.onnx",
    "onnx-int8": "model.int8.onnx",
    "engine-fp16": "model.fp16.engine",
    "engine-int8": "model.int8.engine",
}


@dataclass(frozen=True)
class ExportConfig:
    """Everything the export stage needs.

    Attributes:
        weights: the trained ``.pt`` (or a model YAML, for latency work only).
        out: output directory (replaced atomically).
        formats: any of :data:`FORMATS`; ``model.onnx`` is written in every case.
        imgsz: input (h, w); None uses the checkpoint's training size (else 640).
        batch: static batch size (the maximum batch with ``dynamic_batch``).
        dynamic_batch: dynamic batch axis in the ONNX models (engines get a 1..batch profile).
        opset: ONNX opset.
        simplify: onnxslim the ONNX graph.
        data: an ultralytics dataset YAML: its val split is evaluated (annotations from
            ``val_annotations`` or the YAML's ``val_annotations`` key) and its train list is the
            default calibration source.
        calib: calibration source for INT8 (subset list, dataset YAML or image directory).
        calib_images: calibration images to draw from it.
        calib_method: onnxruntime calibration method: minmax, entropy or percentile.
        calib_seed: seed of the calibration sample.
        val_annotations: COCO val ground truth; with ``val_images`` (or ``data``) enables
            evaluation and the gate.
        val_images: directory of the val images.
        numeric_check_images: real images for the ONNX-vs-PyTorch output check.
        gate: accuracy gate limits.
        workspace_gib: TensorRT workspace limit.
        dla_core: build engines for this DLA core (Jetson Orin), with GPU fallback.
        timing_cache: persistent TensorRT timing cache (default: ``out/timing.cache``).
        calib_cache: TensorRT INT8 calibration cache to reuse (default: a fresh one in ``out``).
        device: where to run (:data:`detpipe.device.DEVICE_FORMS`): the PyTorch reference,
            TensorRT builds and engine evaluation; ``auto`` is GPU 0 when present, else CPU.
        require_gpu: a GPU step (the cluster's export): no GPU is an error, never a skip.
        threads: onnxruntime/torch CPU threads for evaluation (None: library default).
    """

    weights: Path
    out: Path
    formats: tuple[str, ...] = ("onnx", "onnx-int8")
    imgsz: tuple[int, int] | None = None
    batch: int = 1
    dynamic_batch: bool = False
    opset: int = 17
    simplify: bool = True
    data: Path | None = None
    calib: Path | None = None
    calib_images: int = 300
    calib_method: str = "minmax"
    calib_seed: int = 0
    val_annotations: Path | None = None
    val_images: Path | None = None
    numeric_check_images: int = 8
    gate: GateConfig = field(default_factory=GateConfig)
    workspace_gib: float = 4.0
    dla_core: int | None = None
    timing_cache: Path | None = None
    calib_cache: Path | None = None
    device: str = "auto"
    require_gpu: bool = False
    threads: int | None = None

    def __post_init__(self) -> None:
        parse_device(self.device)  # malformed: InvalidInput before anything is loaded
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise InvalidInput(
                f"--formats: unknown {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}"
            )
        if self.val_images is not None and self.val_annotations is None:
            raise InvalidInput("--val-images needs --val-annotations")
        if self.val_annotations is not None and self.val_images is None and self.data is None:
            raise InvalidInput("--val-annotations needs --val-images (or --data with the val images)")
        needs_calib = [f for f in self.formats if f.endswith("int8")]
        if (
            needs_calib
            and self.calib_source is None
            and not (self.calib_cache and self.calib_cache.is_file())
        ):
            raise InvalidInput(
                f"{', '.join(needs_calib)} need calibration images: pass --calib "
                "(a train2017_<pct>_p.txt subset list, a dataset YAML or an image directory) or --data"
            )

    @property
    def calib_source(self) -> Path | None:
        """Where calibration images come from: ``calib``, else the dataset YAML's train list."""
        return self.calib if self.calib is not None else self.data


def _resolve_imgsz(cfg: ExportConfig, train_imgsz: int | None) -> tuple[int, int]:
    if cfg.imgsz is not None:
        return cfg.imgsz
    size = train_imgsz or 640
    return size, size


def run_export(cfg: ExportConfig) -> dict[str, Any]:
    """Run the export stage; see the module docstring for what it writes.

    Returns:
        The export report (also written as ``export_report.json``).

    Raises:
        InvalidInput: bad weights, calibration or val inputs.
        Unavailable: on a GPU, a requested engine format cannot be built; or no GPU where
            ``require_gpu`` (or ``--device cuda``) asks for one.
        GateFailed: a format lost more accuracy than the gate allows (the report is written first).
    """
    from detpipe.export.calib import calibration_images
    from detpipe.export.model import load_detection_model

    device = resolve_device(cfg.device)
    if cfg.require_gpu and not is_gpu(device):
        raise Unavailable(
            f"export: this is a GPU step but there is no CUDA GPU here (--device {cfg.device} -> {device}); "
            "check the node's nvidia.com/gpu allocation"
        )
    loaded = load_detection_model(cfg.weights)
    imgsz = _resolve_imgsz(cfg, loaded.train_imgsz)
    source = cfg.calib_source
    calib_paths = calibration_images(source, cfg.calib_images, cfg.calib_seed) if source else []
    val = _load_val(cfg)
    report: dict[str, Any] = {
        "detpipe_version": __version__,
        "weights": str(cfg.weights),
        "weights_sha256": sha256_file(cfg.weights) if Path(cfg.weights).is_file() else None,
        "imgsz": list(imgsz),
        "batch": cfg.batch,
        "dynamic_batch": cfg.dynamic_batch,
        "classes": loaded.names,
        "host": {"machine": platform.machine(), "python": platform.python_version()},
        "device": {"requested": cfg.device, "resolved": device},
        "formats": {},
    }
    with atomic_dir(cfg.out) as tmp:
        report["formats"] = _export_formats(cfg, device, loaded, imgsz, calib_paths, val, tmp)
        decisions = []
        if val is not None:
            report["accuracy"], decisions = _evaluate(cfg, device, loaded, imgsz, val, tmp, report["formats"])
        else:
            log.warning(
                "no val set (--val-annotations/--val-images): accuracy not evaluated, gate not applied"
            )
            report["accuracy"] = {"evaluated": False, "reason": "no val set given"}
        report["gate"] = {
            "enabled": cfg.gate.enabled and val is not None,
            "metric": cfg.gate.metric,
            "min_map": cfg.gate.min_map,
            "allow_missing": cfg.gate.allow_missing,
            "passed": all(d.passed for d in decisions) if val is not None else None,
            "limits_points": {f: cfg.gate.limit_for(f) for f in report["formats"]},
            "decisions": [d.as_dict() for d in decisions],
        }
        from detpipe.export.report import accuracy_plot, report_markdown

        write_json(tmp / "export_report.json", report)
        write_text(tmp / "export_report.md", report_markdown(report))
        if val is not None:
            accuracy_plot(report, tmp / "accuracy.png")
    enforce(decisions, cfg.gate)
    return report


def _load_val(cfg: ExportConfig) -> Any:
    from detpipe.export.evaluation import ValImages

    if cfg.val_images is not None:
        return ValImages.from_dir(cfg.val_annotations, cfg.val_images)
    if cfg.data is not None:
        return ValImages.from_dataset_yaml(cfg.data, cfg.val_annotations)
    return None


def _real_images(cfg: ExportConfig, val: Any, calib_paths: Sequence[Path]) -> list[Any]:
    from detpipe.export.calib import read_image

    n = cfg.numeric_check_images
    paths = val.images[:n] if val is not None else list(calib_paths[:n])
    return [read_image(p) for p in paths]


def _export_formats(
    cfg: ExportConfig,
    device: str,
    loaded: Any,
    imgsz: tuple[int, int],
    calib_paths: list[Path],
    val: Any,
    tmp: Path,
) -> dict[str, Any]:
    from detpipe.export.onnx_export import OnnxExportConfig, compare_with_torch, export_onnx

    formats: dict[str, Any] = {}
    start = time.perf_counter()
    info = export_onnx(
        loaded,
        tmp / FILE_OF_FORMAT["onnx"],
        OnnxExportConfig(imgsz, cfg.batch, cfg.dynamic_batch, cfg.opset, cfg.simplify),
    )
    entry: dict[str, Any] = {
        "status": "ok",
        "requested": "onnx" in cfg.formats,
        "precision": "fp32",
        "opset": info.opset,
        "simplified": info.simplified,
        "input_shape": list(info.input_shape),
        "output_shape": list(info.output_shape),
        "nodes": info.num_nodes,
    }
    images = _real_images(cfg, val, calib_paths)
    if images:
        check = compare_with_torch(loaded, info.path, images, cfg.threads)
        entry["numeric_check"] = check.as_dict()
        log.info("ONNX vs PyTorch on %d real images: max |diff| %.2e", check.images, check.max_abs_diff)
    else:
        entry["numeric_check"] = None
        log.warning("no real images (val or calibration) for the ONNX numeric check; skipped")
    formats["onnx"] = _finish(entry, tmp / FILE_OF_FORMAT["onnx"], start)

    if "onnx-int8" in cfg.formats:
        from detpipe.export.quantize import QuantizeConfig, quantize_onnx

        start = time.perf_counter()
        q = quantize_onnx(
            info.path,
            tmp / FILE_OF_FORMAT["onnx-int8"],
            calib_paths,
            QuantizeConfig(method=cfg.calib_method, calib_batch=min(cfg.batch, 8)),
        )
        formats["onnx-int8"] = _finish(
            {
                "status": "ok",
                "requested": True,
                "precision": "int8",
                "quantization": "onnxruntime static, QDQ, per-channel int8 weights, uint8 activations",
                "calibration": {
                    "source": str(cfg.calib_source),
                    "images": q.calibration_images,
                    "requested": cfg.calib_images,
                    "method": q.method,
                },
                "fp32_nodes_kept": q.excluded_nodes,
            },
            q.path,
            start,
        )

    engines = [f for f in cfg.formats if f.startswith("engine-")]
    if engines:
        formats.update(_build_engines(cfg, device, engines, info.path, calib_paths, loaded, imgsz, tmp))
    return formats


def _finish(entry: dict[str, Any], path: Path, start: float) -> dict[str, Any]:
    entry.update(
        file=path.name,
        sha256=sha256_file(path),
        size_bytes=path.stat().st_size,
        seconds=round(time.perf_counter() - start, 2),
    )
    return entry


def _build_engines(
    cfg: ExportConfig,
    device: str,
    engines: list[str],
    onnx_path: Path,
    calib_paths: list[Path],
    loaded: Any,
    imgsz: tuple[int, int],
    tmp: Path,
) -> dict[str, Any]:
    from detpipe.export.tensorrt_build import EngineBuildConfig, build_engine, engine_unavailable_reason

    out: dict[str, Any] = {}
    gpu = is_gpu(device)
    index = gpu_index(device) if gpu else 0
    reason = (
        engine_unavailable_reason(index)
        if gpu
        else f"CPU-only run (device {device}): engines need a CUDA GPU"
    )
    for fmt in engines:
        if reason:
            out[fmt] = _cannot_build(fmt, reason, gpu)
            continue
        precision = fmt.removeprefix("engine-")
        start = time.perf_counter()
        build = EngineBuildConfig(
            precision=precision,
            workspace_gib=cfg.workspace_gib,
            dla_core=cfg.dla_core,
            timing_cache=cfg.timing_cache or tmp / "timing.cache",
            calib_cache=cfg.calib_cache or tmp / "model.int8.calib.cache",
            max_batch=cfg.batch,
            device_index=index,
        )
        extra = {"names": {str(k): v for k, v in loaded.names.items()}, "imgsz": list(imgsz)}
        path = tmp / FILE_OF_FORMAT[fmt]
        try:
            sidecar = build_engine(onnx_path, path, build, calib_paths, extra_sidecar=extra)
        except Unavailable as e:  # e.g. --dla-core on a GPU without DLA, no INT8 calibration API
            out[fmt] = _cannot_build(fmt, str(e), gpu)
            continue
        out[fmt] = _finish(
            {
                "status": "ok",
                "requested": True,
                "precision": precision,
                "sidecar": path.name + ".json",
                "device_class": sidecar["device_class"],
                "tensorrt_version": sidecar["tensorrt_version"],
                "gpu": sidecar["gpu"],
                "build_flags": sidecar["build_flags"],
            },
            path,
            start,
        )
    return out


def _cannot_build(fmt: str, reason: str, gpu: bool) -> dict[str, Any]:
    """A requested engine that cannot be built: an error on a GPU, a recorded skip on CPU only."""
    if gpu:
        raise Unavailable(f"{fmt}: requested on a GPU step but cannot be built: {reason}")
    log.warning("%s SKIPPED (CPU-only run): %s", fmt, reason)
    return {"status": "skipped", "requested": True, "reason": reason}


def _predictor_for(fmt: str, path: Path, cfg: ExportConfig, device: str) -> Any:
    from detpipe.export.evaluation import EVAL_POSTPROCESS

    if fmt.startswith("engine-"):
        from detpipe.runtime.tensorrt import TensorRTPredictor

        return TensorRTPredictor(path, device_index=gpu_index(device), postprocess_cfg=EVAL_POSTPROCESS)
    from detpipe.runtime.predictors import OnnxPredictor

    return OnnxPredictor(path, threads=cfg.threads, postprocess_cfg=EVAL_POSTPROCESS)


def _evaluate(
    cfg: ExportConfig,
    device: str,
    loaded: Any,
    imgsz: tuple[int, int],
    val: Any,
    tmp: Path,
    formats: dict[str, Any],
) -> tuple[dict[str, Any], list[Any]]:
    from detpipe.export.evaluation import evaluate_predictor, pytorch_predictor

    log.info("evaluating the PyTorch model on %d val images (%s)", val.gt.num_images, torch_device(device))
    end2end = bool(getattr(loaded.model, "end2end", False))
    baseline = evaluate_predictor(
        pytorch_predictor(Path(cfg.weights), imgsz, torch_device(device), end2end), val
    )
    results: dict[str, dict[str, float]] = {}
    for fmt, entry in formats.items():
        if entry["status"] != "ok":
            continue
        try:
            predictor = _predictor_for(fmt, tmp / entry["file"], cfg, device)
        except DetpipeError as e:
            raise DetpipeError(f"{fmt}: cannot load the exported file for evaluation: {e}") from None
        log.info("evaluating %s", fmt)
        results[fmt] = evaluate_predictor(predictor, val)
    decisions = evaluate_gate(baseline, results, cfg.gate, missing_formats(formats, results))
    accuracy = {
        "evaluated": True,
        "evaluator": "detpipe.evaluate (pycocotools-exact COCO bbox), conf 0.001, NMS IoU 0.7, 100 boxes",
        "pytorch_device": torch_device(device),
        "val_annotations": str(val.gt.path),
        "val_images": val.gt.num_images,
        "pytorch": baseline,
        "formats": {
            fmt: {
                **m,
                "delta_mAP50-95_points": round(100 * (m["mAP50-95"] - baseline["mAP50-95"]), 3),
                "delta_mAP50_points": round(100 * (m["mAP50"] - baseline["mAP50"]), 3),
            }
            for fmt, m in results.items()
        },
    }
    return accuracy, decisions
