"""The Open Inference Protocol (KServe v2 / Triton) REST messages: parsing and building.

Requests carry tensors as JSON ``data`` or, with the binary tensor data extension, as raw
bytes after the JSON header (``Inference-Header-Content-Length`` gives the header's length,
each input's ``parameters.binary_data_size`` its share of the rest). That is what
``tritonclient.http`` sends by default. The model takes one input, ``images`` FP32
``[n, 3, h, w]`` (the exported model's letterboxed RGB in [0, 1]), and answers with its raw
output (``output0`` FP32 ``[n, 4 + nc, anchors]``), exactly as Triton would for the ONNX
file. Every protocol error is an :class:`InvalidInput` (400) naming the tensor and what was
wrong with it.

Spec: https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/ and
Triton's ``docs/protocol/extension_binary_data.md``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from detpipe.errors import InvalidInput
from detpipe.serving.bodies import parse_json

HEADER_LENGTH = "inference-header-content-length"
EXTENSIONS = ["binary_tensor_data", "model_repository", "model_configuration", "statistics"]
DATATYPES = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64}
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: list[int]  # -1: any size

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


@dataclass(frozen=True)
class InferRequest:
    """A parsed infer request: the input batch and how to send the output back."""

    id: str | None
    x: np.ndarray  # (n, 3, h, w) float32
    output: str
    binary_output: bool


def tensor_specs(model: Any) -> tuple[TensorSpec, TensorSpec]:
    """The model's input and output as the protocol describes them (-1 = variable batch)."""
    p = model.predictor
    h, w = p.imgsz
    batch = p.batch or -1
    anchors = sum((h // s) * (w // s) for s in (8, 16, 32))  # YOLOv8+ heads: strides 8, 16, 32
    session = getattr(p, "session", None)  # onnxruntime: the exported shape itself
    if session is not None and isinstance(session.get_outputs()[0].shape[-1], int):
        anchors = session.get_outputs()[0].shape[-1]
    inp = TensorSpec(getattr(p, "input_name", "images"), "FP32", [batch, 3, h, w])
    out = TensorSpec(getattr(p, "output_name", "output0"), "FP32", [batch, 4 + len(p.names), anchors])
    return inp, out


def model_metadata(model: Any) -> dict[str, Any]:
    """``GET /v2/models/{name}``: name, versions, platform, inputs, outputs."""
    inp, out = tensor_specs(model)
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": PLATFORMS.get(model.backend.split("-")[0], model.backend),
        "inputs": [inp.as_json()],
        "outputs": [out.as_json()],
    }


def parse_infer(body: bytes, header_length: str | None, model: Any, max_images: int) -> InferRequest:
    """An infer request (JSON, or JSON header + binary tensors) -> the checked input batch.

    Raises:
        InvalidInput: malformed JSON or lengths, an unknown input or output name, a datatype
            other than the model's, a shape that is not ``[n, 3, h, w]`` of the model's size,
            a data or binary size that does not match the shape.
    """
    if header_length is None:
        header, blob = body, b""
    else:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length {header_length!r}: expected an integer <= the body's "
                f"{len(body)} bytes"
            )
        view = memoryview(body)  # slices of it copy nothing (the tensor is 1.2 MB at 320 px)
        header, blob = bytes(view[: int(header_length)]), view[int(header_length) :]
    doc = parse_json(header, "inference request")
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise InvalidInput('expected a JSON object {"inputs": [{"name", "shape", "datatype", "data"}]}')
    spec_in, spec_out = tensor_specs(model)
    if len(doc["inputs"]) != 1:
        raise InvalidInput(f"expected 1 input ({spec_in.name}), got {len(doc['inputs'])}")
    x = _input_tensor(doc["inputs"][0], blob, spec_in, max_images)
    output, binary = _requested_output(doc, spec_out, default_binary=header_length is not None)
    request_id = doc.get("id")
    return InferRequest(str(request_id) if request_id is not None else None, x, output, binary)


