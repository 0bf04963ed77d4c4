"""Which file ``--model`` names: plain files, signed releases in a local store or on S3, newest
version, the cache (kept inside its root, old versions evicted)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
from model_files import onnx_variant
from serve_client import reload_args

from detpipe.errors import InvalidInput, NotFound, SignatureError, StoreError
from detpipe.export.sidecar import DeviceInfo, make_sidecar, write_sidecar
from detpipe.io import sha256_file
from detpipe.serving.config import ServerConfig
from detpipe.serving.model import evict_cache, load_model, resolve
from detpipe.signing import ReleaseSigner
from detpipe.store import publish, release_uri

DETAILS = " (details in the server log)"
ERROR = "detpipe serve: error: "


@pytest.fixture
def local_store(tmp_path: Path, pico_onnx: Path, release_keys) -> Path:
    """A store with releases pico/1 and pico/2 (2 is newest), each holding model.onnx, signed."""
    store = tmp_path / "store"
    for version in ("1", "2"):
        publish(store, "pico", version, {"model.onnx": pico_onnx}, metrics={"map50_95": 0.1},
                signer=ReleaseSigner(release_keys[0]))  # fmt: skip
    return store


@pytest.fixture
def signed_config(release_keys):
    """``ServerConfig`` that checks releases against the test key."""
    return partial(ServerConfig, release_key=release_keys[1])


def alter(release: Path) -> None:
    """Change a byte of ``model.onnx`` and rewrite ``manifest.json`` to match, without re-signing."""
    model = release / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    manifest = json.loads((release / "manifest.json").read_text())
    for entry in manifest["objects"]:
        if entry["path"] == "model.onnx":
            entry["sha256"], entry["size"] = sha256_file(model), len(data)
    (release / "manifest.json").write_text(json.dumps(manifest))


def test_a_plain_file_is_named_by_its_stem_and_versioned_by_its_hash(pico_onnx):
    resolved = resolve(ServerConfig(model=str(pico_onnx)))
    assert resolved.path == pico_onnx
    assert (resolved.name, resolved.version) == ("model", f"sha-{sha256_file(pico_onnx)[:12]}")


def test_a_release_is_fetched_verified_and_named_by_its_manifest(
    local_store, tmp_path, pico_onnx, signed_config
):
    cfg = signed_config(model=release_uri(str(local_store), "pico", "1"), cache_dir=tmp_path / "cache")
    model = load_model(cfg)
    assert (model.name, model.version, model.format, model.backend) == ("pico", "1", "onnx", "onnxruntime")
    assert model.path == tmp_path / "cache" / "pico" / "1" / "model.onnx"
    assert model.sha256 == sha256_file(pico_onnx)
    assert (model.path.parent / "manifest.json").is_file()
    assert (model.path.parent / "manifest.sig").is_file()


def test_a_release_needs_a_key_or_allow_unsigned(
    local_store, tmp_path, pico_onnx, signed_config, release_keys
):
    uri, cache = release_uri(str(local_store), "pico", "1"), tmp_path / "cache"
    with pytest.raises(InvalidInput, match=r"is a release: pass --release-key PUB .* or --allow-unsigned"):
        resolve(ServerConfig(model=uri, cache_dir=cache))
    publish(local_store, "pico", "3", {"model.onnx": pico_onnx})  # unsigned
    with pytest.raises(SignatureError, match=r"the release is not signed \(no manifest.sig\)"):
        resolve(signed_config(model=release_uri(str(local_store), "pico", "3"), cache_dir=cache))
    assert resolve(ServerConfig(model=release_uri(str(local_store), "pico", "3"), cache_dir=cache,
                                allow_unsigned=True)).version == "3"  # fmt: skip
    alter(local_store / "models" / "pico" / "2")
    with pytest.raises(SignatureError, match=r"manifest\.json was altered after signing"):
        resolve(signed_config(model=release_uri(str(local_store), "pico", "2"), cache_dir=cache))
    assert not (cache / "pico" / "2").exists()


def test_models_name_resolves_to_the_newest_version(local_store, tmp_path, signed_config):
    for uri in (f"{local_store}/models/pico", f"file://{local_store}/models/pico/"):
        resolved = resolve(signed_config(model=uri, cache_dir=tmp_path / "cache"))
        assert (resolved.name, resolved.version) == ("pico", "2")


def test_the_cache_is_reused_while_it_matches_and_refetched_when_it_does_not(
    local_store, tmp_path, pico_onnx, signed_config
):
    cfg = signed_config(model=release_uri(str(local_store), "pico", "1"), cache_dir=tmp_path / "cache")
    cached = resolve(cfg).path
    os.utime(cached, (1, 1))
    assert resolve(cfg).path.stat().st_mtime == 1  # matching hash: not downloaded again
    cached.write_bytes(b"corrupted")
    assert sha256_file(resolve(cfg).path) == sha256_file(pico_onnx)  # mismatch: fetched and verified


def test_a_tampered_release_is_refused_and_nothing_is_cached(local_store, tmp_path, signed_config):
    (local_store / "models" / "pico" / "1" / "model.onnx").write_bytes(b"evil")
    cfg = signed_config(model=str(local_store / "models" / "pico" / "1"), cache_dir=tmp_path / "cache")
    with pytest.raises(StoreError, match="does not match the manifest"):
        resolve(cfg)
    assert not (tmp_path / "cache" / "pico" / "1").exists()


def test_cache_destinations_stay_inside_the_cache(local_store, tmp_path, signed_config):
    cache, victim = tmp_path / "cache", tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("x")
    cache.mkdir()
    (cache / "pico").symlink_to(victim)  # cache/pico/1 would be victim/1
    cfg = signed_config(model=release_uri(str(local_store), "pico", "1"), cache_dir=cache)
    with pytest.raises(InvalidInput, match="leads outside"):
        resolve(cfg)
    assert sorted(p.name for p in victim.iterdir()) == ["keep.txt"]
    assert evict_cache(cache, keep=0) == [] and (victim / "keep.txt").is_file()  # a symlink is not followed


def test_evict_cache_keeps_the_newest_versions_and_the_served_ones(tmp_path):
    cache = tmp_path / "cache"
    for i, version in enumerate(["1", "2", "3", "4"]):
        d = cache / "pico" / version
        d.mkdir(parents=True)
        (d / "model.onnx").write_bytes(b"m")
        os.utime(d, (1000 + i, 1000 + i))
    (cache / "other" / "1").mkdir(parents=True)
    (cache / "pico" / ".4.tmp").mkdir()  # a fetch in progress
    removed = evict_cache(cache, keep=2, protect=[cache / "pico" / "1" / "model.onnx"])
    assert sorted(p.name for p in removed) == ["2"]
    assert sorted(p.name for p in (cache / "pico").iterdir()) == [".4.tmp", "1", "3", "4"]
    assert (cache / "other" / "1").is_dir()
    assert sorted(p.name for p in evict_cache(cache, keep=1)) == ["1", "3"]


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
def test_what_cannot_be_served_is_named(local_store, tmp_path, model, fmt, error, message, signed_config):
    cfg = signed_config(model=model.replace("STORE", str(local_store)), format=fmt, cache_dir=tmp_path / "c")
    with pytest.raises(error) as info:
        resolve(cfg)
    assert message in str(info.value)


def test_pytorch_weights_are_refused(trained_pico):
    with pytest.raises(InvalidInput, match="serve an exported model"):
        load_model(ServerConfig(model=str(trained_pico)))


@pytest.mark.slow
def test_serve_a_signed_release_from_s3(s3, serve, pico_onnx, val_jpegs, tmp_path, release_keys):
    """The cluster path: MinIO settings from the environment, release verified, fetched, served."""
    store, signer = s3.store("s3://detpipe-test/serve"), ReleaseSigner(release_keys[0])
    publish(store, "pico", "3", {"model.onnx": pico_onnx}, signer=signer)
    cache = tmp_path / "cache"
    server = serve("--model", "s3://detpipe-test/serve/models/pico", "--cache-dir", str(cache),
                   "--release-key", str(release_keys[1]), *reload_args(tmp_path), env=s3.env)  # fmt: skip
    meta = server.get("/v1/models/pico").json()
    assert (meta["version"], meta["sha256"]) == ("3", sha256_file(pico_onnx))
    assert "source" not in meta  # no store address in answers
    assert server.post("/v1/models/pico:detect", val_jpegs[0], "image/jpeg").status == 200
    assert sorted(p.name for p in (cache / "pico" / "3").iterdir()) == [
        "manifest.json",
        "manifest.sig",
        "model.onnx",
    ]

    # hot reload from the store: a named version, then the newest, then a version that does not exist
    for version in ("4", "5"):
        variant = onnx_variant(pico_onnx, tmp_path / f"v{version}.onnx", version)
        publish(store, "pico", version, {"model.onnx": variant}, signer=signer)
    reply = server.load("pico", version="4")
    assert (reply.status, reply.json()) == (200, {"name": "pico", "version": "4"}), reply.body
    assert server.post("/v1/models/pico:detect", val_jpegs[0], "image/jpeg").headers["x-model-version"] == "4"
    reply = server.load("pico")
    assert (reply.status, reply.json()["version"]) == (200, "5"), reply.body
    assert sorted(p.name for p in (cache / "pico").iterdir()) == ["4", "5"]  # --cache-keep 2: 3 evicted
    reply = server.load("pico", version="9")
    assert (reply.status, reply.json()) == (
        404,
        {"error": "reload failed: no such model, release or version" + DETAILS},
    )
    assert "detpipe-test" not in reply.body.decode() and "127.0.0.1" not in reply.body.decode()

    # an altered release (model.onnx and manifest.json replaced together, not re-signed) is refused
    publish(
        store, "pico", "6", {"model.onnx": onnx_variant(pico_onnx, tmp_path / "v6.onnx", "6")}, signer=signer
    )
    local = tmp_path / "v6"
    for key in ("model.onnx", "manifest.json"):
        store.get_file(f"models/pico/6/{key}", local / key)
    alter(local)
    for key in ("model.onnx", "manifest.json"):
        store.put_file(f"models/pico/6/{key}", local / key)
    reply = server.load("pico", version="6")
    assert (reply.status, reply.json()) == (
        400, {"error": "reload refused: the release is not signed with this server's release key" + DETAILS}
    )  # fmt: skip
    assert server.get("/v1/models/pico").json()["version"] == "5"
    assert not (cache / "pico" / "6").exists()
    # a store URI outside the store root of --model
    assert server.load("pico", "s3://detpipe-test/other/models/pico/5").status == 403


def _serve_exit(*args: str) -> tuple[int, str]:
    res = subprocess.run([sys.executable, "-m", "detpipe.cli.main", "serve", *args], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ""


@pytest.mark.slow
def test_unsigned_or_altered_releases_are_refused_at_start(
    local_store, pico_onnx, tmp_path, release_keys, serve
):
    publish(local_store, "pico", "3", {"model.onnx": pico_onnx})  # unsigned
    unsigned = str(local_store / "models" / "pico" / "3")
    cache = ("--cache-dir", str(tmp_path / "cache"))
    key = ("--release-key", str(release_keys[1]))
    assert _serve_exit("--model", unsigned, *cache) == (
        2, f"{ERROR}{unsigned} is a release: pass --release-key PUB (or DETPIPE_RELEASE_KEY) to check its "
        "signature, or --allow-unsigned (local development only)"
    )  # fmt: skip
    assert _serve_exit("--model", unsigned, *cache, *key) == (
        2, "detpipe serve: error: the release is not signed (no manifest.sig)"
    )  # fmt: skip
    alter(local_store / "models" / "pico" / "2")
    altered = str(local_store / "models" / "pico" / "2")
    assert _serve_exit("--model", altered, *cache, *key) == (
        2, f"{ERROR}the release signature does not verify: manifest.json was altered after signing"
    )  # fmt: skip
    assert _serve_exit("--model", unsigned, *key, "--allow-unsigned") == (
        2, "detpipe serve: error: pass --release-key or --allow-unsigned, not both"
    )  # fmt: skip
    server = serve("--model", unsigned, *cache, "--allow-unsigned")  # local development only
    assert server.get("/v1/models/pico").json()["version"] == "3"
    assert "releases are served WITHOUT signature checks" in server.log.read_text()


ORIN = DeviceInfo("Orin", "8.7", "10.3.0", 2)


def _release_with_engine(store: Path, pico_onnx: Path, tmp_path: Path, keys: tuple[Path, Path]) -> str:
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
    publish(store, "pico", "7", files, signer=ReleaseSigner(keys[0]))
    return release_uri(str(store), "pico", "7")


def test_format_engine_picks_the_device_class_engine_with_its_sidecar(tmp_path, pico_onnx, release_keys):
    uri = _release_with_engine(tmp_path / "store", pico_onnx, tmp_path, release_keys)

    def cfg(device_class: str) -> ServerConfig:
        return ServerConfig(model=uri, format="engine", device_class=device_class, cache_dir=tmp_path / "c",
                            release_key=release_keys[1])  # fmt: skip

    resolved = resolve(cfg("orin-sm87-trt10.3.0"))
    assert resolved.path == tmp_path / "c" / "pico" / "7" / "engines" / "orin-sm87-trt10.3.0" / "model.engine"
    assert resolved.path.with_name("model.engine.json").is_file()
    with pytest.raises(NotFound, match=r"has no engines/h100-sm90-trt10.3.0/model.engine \(it has: "):
        resolve(cfg("h100-sm90-trt10.3.0"))


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_serving_an_engine_without_tensorrt_exits_3_with_the_reason(tmp_path, pico_onnx, release_keys):
    uri = _release_with_engine(tmp_path / "store", pico_onnx, tmp_path, release_keys)
    for extra in (["--device-class", "orin-sm87-trt10.3.0"], []):  # explicit, or this machine's GPU
        cmd = [sys.executable, "-m", "detpipe.cli.main", "serve", "--model", uri, "--format", "engine",
               *extra, "--cache-dir", str(tmp_path / "c"), "--release-key", str(release_keys[1])]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert res.returncode == 3, res.stderr
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith("detpipe serve: error: TensorRT is not installed here"), last
        assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_a_reload_from_an_unreachable_store_is_502(serve, pico_onnx, tmp_path, release_keys):
    """The store is down (its process killed): 502, retryable, naming no address; the old model serves."""
    from store_servers import MotoServer, s3_env

    from detpipe.store import S3Config, open_store

    moto = MotoServer()
    try:
        env = {**s3_env(moto.endpoint), "DETPIPE_S3_RETRIES": "1", "DETPIPE_S3_TIMEOUT": "2"}
        store = open_store("s3://detpipe-down/serve", s3=S3Config.from_env(env), create_bucket=True)
        publish(store, "pico", "1", {"model.onnx": pico_onnx}, signer=ReleaseSigner(release_keys[0]))
        server = serve("--model", "s3://detpipe-down/serve/models/pico/1", "--cache-dir", str(tmp_path / "c"),
                       "--release-key", str(release_keys[1]), *reload_args(tmp_path), env=env)  # fmt: skip
    finally:
        moto.kill()
    reply = server.load("pico", version="2")
    assert reply.status == 502, reply.body
    assert "detpipe-down" not in reply.body.decode() and moto.endpoint not in reply.body.decode()
    assert server.get("/v1/models/pico").json()["version"] == "1"
