"""Just enough CUDA for TensorRT: device properties, device buffers, copies, a stream.

TensorRT's Python API takes raw device pointers but allocates nothing for the caller. Two
providers, tried in order, both imported lazily:

- **torch** with CUDA (GPU servers, NVIDIA's Jetson PyTorch builds);
- **cuda-python** (``cuda.bindings.runtime`` / ``cuda.cudart``): the Jetson image's path,
  where the PyPI torch wheel has no CUDA for the Tegra iGPU.

::

    cuda = get_cuda()                          # raises Unavailable when neither works
    cuda.device_properties(0)                  # ('Orin', (8, 7))
    buf = cuda.empty((1, 3, 640, 640))         # float32 device buffer
    buf.copy_from_host(x); ...; y = out.to_host()
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from detpipe.errors import DetpipeError, Unavailable

log = logging.getLogger(__name__)


class DeviceBuffer:
    """A float32 device array: ``ptr`` for TensorRT, host copies in and out."""

    def __init__(self, backend: CudaBackend, shape: tuple[int, ...], handle: Any, ptr: int) -> None:
        self.backend, self.shape, self.handle, self.ptr = backend, tuple(shape), handle, ptr

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * 4

    def copy_from_host(self, x: np.ndarray) -> None:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape != self.shape:
            raise ValueError(f"host array {x.shape} does not fit device buffer {self.shape}")
        self.backend.h2d(self, x)

    def to_host(self) -> np.ndarray:
        out = np.empty(self.shape, np.float32)
        self.backend.d2h(out, self)
        return out


class CudaBackend:
    """Interface of the two providers."""

    name = "none"

    def device_count(self) -> int:
        raise NotImplementedError

    def device_properties(self, index: int) -> tuple[str, tuple[int, int]]:
        raise NotImplementedError

    def runtime_version(self) -> str | None:
        raise NotImplementedError

    def empty(self, shape: tuple[int, ...]) -> DeviceBuffer:
        raise NotImplementedError

    def h2d(self, dst: DeviceBuffer, src: np.ndarray) -> None:
        raise NotImplementedError

    def d2h(self, dst: np.ndarray, src: DeviceBuffer) -> None:
        raise NotImplementedError

    def stream(self) -> int:
        """A CUDA stream handle (int) for ``execute_async_v3``."""
        raise NotImplementedError

    def synchronize(self, stream: int) -> None:
        raise NotImplementedError


class _Torch(CudaBackend):
    name = "torch"

    def __init__(self, device_index: int = 0) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(f"cuda:{device_index}")
        self._stream = torch.cuda.Stream(self.device)

    def device_count(self) -> int:
        return self.torch.cuda.device_count()

    def device_properties(self, index: int) -> tuple[str, tuple[int, int]]:
        return self.torch.cuda.get_device_name(index), tuple(self.torch.cuda.get_device_capability(index))

    def runtime_version(self) -> str | None:
        return self.torch.version.cuda

    def empty(self, shape: tuple[int, ...]) -> DeviceBuffer:
        t = self.torch.empty(shape, dtype=self.torch.float32, device=self.device)
        return DeviceBuffer(self, shape, t, int(t.data_ptr()))

    def h2d(self, dst: DeviceBuffer, src: np.ndarray) -> None:
        dst.handle.copy_(self.torch.from_numpy(src))

    def d2h(self, dst: np.ndarray, src: DeviceBuffer) -> None:
        dst[...] = src.handle.cpu().numpy()

    def stream(self) -> int:
        return int(self._stream.cuda_stream)

    def synchronize(self, stream: int) -> None:
        self._stream.synchronize()


class _CudaPython(CudaBackend):
    name = "cuda-python"

    def __init__(self, device_index: int = 0) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        self.rt = cudart
        self._check(cudart.cudaSetDevice(device_index))
        self._stream = int(self._check(cudart.cudaStreamCreate()))

    def _check(self, result: tuple) -> Any:
        err, *rest = result
        if err != self.rt.cudaError_t.cudaSuccess:
            raise DetpipeError(f"CUDA error {err}")
        return rest[0] if len(rest) == 1 else rest

    def device_count(self) -> int:
        return int(self._check(self.rt.cudaGetDeviceCount()))

    def device_properties(self, index: int) -> tuple[str, tuple[int, int]]:
        prop = self._check(self.rt.cudaGetDeviceProperties(index))
        name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
        return name.rstrip("\x00"), (int(prop.major), int(prop.minor))

    def runtime_version(self) -> str | None:
        v = int(self._check(self.rt.cudaRuntimeGetVersion()))
        return f"{v // 1000}.{(v % 1000) // 10}"

    def empty(self, shape: tuple[int, ...]) -> DeviceBuffer:
        nbytes = int(np.prod(shape)) * 4
        ptr = int(self._check(self.rt.cudaMalloc(nbytes)))
        buf = DeviceBuffer(self, shape, None, ptr)
        import weakref

        weakref.finalize(buf, self.rt.cudaFree, ptr)
        return buf

    def h2d(self, dst: DeviceBuffer, src: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpy(dst.ptr, src.ctypes.data, dst.nbytes, kind))

    def d2h(self, dst: np.ndarray, src: DeviceBuffer) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpy(dst.ctypes.data, src.ptr, src.nbytes, kind))

    def stream(self) -> int:
        return self._stream

    def synchronize(self, stream: int) -> None:
        self._check(self.rt.cudaStreamSynchronize(stream))


_CACHE: dict[int, CudaBackend] = {}


def get_cuda(device_index: int = 0) -> CudaBackend:
    """The first working provider for CUDA device ``device_index`` (cached per device).

    Raises:
        Unavailable: no CUDA GPU reachable through torch or cuda-python.
    """
    if device_index in _CACHE:
        return _CACHE[device_index]
    reasons = []
    try:
        import torch

        if torch.cuda.is_available():
            _CACHE[device_index] = _Torch(device_index)
            return _CACHE[device_index]
        reasons.append("torch.cuda.is_available() is False")
    except ImportError:
        reasons.append("no torch")
    try:
        backend = _CudaPython(device_index)
        backend.device_count()
        _CACHE[device_index] = backend
        return backend
    except ImportError:
        reasons.append("no cuda-python")
    except Exception as e:  # no driver / no device: cuda-python reports through error codes
        reasons.append(f"cuda-python: {e}")
    raise Unavailable(f"no CUDA GPU here ({'; '.join(reasons)})")
