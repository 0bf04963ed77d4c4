"""Which file ``--model`` names: plain files, releases in a local store or on S3, newest version, cache."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from model_files import onnx_variant
from serve_client import http

from detpipe.errors import InvalidInput, NotFound, StoreError
from detpipe.export.sidecar import DeviceInfo, make_sidecar, write_sidecar
from detpipe.io import sha256_file
from detpipe.serving.config import ServerConfig
from detpipe.serving.model import load_model, resolve
from detpipe.store import publish, release_uri


@pytest.fixture
def local_store(tmp_path: Path, pico_onnx: Path) -> Path:
    """A store with releases pico/1 and pico/2 (2 is newest), each holding model.onnx."""
    store = tmp_path / "store"
    for version in ("1", "2"):
        publish(store, "pico", version, {"model.onnx": pico_onnx}, metrics={"map50_95": 0.1})
    return store


def test_a_plain_file_is_named_by_its_stem_and_versioned_by_its_hash(pico_onnx):
    resolved = resolve(ServerConfig(model=str(pico_onnx)))
    assert resolved.path == pico_onnx
    assert (resolved.name, resolved.version) == ("model", f"sha-{sha256_file(pico_onnx)[:12]}")


def test_a_release_is_fetched_verified_and_named_by_its_manifest(local_store, tmp_path, pico_onnx):
    cfg = ServerConfig(model=release_uri(str(local_store), "pico", "1"), cache_dir=tmp_path / "cache")
    model = load_model(cfg)
    assert (model.name, model.version, model.format, model.backend) == ("pico", "1", "onnx", "onnxruntime")
    assert model.path == tmp_path / "cache" / "pico" / "1" / "model.onnx"
    assert model.sha256 == sha256_file(pico_onnx)
    assert (model.path.parent / "manifest.json").is_file()


def test_models_name_resolves_to_the_newest_version(local_store, tmp_path):
    for uri in (f"{local_store}/models/pico", f"file://{local_store}/models/pico/"):
        resolved = resolve(ServerConfig(model=uri, cache_dir=tmp_path / "cache"))
        assert (resolved.name, resolved.version) == ("pico", "2")


def test_the_cache_is_reused_while_it_matches_and_refetched_when_it_does_not(
    local_store, tmp_path, pico_onnx
):
    cfg = ServerConfig(model=release_uri(str(local_store), "pico", "1"), cache_dir=tmp_path / "cache")
    cached = resolve(cfg).path
    os.utime(cached, (1, 1))
    assert resolve(cfg).path.stat().st_mtime == 1  # matching hash: not downloaded again
    cached.write_bytes(b"corrupted")
    assert sha256_file(resolve(cfg).path) == sha256_file(pico_onnx)  # mismatch: fetched and verified


def test_a_tampered_release_is_refused_and_nothing_is_cached(local_store, tmp_path):
    (local_store / "models" / "pico" / "1" / "model.onnx").write_bytes(b"evil")
    cfg = ServerConfig(model=str(local_store / "models" / "pico" / "1"), cache_dir=tmp_path / "cache")
    with pytest.raises(StoreError, match="does not match the manifest"):
        resolve(cfg)
    assert not (tmp_path / "cache" / "pico" / "1").exists()


@pytest.mark.parametrize(
    ("model", "fmt", "error", "message"),
    [
        ("STORE/models/pico/1", "onnx-int8", NotFound,
         "the release has no model.int8.onnx (it has: model.onnx); pick another --format"),
        ("STORE/models/pico/9", "onnx", NotFound, "manifest.json is missing"),
        ("STORE/models/nobody", "onnx", NotFound, "no releases of 'nobody'"),
        ("STORE", "onnx", InvalidInput, "not a release (no manifest.json) nor a <store>/models/<name>"),
        ("STORE/nothing-here.onnx", "onnx", NotFound, "no such file, directory or release URI"),
    ],
)  # fmt: skip
def test_what_cannot_be_served_is_named(local_store, tmp_path, model, fmt, error, message):
    cfg = ServerConfig(model=model.replace("STORE", str(local_store)), format=fmt, cache_dir=tmp_path / "c")
    with pytest.raises(error) as info:
        resolve(cfg)
    assert message in str(info.value)


def test_pytorch_weights_are_refused(trained_pico):
    with pytest.raises(InvalidInput, match="serve an exported model"):
        load_model(ServerConfig(model=str(trained_pico)))


@pytest.mark.slow
def test_serve_a_release_from_s3(s3, serve, pico_onnx, val_jpegs, tmp_path):
    """The cluster path: MinIO settings from the environment, release fetched and verified, then served."""
    publish(s3.store("s3://detpipe-test/serve"), "pico", "3", {"model.onnx": pico_onnx})
    cache = tmp_path / "cache"
    server = serve("--model", "s3://detpipe-test/serve/models/pico", "--cache-dir", str(cache), env=s3.env)
    meta = server.get("/v1/models/pico").json()
    assert (meta["version"], meta["sha256"]) == ("3", sha256_file(pico_onnx))
    assert meta["source"] == "s3://detpipe-test/serve/models/pico"
    assert server.post("/v1/models/pico:detect", val_jpegs[0], "image/jpeg").status == 200
    assert sorted(p.name for p in (cache / "pico" / "3").iterdir()) == ["manifest.json", "model.onnx"]

    # hot reload from the store: a named version, then the newest, then a version that does not exist
    store = s3.store("s3://detpipe-test/serve")
    publish(store, "pico", "4", {"model.onnx": onnx_variant(pico_onnx, tmp_path / "v4.onnx", "4")})
    publish(store, "pico", "5", {"model.onnx": onnx_variant(pico_onnx, tmp_path / "v5.onnx", "5")})
    load = "/v2/repository/models/pico/load"
    reply = http(server.url + load, b'{"parameters": {"version": "4"}}', method="POST")
    assert (reply.status, reply.json()["version"]) == (200, "4"), reply.body
    assert server.post("/v1/models/pico:detect", val_jpegs[0], "image/jpeg").headers["x-model-version"] == "4"
    reply = http(server.url + load, b"", method="POST")
    assert (reply.status, reply.json()["version"]) == (200, "5"), reply.body
    reply = http(server.url + load, b'{"parameters": {"version": "9"}}', method="POST")
    assert reply.status == 404, reply.body
    assert server.get("/v1/models/pico").json()["version"] == "5"


ORIN = DeviceInfo("Orin", "8.7", "10.3.0", 2)


def _release_with_engine(store: Path, pico_onnx: Path, tmp_path: Path) -> str:
    """A release holding an engine (+ sidecar) for an Orin, built elsewhere."""
    engine = tmp_path / "built" / "model.engine"
    engine.parent.mkdir()
    engine.write_bytes(b"serialized engine for an Orin")
    sidecar = write_sidecar(engine, make_sidecar(engine, ORIN, "fp16", [1, 3, 64, 64], {}))
    cls = "orin-sm87-trt10.3.0"
    files = {
        "model.onnx": pico_onnx,
        f"engines/{cls}/model.engine": engine,
        f"engines/{cls}/model.engine.json": sidecar,
    }
    publish(store, "pico", "7", files)
    return release_uri(str(store), "pico", "7")


def test_format_engine_picks_the_device_class_engine_with_its_sidecar(tmp_path, pico_onnx):
    uri = _release_with_engine(tmp_path / "store", pico_onnx, tmp_path)

    def cfg(device_class: str) -> ServerConfig:
        return ServerConfig(model=uri, format="engine", device_class=device_class, cache_dir=tmp_path / "c")

    resolved = resolve(cfg("orin-sm87-trt10.3.0"))
    assert resolved.path == tmp_path / "c" / "pico" / "7" / "engines" / "orin-sm87-trt10.3.0" / "model.engine"
    assert resolved.path.with_name("model.engine.json").is_file()
    with pytest.raises(NotFound, match=r"has no engines/h100-sm90-trt10.3.0/model.engine \(it has: "):
        resolve(cfg("h100-sm90-trt10.3.0"))


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_serving_an_engine_without_tensorrt_exits_3_with_the_reason(tmp_path, pico_onnx):
    uri = _release_with_engine(tmp_path / "store", pico_onnx, tmp_path)
    for extra in (["--device-class", "orin-sm87-trt10.3.0"], []):  # explicit, or this machine's GPU
        cmd = [sys.executable, "-m", "detpipe.cli.main", "serve", "--model", uri, "--format", "engine",
               *extra, "--cache-dir", str(tmp_path / "c")]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert res.returncode == 3, res.stderr
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith("detpipe serve: error: TensorRT is not installed here"), last
        assert "Traceback" not in res.stderr
