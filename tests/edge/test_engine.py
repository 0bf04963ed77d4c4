"""Engine targets for another TensorRT (incompatible, not refused) and the build-on-device cache
key (the health check's output rules: tests/runtime/test_warmup.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detpipe.edge.agent import Agent, AgentConfig
from detpipe.edge.engine import build_on_device, cached_engine, engine_cache_key
from detpipe.edge.publish import PublishConfig, publish_target
from detpipe.edge.slots import Slots
from detpipe.errors import InvalidInput
from detpipe.export.sidecar import SCHEMA, DeviceInfo
from detpipe.export.tensorrt_build import engine_unavailable_reason
from detpipe.io import sha256_file
from detpipe.store import LocalStore

NO_TRT = engine_unavailable_reason() is not None
ORIN = DeviceInfo("Orin", "8.7", "10.3.0", dla_cores=2)


def test_an_engine_for_another_tensorrt_is_incompatible_not_refused(tmp_path: Path, keys: Path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\0" * 4096)
    gpu = {"name": "Orin", "compute_capability": "8.7", "dla_cores": 2}
    sidecar = {"schema": SCHEMA, "engine": "model.engine", "tensorrt_version": "10.3.0", "precision": "fp16",
               "gpu": gpu, "build_flags": {}}  # fmt: skip
    (tmp_path / "model.engine.json").write_text(json.dumps(sidecar))
    store = LocalStore(tmp_path / "store")
    publish_target(store, PublishConfig("orin-sm87-trt10.3.0", "1", engine, "engine", keys))
    d = tmp_path / "device"
    cfg = AgentConfig(str(store.root), "orin-sm87-trt10.3.0", "jetson-1", keys / "root.json", d,
                      device=DeviceInfo("Orin", "8.7", "10.4.0", dla_cores=2))  # fmt: skip
    agent = Agent(cfg)
    r = agent.run_once()
    assert (r["outcome"], r["version"]) == ("incompatible", "1"), r
    assert r["error"] == "no engine for TensorRT 10.4.0 sm87 among 10.3.0/sm87; no ONNX to build from"
    assert not (d / "downloads").exists() or not list((d / "downloads").iterdir())  # nothing fetched
    assert not (d / "current").exists()
    assert not Slots(d).state().get("refused")  # no fault of the artifact
    again = agent.run_once()
    assert (again["outcome"], again["error"]) == ("incompatible", r["error"])  # looked at again, not refused
    status = json.loads(store.get_bytes("devices/jetson-1/status.json"))
    assert status["outcome"] == "incompatible" and status["last_error"] == r["error"]


def test_build_on_device_cache_key_and_lookup(tmp_path: Path):
    key = engine_cache_key("ab" * 32, ORIN)
    assert key == "ab" * 32 + "-fp16-orin-sm87-trt10.3.0"  # the full hash, not a 64-bit prefix
    assert cached_engine(tmp_path, key) is None
    (tmp_path / key).mkdir()
    engine = tmp_path / key / "model.engine"
    engine.write_bytes(b"e")
    assert cached_engine(tmp_path, key) is None  # no sidecar, no engine
    (tmp_path / key / "model.engine.json").write_text(json.dumps({"sha256": sha256_file(engine)}))
    assert cached_engine(tmp_path, key) == engine
    other = engine_cache_key("ab" * 32, DeviceInfo("Orin", "8.7", "10.4.0"))
    assert other != key  # a TensorRT upgrade rebuilds
    assert engine_cache_key("ab" * 32, ORIN, "int8") != key  # so does another precision
    for bad in ("ab" * 8, "../" + "ab" * 31, "AB" * 32):
        with pytest.raises(InvalidInput, match="is not a sha256"):
            engine_cache_key(bad, ORIN)


def test_a_cached_engine_is_verified_on_every_use(tmp_path: Path):
    key = engine_cache_key("cd" * 32, ORIN)
    (tmp_path / key).mkdir()
    engine = tmp_path / key / "model.engine"
    engine.write_bytes(b"engine bytes")
    (tmp_path / key / "model.engine.json").write_text(json.dumps({"sha256": sha256_file(engine)}))
    assert cached_engine(tmp_path, key) == engine
    engine.write_bytes(b"tampered bytes")  # changed after it was cached
    assert cached_engine(tmp_path, key) is None
    assert not (tmp_path / key).exists()  # thrown away: the next build replaces it


@pytest.mark.skipif(not NO_TRT, reason="TensorRT is installed here")
def test_without_tensorrt_the_onnx_model_is_served(tmp_path: Path):
    assert build_on_device(tmp_path / "model.onnx", "00" * 32, tmp_path / "cache") is None
    assert not (tmp_path / "cache").exists()
