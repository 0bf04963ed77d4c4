"""``detpipe serve --model DIR`` on a release as KServe's storage initializer lays it out.

:func:`storage_initializer` is ``kserve_storage.Storage._download_s3`` of kserve/kserve v0.20.0
(python/storage/kserve_storage/kserve_storage.py) for one ``s3://`` URI: the same boto3 prefix
listing, the same skips (keys ending in ``/``, empty objects) and the same local names (the key
less the URI's path), against the moto S3 server. The ``kserve-storage`` package itself is
not a dependency: it pulls Google, Azure and Hugging Face clients. The server then runs with the
arguments of the rendered ServingRuntime, and checks the release's signature from that directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest

from detpipe.deploy import kserve as ks
from detpipe.deploy.config import CanaryConfig
from detpipe.signing import ReleaseSigner
from detpipe.store import publish

from .test_kserve_render import _runtime_args

NAME = "detpipe-serve"  # the InferenceService: the runtime serves the model under its name


def storage_initializer(uri: str, dest: Path, env: dict[str, str]) -> Path:
    """Copy the objects under ``uri`` into ``dest`` as KServe's storage initializer does (S3)."""
    import boto3

    parsed = urlparse(uri, scheme="s3")
    bucket_name, bucket_path = parsed.netloc, parsed.path.lstrip("/")
    s3 = boto3.resource(
        "s3",
        endpoint_url=env["DETPIPE_S3_ENDPOINT"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    bucket = s3.Bucket(bucket_name)
    for obj in bucket.objects.filter(Prefix=bucket_path):
        if obj.key.endswith("/") or obj.size == 0:
            continue
        exact = bucket_path == obj.key
        target_key = obj.key.rsplit("/", 1)[-1] if exact else obj.key.removeprefix(bucket_path).lstrip("/")
        target = dest / target_key
        target.parent.mkdir(parents=True, exist_ok=True)
        bucket.download_file(obj.key, str(target))
        if exact:
            break
    return dest


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def s3_releases(s3, pico_onnx: Path, release_keys) -> dict[str, str]:
    """Signed releases pico 1 and 10 (a version that ``.../pico/1`` is a prefix of), and an unsigned 2."""
    root = f"s3://detpipe-test/kserve-{uuid.uuid4().hex[:8]}"
    store, signer = s3.store(root), ReleaseSigner(release_keys[0])
    for version in ("1", "10"):
        publish(store, "pico", version, {"model.onnx": pico_onnx}, metrics={"map50_95": 0.1}, signer=signer)
    publish(store, "pico", "2", {"model.onnx": pico_onnx})
    return {v: f"{root}/models/pico/{v}" for v in ("1", "10", "2")}


def test_the_storage_uri_takes_the_release_and_nothing_else(s3, s3_releases, tmp_path: Path) -> None:
    uri = s3_releases["1"]
    laid_out = storage_initializer(ks.storage_uri(uri), tmp_path / "models", s3.env)
    assert _files(laid_out) == {"manifest.json", "manifest.sig", "metrics.json", "model.onnx"}
    # without the trailing "/" the prefix also matches release 10, whose files land in "0/"
    bare = storage_initializer(uri, tmp_path / "bare", s3.env)
    assert {"0/model.onnx", "0/manifest.json"} <= _files(bare)


def _serve_args(model_dir: Path, gpu: bool = False) -> list[str]:
    sr = ks.serving_runtime(CanaryConfig("s3://detpipe/models/pico/1", strategy="kserve", gpu=gpu))
    return _runtime_args({"spec": sr["spec"]}, NAME, str(model_dir))


@pytest.mark.slow
def test_the_runtime_serves_the_laid_out_release_under_the_services_name(
    s3, s3_releases, serve, release_keys, val_jpegs, tmp_path: Path
) -> None:
    model_dir = storage_initializer(ks.storage_uri(s3_releases["1"]), tmp_path / "mnt-models", s3.env)
    env = {
        "DETPIPE_RELEASE_KEY": str(release_keys[1]),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }  # the pod's
    server = serve(*_serve_args(model_dir), env=env)
    assert server.get("/v2/health/ready").status == 200
    meta = server.get(f"/v2/models/{NAME}").json()
    assert (meta["name"], meta["versions"]) == (NAME, ["1"])
    reply = server.post(f"/v1/models/{NAME}:detect", val_jpegs[0], "image/jpeg")
    assert reply.status == 200 and reply.headers["x-model-version"] == "1"
    metrics = server.get("/metrics").body.decode()
    assert f'model="{NAME}"' in metrics and 'version="1"' in metrics  # the series --auto reads
    assert "WITHOUT checking" not in server.log.read_text()  # verified against the key
    assert _files(model_dir) == {"manifest.json", "manifest.sig", "metrics.json", "model.onnx"}  # untouched


def _serve_exit(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    return done.returncode, done.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_an_unsigned_or_altered_laid_out_release_is_refused(s3, s3_releases, release_keys, tmp_path) -> None:
    env = {"DETPIPE_RELEASE_KEY": str(release_keys[1]), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    unsigned = storage_initializer(ks.storage_uri(s3_releases["2"]), tmp_path / "unsigned", s3.env)
    assert _serve_exit(_serve_args(unsigned), env) == (
        2, "detpipe serve: error: the release is not signed (no manifest.sig)")  # fmt: skip
    altered = storage_initializer(ks.storage_uri(s3_releases["1"]), tmp_path / "altered", s3.env)
    (altered / "manifest.json").write_text((altered / "manifest.json").read_text().replace('"1"', '"9"', 1))
    altered_line = "the release signature does not verify: manifest.json was altered after signing"
    assert _serve_exit(_serve_args(altered), env) == (2, f"detpipe serve: error: {altered_line}")
    assert not (tmp_path / "cache" / "detpipe" / "models" / "pico").exists()  # nothing was fetched
