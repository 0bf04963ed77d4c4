"""ONNX INT8 by onnxruntime static quantization (QDQ), the INT8 path that runs everywhere.

Steps: ``quant_pre_process`` (symbolic shape inference + graph cleanup), a calibration
pass over images from the calibration subset (min-max, entropy or percentile ranges),
then ``quantize_static`` in QDQ format with per-channel INT8 weights. The detection head's
decode (DFL softmax, anchor arithmetic, final concat) and the last convolution of each
box/class branch stay FP32, so box coordinates and scores keep full precision::

    cfg = QuantizeConfig(method="minmax")
    info = quantize_onnx("out/model.onnx", "out/model.int8.onnx", calib_paths, cfg)

The output keeps the FP32 model's detpipe metadata (names, imgsz, ...).
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from detpipe.errors import InvalidInput
from detpipe.export.calib import calibration_batches
from detpipe.io import write_bytes

log = logging.getLogger(__name__)

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
QUANT_TYPES = ("uint8", "int8")

# The last conv of a box (cv2) / class (cv3) branch: '/model.22/cv3.1/cv3.1.2/Conv'
_BRANCH_OUTPUT_CONV = re.compile(r"/(?:one2one_)?cv[23]\.\d+/(?:one2one_)?cv[23]\.\d+\.2/Conv$")


@dataclass(frozen=True)
class QuantizeConfig:
    """onnxruntime static quantization settings.

    Attributes:
        method: activation range calibration: 'minmax', 'entropy' or 'percentile'.
        per_channel: per-output-channel weight scales (recommended for convolutions).
        activation_type: 'uint8' (asymmetric, the fast CPU path) or 'int8'.
        reduce_range: 7-bit weights, for CPUs without VNNI where u8s8 products may saturate.
        keep_head_fp32: leave the detection head's decode and branch outputs in FP32.
        percentile: the percentile kept by the 'percentile' method.
        calib_batch: images per calibration batch (1 for a static-batch-1 model).
    """

    method: str = "minmax"
    per_channel: bool = True
    activation_type: str = "uint8"
    reduce_range: bool = False
    keep_head_fp32: bool = True
    percentile: float = 99.999
    calib_batch: int = 1

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise InvalidInput(
                f"calibration method {self.method!r}: expected one of {', '.join(CALIBRATION_METHODS)}"
            )
        if self.activation_type not in QUANT_TYPES:
            raise InvalidInput(f"activation type {self.activation_type!r}: expected uint8 or int8")


@dataclass(frozen=True)
class QuantizeInfo:
    """What :func:`quantize_onnx` did."""

    path: Path
    method: str
    calibration_images: int
    excluded_nodes: int
    quantized_nodes: int
    seconds: float


def head_nodes_to_exclude(model: Any) -> list[str]:
    """Names of the nodes kept in FP32: the Detect head's decode and each branch's last conv.

    The Detect module is the last ``/model.N/`` scope of the graph; everything in it that is
    not inside a ``cv2``/``cv3`` branch is decode (reshape, concat, DFL, anchors, sigmoid).
    """
    scopes = [int(m.group(1)) for n in model.graph.node if (m := re.match(r"/model\.(\d+)/", n.name))]
    if not scopes:
        log.warning("no '/model.N/' node names in the graph: quantizing the detection head too")
        return []
    head = f"/model.{max(scopes)}/"
    branch = re.compile(rf"^{re.escape(head)}(?:one2one_)?cv[23]\.")
    out = []
    for node in model.graph.node:
        if not node.name.startswith(head):
            continue
        if not branch.match(node.name) or _BRANCH_OUTPUT_CONV.search(node.name):
            out.append(node.name)
    return out


class _Reader(CalibrationDataReader):
    """A ``CalibrationDataReader`` over calibration images, read in strides with a progress bar.

    onnxruntime calls ``set_range`` per stride (``CalibStridedMinMax``) and merges ranges or
    histograms after each, so only one stride of activations is held in memory at a time.
    """

    def __init__(self, input_name: str, paths: Sequence[Path], imgsz: tuple[int, int], batch: int) -> None:
        from tqdm import tqdm

        self.input_name = input_name
        self.paths = list(paths)
        self.imgsz = imgsz
        self.batch = batch
        self.batches: Iterator[np.ndarray] = iter(())
        self.bar = tqdm(total=len(self), desc="calibrating (onnxruntime)", unit="batch", leave=False)

    def __len__(self) -> int:
        return max(len(self.paths) // self.batch, 1)

    def set_range(self, start_index: int, end_index: int) -> None:
        paths = self.paths[start_index * self.batch : end_index * self.batch]
        self.batches = calibration_batches(paths, self.imgsz, self.batch)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        if batch is None:
            return None
        self.bar.update(1)
        return {self.input_name: batch}

    def close(self) -> None:
        self.bar.close()


def _stride(n: int, most: int = 16) -> int:
    """The largest divisor of ``n`` that is at most ``most`` (onnxruntime needs n % stride == 0)."""
    return next(d for d in range(min(n, most), 0, -1) if n % d == 0)


def quantize_onnx(
    fp32_path: str | Path, out: str | Path, calib_paths: Sequence[Path], cfg: QuantizeConfig
) -> QuantizeInfo:
    """Quantize an exported FP32 ONNX model to INT8 (QDQ) calibrated on ``calib_paths``.

    Args:
        fp32_path: ``model.onnx`` from :func:`detpipe.export.onnx_export.export_onnx`.
        out: where to write the INT8 model (atomically).
        calib_paths: calibration images.
        cfg: quantization settings.

    Returns:
        A summary: method, image count, excluded and quantized node counts, duration.

    Raises:
        InvalidInput: no calibration images, or the model has a dynamic image size.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calib_paths:
        raise InvalidInput("INT8 quantization needs calibration images (--calib)")
    start = time.perf_counter()
    fp32 = onnx.load(str(fp32_path))
    inp = fp32.graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    if dims[2] is None or dims[3] is None:
        raise InvalidInput(f"{fp32_path}: dynamic image size; export with a fixed --imgsz")
    batch = dims[0] or cfg.calib_batch
    exclude = head_nodes_to_exclude(fp32) if cfg.keep_head_fp32 else []
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[cfg.method]
    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    reader = _Reader(inp.name, calib_paths, (dims[2], dims[3]), batch)
    extra = {
        "ActivationSymmetric": cfg.activation_type == "int8",
        "WeightSymmetric": True,
        # Calibrate stride by stride (ranges/histograms merged after each) to bound memory; this
        # is the reader-level chunking onnxruntime offers (CalibMaxIntermediateOutputs drops data).
        "CalibStridedMinMax": _stride(len(reader)),
        "CalibPercentile": cfg.percentile,
    }
    with tempfile.TemporaryDirectory(prefix="detpipe-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        qpath = Path(tmp) / "int8.onnx"
        # onnxruntime's symbolic shape inference gives up on a dynamic batch axis ('Incomplete
        # symbolic shape inference'); ONNX's own shape inference still runs then.
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=dims[0] is None)
        quantize_static(
            str(pre),
            str(qpath),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=cfg.per_channel,
            reduce_range=cfg.reduce_range,
            activation_type=qtype[cfg.activation_type],
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=method,
            extra_options=extra,
        )
        reader.close()
        quantized = onnx.load(str(qpath))
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(fp32.metadata_props)
    entry = quantized.metadata_props.add()
    entry.key, entry.value = "quantization", f'"onnxruntime static QDQ int8, {cfg.method}"'
    path = write_bytes(out, quantized.SerializeToString())
    n_quantized = sum(1 for n in quantized.graph.node if n.op_type == "DequantizeLinear")
    return QuantizeInfo(
        path=path,
        method=cfg.method,
        calibration_images=min(len(calib_paths), len(reader) * batch),
        excluded_nodes=len(exclude),
        quantized_nodes=n_quantized,
        seconds=time.perf_counter() - start,
    )
