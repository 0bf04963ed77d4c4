"""Run a TensorRT engine behind detpipe's YOLO pre/post-processing.

Loading checks the engine before TensorRT sees it: the sidecar must exist and match this
device (:func:`detpipe.export.sidecar.ensure_compatible`) and the file's sha256 must match
the sidecar. Both the TensorRT 10 tensor API (``execute_async_v3``) and the TensorRT 8.6
bindings API (``execute_v2``) are supported; device memory comes from torch or cuda-python
(:mod:`detpipe.export.cuda_mem`)::

    predictor = TensorRTPredictor("export/model.fp16.engine")
    detections = predictor([cv2.imread("a.jpg")])

``infer`` takes a host NCHW float32 batch and returns the host output, so its timing
includes the host<->device copies (like onnxruntime's CUDA provider given numpy inputs).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from detpipe.errors import DetpipeError, InvalidInput
from detpipe.export.sidecar import (
    current_device_info,
    ensure_compatible,
    import_tensorrt,
    read_sidecar,
    verify_engine_file,
)
from detpipe.runtime.nms import PostprocessConfig
from detpipe.runtime.predictors import Predictor

log = logging.getLogger(__name__)


class TensorRTPredictor(Predictor):
    """A detpipe-built TensorRT engine.

    Args:
        path: the ``.engine`` file (its ``.engine.json`` sidecar beside it).
        device_index: CUDA device.
        strict_gpu_name: refuse engines built on another GPU model of the same compute capability.
        postprocess_cfg: NMS settings.

    Raises:
        Unavailable: no TensorRT or no GPU here.
        EngineIncompatible: the sidecar says another TensorRT version or GPU.
        InvalidInput: no sidecar, an unreadable one, or a sha256 that is not the engine's.
    """

    def __init__(
        self,
        path: str | Path,
        device_index: int = 0,
        strict_gpu_name: bool = True,
        postprocess_cfg: PostprocessConfig | None = None,
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise InvalidInput(f"{path}: no such file")
        sidecar = read_sidecar(path)  # before anything else: no sidecar, no load
        trt = import_tensorrt()
        ensure_compatible(sidecar, current_device_info(device_index), strict_gpu_name)
        verify_engine_file(path, sidecar)
        from detpipe.export.cuda_mem import get_cuda

        self.path, self.sidecar, self._trt = path, sidecar, trt
        self.cuda = get_cuda(device_index)
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        dla = (sidecar.get("build_flags") or {}).get("dla_core")
        if dla is not None:
            runtime.DLA_core = int(dla)
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise DetpipeError(f"{path}: TensorRT could not deserialize the engine")
        self.context = self.engine.create_execution_context()
        self._v3 = hasattr(self.engine, "num_io_tensors")
        self.input_name, self.output_name = self._io_names()
        shape = tuple(int(d) for d in sidecar["input_shape"])
        self.batch = None if (sidecar.get("build_flags") or {}).get("dynamic_batch") else shape[0]
        self.max_batch = shape[0]
        self.imgsz = (shape[2], shape[3])
        self.names = {int(k): str(v) for k, v in (sidecar.get("names") or {}).items()}
        self.postprocess_cfg = postprocess_cfg or PostprocessConfig()
        self._stream = self.cuda.stream()
        self._buffers: dict[tuple[int, ...], tuple[Any, Any]] = {}

    def _io_names(self) -> tuple[str, str]:
        trt = self._trt
        if self._v3:
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        else:
            names = [self.engine.get_binding_name(i) for i in range(self.engine.num_bindings)]
            inputs = [n for i, n in enumerate(names) if self.engine.binding_is_input(i)]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or not outputs:
            raise InvalidInput(f"{self.path}: expected one input and an output, got {inputs} / {outputs}")
        return inputs[0], outputs[0]

    def _io_buffers(self, in_shape: tuple[int, ...]) -> tuple[Any, Any]:
        """Device input/output buffers for this input shape (allocated once per shape)."""
        if in_shape not in self._buffers:
            if self._v3:
                self.context.set_input_shape(self.input_name, in_shape)
                out_shape = tuple(self.context.get_tensor_shape(self.output_name))
            else:
                idx = self.engine.get_binding_index(self.input_name)
                self.context.set_binding_shape(idx, in_shape)
                out_shape = tuple(
                    self.context.get_binding_shape(self.engine.get_binding_index(self.output_name))
                )
            self._buffers[in_shape] = (self.cuda.empty(in_shape), self.cuda.empty(out_shape))
        return self._buffers[in_shape]

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Run a host NCHW float32 batch (copied to the GPU and back)."""
        in_shape = tuple(int(d) for d in x.shape)
        if in_shape[0] > self.max_batch:
            raise InvalidInput(f"batch {in_shape[0]} > the engine's maximum {self.max_batch}")
        inp, out = self._io_buffers(in_shape)
        inp.copy_from_host(x)
        if self._v3:
            self.context.set_input_shape(self.input_name, in_shape)
            self.context.set_tensor_address(self.input_name, inp.ptr)
            self.context.set_tensor_address(self.output_name, out.ptr)
            ok = self.context.execute_async_v3(self._stream)
            self.cuda.synchronize(self._stream)
        else:
            in_idx = self.engine.get_binding_index(self.input_name)
            out_idx = self.engine.get_binding_index(self.output_name)
            self.context.set_binding_shape(in_idx, in_shape)
            bindings = [0] * self.engine.num_bindings
            bindings[in_idx], bindings[out_idx] = inp.ptr, out.ptr
            ok = self.context.execute_v2(bindings)
        if not ok:
            raise DetpipeError(f"{self.path}: TensorRT execution failed")
        return out.to_host()