def _input_tensor(inp: Any, blob: bytes | memoryview, spec: TensorSpec, max_images: int) -> np.ndarray:
    if not isinstance(inp, dict):
        raise InvalidInput("inputs[0]: expected an object")
    name = inp.get("name")
    if name != spec.name:
        raise InvalidInput(f"input {name!r}: unknown; this model's input is {spec.name!r}")
    datatype = inp.get("datatype")
    if datatype != spec.datatype:
        raise InvalidInput(f"input {name!r}: datatype {datatype!r}; the model takes {spec.datatype}")
    shape = inp.get("shape")
    if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in shape)):
        raise InvalidInput(f"input {name!r}: shape must be a list of integers, got {shape!r}")
    want = spec.shape[1:]
    if len(shape) != 4 or shape[1:] != want or shape[0] < 1:
        raise InvalidInput(f"input {name!r}: shape {shape}; the model takes [n, {', '.join(map(str, want))}]")
    if spec.shape[0] != -1 and shape[0] > spec.shape[0]:
        raise InvalidInput(f"input {name!r}: batch {shape[0]}; the model takes at most {spec.shape[0]}")
    if shape[0] > max_images:
        raise InvalidInput(f"input {name!r}: batch {shape[0]}; the limit is {max_images} per request")
    count = math.prod(shape)
    dtype = DATATYPES[spec.datatype]
    params = inp.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput(f"input {name!r}: parameters must be an object")
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        expected = count * np.dtype(dtype).itemsize
        if size != expected:
            raise InvalidInput(
                f"input {name!r}: binary_data_size {size}; shape {shape} {datatype} is {expected} bytes"
            )
        if len(blob) != expected:
            raise InvalidInput(
                f"input {name!r}: {len(blob)} bytes of binary data after the header; expected {expected}"
            )
        # a read-only view of the body: no copy (the model only reads its input)
        return np.frombuffer(blob, dtype=dtype).reshape(shape).astype(np.float32, copy=False)
    if blob:
        raise InvalidInput(f"input {name!r}: binary data sent but no parameters.binary_data_size")
    data = inp.get("data")
    if not isinstance(data, list):
        raise InvalidInput(f"input {name!r}: no data (send 'data' or binary data with binary_data_size)")
    try:
        flat = np.asarray(data, dtype=np.float32).reshape(-1)
    except (ValueError, TypeError):
        raise InvalidInput(f"input {name!r}: data must be numbers (flat or nested as the shape)") from None
    if flat.size != count:
        raise InvalidInput(f"input {name!r}: {flat.size} values for shape {shape} ({count} expected)")
    return flat.reshape(shape)


def _requested_output(doc: dict, spec: TensorSpec, default_binary: bool) -> tuple[str, bool]:
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput("parameters: expected an object")
    binary = bool(params.get("binary_data_output", default_binary))
    outputs = doc.get("outputs")
    if outputs is None:
        return spec.name, binary
    if not isinstance(outputs, list) or len(outputs) != 1 or not isinstance(outputs[0], dict):
        raise InvalidInput(f"outputs: expected one requested output ({spec.name})")
    if outputs[0].get("name") != spec.name:
        name = outputs[0].get("name")
        raise InvalidInput(f"output {name!r}: unknown; this model's output is {spec.name!r}")
    out_params = outputs[0].get("parameters") or {}
    if isinstance(out_params, dict) and "binary_data" in out_params:
        binary = bool(out_params["binary_data"])
    return spec.name, binary


def infer_response(model: Any, request: InferRequest, output: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """The response body and headers (binary output: JSON header + raw bytes, as requested)."""
    out = np.ascontiguousarray(output, dtype=np.float32)
    tensor: dict[str, Any] = {"name": request.output, "datatype": "FP32", "shape": list(out.shape)}
    doc: dict[str, Any] = {"model_name": model.name, "model_version": model.version, "outputs": [tensor]}
    if request.id is not None:
        doc["id"] = request.id
    if not request.binary_output:
        tensor["data"] = out.reshape(-1).tolist()
        return json.dumps(doc).encode(), {"content-type": "application/json"}
    tensor["parameters"] = {"binary_data_size": out.nbytes}
    header = json.dumps(doc).encode()
    return b"".join((header, memoryview(out).cast("B"))), {  # one copy of the tensor
        "content-type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
