"""Export a YOLO detection model to ONNX (static or dynamic batch), simplified with onnxslim.

detpipe exports with ``torch.onnx.export`` on the model prepared the way ultralytics'
exporter prepares it (:func:`detpipe.export.model.prepare_for_export`), instead of calling
``YOLO.export``: ultralytics' exporter runs ``check_requirements`` and would try to
pip-install a newer onnxslim/onnx at run time, which a pinned, offline pipeline must not do.

    cfg = OnnxExportConfig(imgsz=(640, 640), opset=17, dynamic_batch=False)
    info = export_onnx(load_detection_model("best.pt"), "out/model.onnx", cfg)
    diff = compare_with_torch(loaded, "out/model.onnx", images)   # max |onnx - torch|

The file carries detpipe metadata (class names, stride, imgsz, output layout) in
``metadata_props``; :func:`detpipe.runtime.predictors.read_onnx_metadata` reads it back.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detpipe import __version__
from detpipe.errors import InvalidInput
from detpipe.export.model import LoadedModel, prepare_for_export
from detpipe.io import write_bytes

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "output0"


@dataclass(frozen=True)
class OnnxExportConfig:
    """How to export.

    Attributes:
        imgsz: input (height, width); multiples of the model stride.
        batch: the static batch size (the example batch when ``dynamic_batch``).
        dynamic_batch: make the batch axis dynamic (named ``batch``).
        opset: ONNX opset (11..20).
        simplify: run onnxslim on the exported graph.
    """

    imgsz: tuple[int, int] = (640, 640)
    batch: int = 1
    dynamic_batch: bool = False
    opset: int = DEFAULT_OPSET
    simplify: bool = True


@dataclass(frozen=True)
class OnnxExportInfo:
    """What :func:`export_onnx` wrote."""

    path: Path
    input_shape: tuple[int | str, ...]
    output_shape: tuple[int | str, ...]
    opset: int
    simplified: bool
    num_nodes: int


def export_onnx(loaded: LoadedModel, out: str | Path, cfg: OnnxExportConfig) -> OnnxExportInfo:
    """Export ``loaded`` to ``out`` (written atomically).

    Args:
        loaded: the model from :func:`detpipe.export.model.load_detection_model`.
        out: the ``.onnx`` path to write.
        cfg: export settings.

    Returns:
        Shapes, opset and node count of the written graph.

    Raises:
        InvalidInput: ``imgsz`` is not a multiple of the stride or the opset is out of range.
    """
    import onnx
    import torch

    h, w = cfg.imgsz
    if h % loaded.stride or w % loaded.stride:
        raise InvalidInput(f"--imgsz {h}x{w}: must be a multiple of the model stride {loaded.stride}")
    if not 11 <= cfg.opset <= 20:
        raise InvalidInput(f"--opset {cfg.opset}: supported range is 11..20")
    model = prepare_for_export(loaded.model, cfg.imgsz, dynamic=cfg.dynamic_batch)
    example = torch.zeros(cfg.batch, 3, h, w)
    with torch.inference_mode():
        model(example)  # dry run: builds anchors/strides for this input size
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if cfg.dynamic_batch else None
    buf = io.BytesIO()
    log.info(
        "torch.onnx.export: opset %d, input %s, dynamic batch %s",
        cfg.opset,
        tuple(example.shape),
        cfg.dynamic_batch,
    )
    with warnings.catch_warnings():  # the TorchScript exporter is deliberate (as ultralytics uses it)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            model,
            example,
            buf,
            opset_version=cfg.opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic_axes,
            dynamo=False,
        )
    proto = onnx.load_from_string(buf.getvalue())
    simplified = False
    if cfg.simplify:
        import onnxslim

        try:
            proto = onnxslim.slim(proto)
            simplified = True
        except Exception as e:  # onnxslim failures are not fatal: the unsimplified graph is valid
            log.warning("onnxslim failed (%s); keeping the unsimplified graph", e)
    onnx.checker.check_model(proto)
    _set_metadata(proto, loaded, cfg)
    path = write_bytes(out, proto.SerializeToString())
    return OnnxExportInfo(
        path=path,
        input_shape=_shape(proto.graph.input[0]),
        output_shape=_shape(proto.graph.output[0]),
        opset=cfg.opset,
        simplified=simplified,
        num_nodes=len(proto.graph.node),
    )


def _shape(value_info: Any) -> tuple[int | str, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims)


def _set_metadata(proto: Any, loaded: LoadedModel, cfg: OnnxExportConfig) -> None:
    meta = {
        "producer": f"detpipe {__version__}",
        "source": loaded.source.name,
        "task": "detect",
        "names": {str(k): v for k, v in loaded.names.items()},
        "stride": loaded.stride,
        "imgsz": list(cfg.imgsz),
        "batch": "dynamic" if cfg.dynamic_batch else cfg.batch,
        "output_layout": "B,4+nc,anchors;xywh_pixels;class_scores_sigmoid",
    }
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)


@dataclass(frozen=True)
class NumericCheck:
    """Max absolute difference between ONNX and PyTorch raw outputs on the same real images.

    ``boxes`` is in input pixels (box centre and size), ``scores`` in probability units.
    """

    images: int
    max_abs_diff: float
    max_abs_diff_boxes: float
    max_abs_diff_scores: float
    mean_abs_diff: float

    def as_dict(self) -> dict[str, float | int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def compare_with_torch(
    loaded: LoadedModel, onnx_path: str | Path, images: Sequence[np.ndarray], threads: int | None = None
) -> NumericCheck:
    """Run PyTorch and onnxruntime (CPU) on the same letterboxed images and diff the raw outputs.

    Args:
        loaded: the PyTorch model the ONNX file was exported from.
        onnx_path: the exported file (any batch mode).
        images: BGR images (real ones: random noise hides score differences near 0).
        threads: onnxruntime intra-op threads.

    Returns:
        The differences over all images.
    """
    from detpipe.runtime.predictors import OnnxPredictor, TorchPredictor

    if not images:
        raise InvalidInput("numeric check needs at least one image")
    onnx_pred = OnnxPredictor(onnx_path, threads=threads)
    torch_pred = TorchPredictor(loaded, imgsz=onnx_pred.imgsz)
    from detpipe.runtime.image import preprocess

    worst_box = worst_score = 0.0
    total = count = 0.0
    step = onnx_pred.batch or 8
    for start in range(0, len(images), step):
        chunk = list(images[start : start + step])
        x, _ = preprocess(chunk, onnx_pred.imgsz, onnx_pred.batch)
        diff = np.abs(onnx_pred.infer(x) - torch_pred.infer(x))[: len(chunk)]
        worst_box = max(worst_box, float(diff[:, :4].max()))
        worst_score = max(worst_score, float(diff[:, 4:].max()))
        total += float(diff.sum())
        count += diff.size
    return NumericCheck(
        images=len(images),
        max_abs_diff=max(worst_box, worst_score),
        max_abs_diff_boxes=worst_box,
        max_abs_diff_scores=worst_score,
        mean_abs_diff=total / count,
    )
