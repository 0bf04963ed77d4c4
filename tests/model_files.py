"""Small model and image files built for tests (onnx.helper, zlib; no training, no downloads).

``onnx_variant``: the same network with one more metadata entry: another file, sha256 and
version (a "new release" that answers exactly as the old one). ``png_bomb``: a few-KB PNG
whose header declares a huge image.

``constant_head``: a model of the YOLO output shape whose output is one constant everywhere
(NaN: it loads and runs but fails every warm-up; 0: it passes, with no detections), with a
static batch of any size and class names in its metadata as ``detpipe export`` writes them.

``fails_on_bright_input``: a model of the YOLO output shape that runs on the server's grey
(114) warm-up image but fails inside onnxruntime on any input brighter than 0.5 — real
photos — so a server serving it answers 500 for real requests, honestly: the runtime fails.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def constant_head(path: Path, value: float, imgsz: int = 32, nc: int = 2, batch: int = 1) -> Path:
    """Write the model to ``path``: input ``images`` [batch, 3, imgsz, imgsz], output ``output0``
    [batch, 4+nc, A], every element ``value``."""

    anchors = sum((imgsz // s) ** 2 for s in (8, 16, 32))
    shape = [batch, 4 + nc, anchors]
    init = [
        numpy_helper.from_array(np.full(shape, value, np.float32), "base"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    nodes = [  # output0 = base + 0 * max(images): the output depends on the input, as a network's does
        helper.make_node("ReduceMax", ["images"], ["peak"], keepdims=0),
        helper.make_node("Mul", ["peak", "zero"], ["nothing"]),
        helper.make_node("Add", ["base", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "constant_head",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, imgsz, imgsz])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, shape)],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.metadata_props.add(key="names", value=json.dumps({str(i): f"class{i}" for i in range(nc)}))
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def fails_on_bright_input(path: Path, imgsz: int = 64, nc: int = 2) -> Path:
    """Write the model to ``path``: input ``images`` [1, 3, imgsz, imgsz], output ``output0`` [1, 4+nc, A]."""
    anchors = sum((imgsz // s) ** 2 for s in (8, 16, 32))
    shape = [1, 4 + nc, anchors]
    init = [
        numpy_helper.from_array(np.zeros(shape, np.float32), "base"),
        numpy_helper.from_array(np.array(shape, np.int64), "shape"),
        numpy_helper.from_array(np.array([0, 0, 1], np.int64), "grow"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
    ]
    nodes = [
        helper.make_node("ReduceMax", ["images"], ["peak"], keepdims=0),
        helper.make_node("Greater", ["peak", "half"], ["bright"]),
        helper.make_node("Cast", ["bright"], ["one"], to=TensorProto.INT64),
        helper.make_node("Mul", ["grow", "one"], ["extra"]),
        helper.make_node("Add", ["shape", "extra"], ["target"]),  # [1, 4+nc, A+1] when bright
        helper.make_node("Reshape", ["base", "target"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fails_on_bright_input",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, imgsz, imgsz])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + nc, None])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def onnx_variant(src: Path, dst: Path, tag: str) -> Path:
    """``src`` with the metadata entry ``variant=tag``, saved to ``dst``."""
    model = onnx.load(str(src))
    model.metadata_props.add(key="variant", value=tag)
    onnx.save(model, str(dst))
    return dst


def png_bomb(width: int, height: int) -> bytes:
    """A small PNG whose IHDR declares width x height (its one IDAT decompresses small)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + 3 * min(width, 4096)) * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
