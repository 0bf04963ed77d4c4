"""Engine sidecars: the device-compatibility check (pure) and refusal to load mismatched engines."""

from __future__ import annotations

import pytest

from detpipe import errors
from detpipe.errors import InvalidInput, Unavailable
from detpipe.export.sidecar import (
    SCHEMA,
    DeviceInfo,
    EngineIncompatible,
    check_compatible,
    device_class,
    ensure_compatible,
    make_sidecar,
    read_sidecar,
    sidecar_path,
    verify_engine_file,
    write_sidecar,
)

ORIN = DeviceInfo("Orin", "8.7", "10.3.0", dla_cores=2, cuda_version="12.6")
H100 = DeviceInfo("NVIDIA H100 80GB HBM3", "9.0", "10.3.0")
A10 = DeviceInfo("NVIDIA A10", "8.6", "10.3.0")


def _sidecar(device: DeviceInfo, **flags) -> dict:
    return {
        "schema": SCHEMA,
        "engine": "model.fp16.engine",
        "precision": "fp16",
        "tensorrt_version": device.tensorrt_version,
        "gpu": {"name": device.gpu_name, "compute_capability": device.compute_capability},
        "input_shape": [1, 3, 640, 640],
        "build_flags": {"fp16": True, "int8": False, "dla_core": None, **flags},
    }


def test_same_device_is_compatible():
    assert check_compatible(_sidecar(ORIN), ORIN) == []
    ensure_compatible(_sidecar(ORIN), ORIN)


def test_tensorrt_version_must_match():
    newer = DeviceInfo("Orin", "8.7", "10.4.0", dla_cores=2)
    problems = check_compatible(_sidecar(ORIN), newer)
    assert problems == ["TensorRT 10.4.0 here, engine built with TensorRT 10.3.0"]


def test_version_compatible_engines_accept_newer_runtime_of_same_major():
    side = _sidecar(ORIN, version_compatible=True)
    assert check_compatible(side, DeviceInfo("Orin", "8.7", "10.4.0", dla_cores=2)) == []
    assert check_compatible(side, DeviceInfo("Orin", "8.7", "10.2.0", dla_cores=2))  # older runtime
    assert check_compatible(side, DeviceInfo("Orin", "8.7", "11.0.0", dla_cores=2))  # other major


def test_compute_capability_and_gpu_model_must_match():
    problems = check_compatible(_sidecar(H100), ORIN)
    assert "compute capability 8.7 here, engine built for 9.0" in problems
    assert "GPU 'Orin' here, engine built on 'NVIDIA H100 80GB HBM3'" in problems
    same_sm = DeviceInfo("NVIDIA A10G", "8.6", "10.3.0")
    assert check_compatible(_sidecar(A10), same_sm) == [
        "GPU 'NVIDIA A10G' here, engine built on 'NVIDIA A10'"
    ]
    assert check_compatible(_sidecar(A10), same_sm, strict_gpu_name=False) == []


def test_hardware_compatible_engines_need_ampere_or_newer():
    side = _sidecar(A10, hardware_compatibility="ampere+")
    assert check_compatible(side, H100) == []
    turing = DeviceInfo("Tesla T4", "7.5", "10.3.0")
    assert check_compatible(side, turing) == ["compute capability 7.5 here, 'ampere+' engine needs >= 8.0"]


def test_dla_engines_need_the_dla_core():
    side = _sidecar(ORIN, dla_core=1)
    assert check_compatible(side, ORIN) == []
    nano = DeviceInfo("Orin", "8.7", "10.3.0", dla_cores=0)  # Orin Nano: no DLA
    assert check_compatible(side, nano) == ["engine runs on DLA core 1, this device has 0 DLA core(s)"]


def test_ensure_compatible_refuses_with_a_clear_message():
    with pytest.raises(EngineIncompatible) as e:
        ensure_compatible(_sidecar(H100), ORIN)
    assert EngineIncompatible is errors.EngineIncompatible  # the one class, re-exported here
    assert isinstance(e.value, Unavailable)  # this device cannot use it: exit code 3 / HTTP 503
    assert (e.value.exit_code, e.value.http_status) == (3, 503)
    message = str(e.value)
    assert message.startswith("model.fp16.engine: refusing to load, built for another device:")
    assert "Rebuild it on this device: detpipe export --formats engine-fp16" in message
    assert len(e.value.problems) == 2


def test_sidecar_file_round_trip_and_integrity(tmp_path):
    engine = tmp_path / "model.fp16.engine"
    engine.write_bytes(b"\x00serialized engine\x01")
    side = make_sidecar(engine, ORIN, "fp16", [1, 3, 640, 640], {"fp16": True, "dla_core": None})
    assert side["sha256"] and side["size_bytes"] == engine.stat().st_size
    assert side["device_class"] == device_class(ORIN) == "orin-sm87-trt10.3.0"
    write_sidecar(engine, side)
    assert sidecar_path(engine).name == "model.fp16.engine.json"
    loaded = read_sidecar(engine)
    assert loaded == side
    ensure_compatible(loaded, ORIN)
    verify_engine_file(engine, loaded)
    engine.write_bytes(b"\x00tampered engine\x01")
    with pytest.raises(InvalidInput, match=r"sha256 .* does not match its sidecar") as e:
        verify_engine_file(engine, loaded)  # the file's fault, not the device's: exit 2 / HTTP 400
    assert not isinstance(e.value, EngineIncompatible)


def test_missing_or_foreign_sidecar_is_refused(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"x")
    with pytest.raises(InvalidInput, match=r"no sidecar model\.engine\.json") as e:
        read_sidecar(engine)
    assert not isinstance(e.value, EngineIncompatible)  # an unverifiable file: exit 2 / HTTP 400
    sidecar_path(engine).write_text('{"schema": "something/else"}')
    with pytest.raises(InvalidInput, match="not a detpipe engine sidecar") as e:
        read_sidecar(engine)
    assert not isinstance(e.value, EngineIncompatible)


def test_tensorrt_predictor_refuses_before_touching_tensorrt(tmp_path):
    """Without a sidecar an engine is refused even where TensorRT is not installed."""
    from detpipe.runtime.tensorrt import TensorRTPredictor

    engine = tmp_path / "model.fp16.engine"
    engine.write_bytes(b"not checked")
    with pytest.raises(InvalidInput, match="no sidecar"):
        TensorRTPredictor(engine)


def test_without_a_gpu_cuda_and_engines_are_unavailable():
    import torch

    from detpipe.errors import Unavailable
    from detpipe.export.cuda_mem import get_cuda
    from detpipe.export.tensorrt_build import engine_unavailable_reason

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present here")
    with pytest.raises(Unavailable, match=r"no CUDA GPU here \(torch.cuda.is_available\(\) is False"):
        get_cuda()
    assert engine_unavailable_reason()  # a one-line reason, recorded as the engines' skip reason
