"""Which file ``--model`` names: plain files, releases in a local store or on S3, newest version, cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from detpipe.errors import InvalidInput, NotFound, StoreError
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
