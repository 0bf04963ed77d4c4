"""S3 backend against real moto server processes: multipart, credentials, missing bucket, outages."""

from __future__ import annotations

import io
import logging
import os
import threading
import time

import pytest
from minio import Minio
from store_servers import ACCESS_KEY, MIB, SECRET_KEY, s3_config

from detpipe.errors import NotFound, StoreError
from detpipe.io import sha256_file
from detpipe.store import (
    Lineage,
    RetryPolicy,
    S3Config,
    fetch_release,
    latest_version,
    list_releases,
    open_store,
    publish,
    read_manifest,
)


@pytest.fixture
def big_file(tmp_path):
    """11 MiB: three parts at the 5 MiB test part size."""
    path = tmp_path / "big.pt"
    path.write_bytes(os.urandom(11 * MIB))
    return path


def test_multipart_upload_above_part_size(moto_server, bucket, big_file, tmp_path):
    store = open_store(f"s3://{bucket}", s3=s3_config(moto_server.endpoint))
    info = store.put_file("models/m/1/weights.pt", big_file)
    assert info.etag is not None and info.etag.endswith("-3")  # 5 + 5 + 1 MiB
    assert len(moto_server.requests(rf"PUT /{bucket}/models/m/1/weights.pt\?partNumber=\d")) == 3

    stat = store.stat("models/m/1/weights.pt")
    assert (stat.size, stat.sha256, stat.etag) == (11 * MIB, sha256_file(big_file), info.etag)
    got = store.get_file("models/m/1/weights.pt", tmp_path / "back.pt")
    assert got.sha256 == sha256_file(big_file)
    assert (tmp_path / "back.pt").read_bytes() == big_file.read_bytes()

    small = store.put_bytes("models/m/1/metrics.json", b"{}")
    assert "-" not in (small.etag or "-")  # a single PUT below the part size


def test_sha256_metadata_is_visible_to_any_client(moto_server, bucket):
    store = open_store(f"s3://{bucket}/p", s3=s3_config(moto_server.endpoint))
    info = store.put_bytes("k.bin", b"payload")
    raw = Minio(moto_server.endpoint, ACCESS_KEY, SECRET_KEY, secure=False, region="us-east-1")
    assert raw.stat_object(bucket, "p/k.bin").metadata["x-amz-meta-sha256"] == info.sha256


def test_download_refuses_content_that_does_not_match_its_metadata(moto_server, bucket, tmp_path):
    raw = Minio(moto_server.endpoint, ACCESS_KEY, SECRET_KEY, secure=False, region="us-east-1")
    lie = "0" * 64
    raw.put_object(bucket, "k.bin", io.BytesIO(b"evil"), 4, metadata={"sha256": lie})
    store = open_store(f"s3://{bucket}", s3=s3_config(moto_server.endpoint))
    dest = tmp_path / "k.bin"
    with pytest.raises(StoreError, match=f"does not match its recorded sha256 {lie}"):
        store.get_file("k.bin", dest)
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(StoreError, match="does not match its recorded sha256"):
        store.get_bytes("k.bin")


def test_missing_bucket_is_a_clear_error(moto_server, tmp_path):
    store = open_store("s3://no-such-bucket-here", s3=s3_config(moto_server.endpoint))
    expected = (
        f"bucket 'no-such-bucket-here' does not exist at {moto_server.endpoint} "
        "(create it, or set DETPIPE_S3_CREATE_BUCKET=true / pass create_bucket=True)"
    )
    for op in (
        lambda: store.put_bytes("a.txt", b"x"),
        lambda: store.get_bytes("a.txt"),
        lambda: store.stat("a.txt"),
        lambda: store.exists("a.txt"),  # not a silent False
        lambda: store.list(),
        lambda: list_releases(store, "m"),
    ):
        with pytest.raises(StoreError) as e:
            op()
        assert str(e.value) == expected


def test_create_bucket_for_the_embedded_minio(moto_server):
    name = "created-by-detpipe"
    store = open_store(f"s3://{name}", s3=s3_config(moto_server.endpoint), create_bucket=True)
    store.put_bytes("a.txt", b"x")
    assert store.get_bytes("a.txt") == b"x"
    open_store(f"s3://{name}", s3=s3_config(moto_server.endpoint), create_bucket=True)  # exists: fine


# -- credentials (moto with IAM authentication on) ---------------------------------------------


def _env_store(server, bucket, env):
    cfg = S3Config.from_env(
        {"DETPIPE_S3_ENDPOINT": f"http://{server.endpoint}", "AWS_REGION": "us-east-1", **env}
    )
    return open_store(f"s3://{bucket}", s3=cfg)


def test_valid_credentials_from_a_mounted_secret_dir(moto_auth, tmp_path):
    secret_dir = tmp_path / "detpipe-minio"
    secret_dir.mkdir()
    (secret_dir / "accesskey").write_text(moto_auth.access_key + "\n")
    (secret_dir / "secretkey").write_text(moto_auth.secret_key + "\n")
    store = _env_store(moto_auth.server, "authed", {"DETPIPE_S3_SECRET_DIR": str(secret_dir)})
    store.ensure_bucket(create=True)
    store.put_bytes("a.txt", b"signed")
    assert store.get_bytes("a.txt") == b"signed"


# Anonymous requests are not covered here: moto's IAM mode answers an unsigned request with
# HTTP 500 (it expects an Authorization header), where MinIO and S3 answer 403 AccessDenied.
@pytest.mark.parametrize("who", ["wrong-secret", "unknown-key", "no-permission"])
def test_bad_credentials_are_a_clear_error_without_the_secret(moto_auth, caplog, who):
    caplog.set_level(logging.DEBUG)
    ok = _env_store(
        moto_auth.server,
        "guarded",
        {"AWS_ACCESS_KEY_ID": moto_auth.access_key, "AWS_SECRET_ACCESS_KEY": moto_auth.secret_key},
    )
    ok.ensure_bucket(create=True)
    ok.put_bytes(f"{who}.txt", b"x")
    access, secret = {
        "wrong-secret": (moto_auth.access_key, "not-the-secret-" + moto_auth.secret_key[:8]),
        "unknown-key": ("AKIAUNKNOWNKEY000000", "some-secret-value-123"),
        "no-permission": (moto_auth.denied_access_key, moto_auth.denied_secret_key),
    }[who]
    store = _env_store(moto_auth.server, "guarded", {"MINIO_ACCESS_KEY": access, "MINIO_SECRET_KEY": secret})
    for op in (
        lambda: store.put_bytes(f"{who}-new.txt", b"y"),
        lambda: store.get_bytes(f"{who}.txt"),
        lambda: store.stat(f"{who}.txt"),
    ):
        with pytest.raises(StoreError) as e:
            op()
        assert str(e.value) == (
            "access denied for s3://guarded: check the credentials from MINIO_ACCESS_KEY/MINIO_SECRET_KEY "
            "(and that they may use this bucket)"
        )
        assert secret not in repr(e.value)
        assert e.value.__cause__ is None  # the client's error (request details) is not chained
    # one request per operation: auth errors are not retried
    assert len(moto_auth.server.wait_requests(rf'"[A-Z]+ /guarded/{who}(-new)?\.txt HTTP.* 403', 3)) == 3
    assert not [r for r in caplog.records if r.name == "detpipe.store.retry"]
    assert all(secret not in r.getMessage() for r in caplog.records)


# -- outages -----------------------------------------------------------------------------------


def _release_files(tmp_path, big_file):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(os.urandom(MIB))  # uploaded first (sorted order), weights.pt next
    return {"weights.pt": big_file, "model.onnx": onnx}


def test_server_killed_mid_upload_gives_up_and_writes_no_manifest(start_moto, tmp_path, big_file, caplog):
    server = start_moto()
    bucket = server.make_bucket()
    store = open_store(f"s3://{bucket}", s3=s3_config(server.endpoint))
    killed = threading.Event()

    def kill(_line):
        if not killed.is_set():
            killed.set()
            server.kill()

    server.on_request(r"PUT /.*weights\.pt\?partNumber=", kill)  # first part stored, the rest in flight
    with pytest.raises(StoreError) as e:
        publish(store, "m", "1.0.0", _release_files(tmp_path, big_file), metrics={"mAP50-95": 0.5})
    assert killed.is_set()
    assert str(e.value).startswith(
        f"upload s3://{bucket}/models/m/1.0.0/weights.pt failed after 3 attempts: "
    )
    assert str(e.value).endswith(f"(endpoint {server.endpoint})")
    assert SECRET_KEY not in str(e.value)
    retries = [r.getMessage() for r in caplog.records if r.name == "detpipe.store.retry"]
    assert len(retries) == 2  # attempts 2 and 3 were made, with backoff
    assert not server.requests(r"PUT /.*manifest\.json")  # the manifest never reached the server


def test_network_cut_mid_upload_leaves_no_visible_release(
    moto_server, bucket, start_proxy, tmp_path, big_file
):
    proxy = start_proxy(moto_server.port)
    via_proxy = open_store(f"s3://{bucket}", s3=s3_config(proxy.endpoint))
    direct = open_store(f"s3://{bucket}", s3=s3_config(moto_server.endpoint))
    cut = threading.Event()

    def cut_network(_line):
        if not cut.is_set():
            cut.set()
            proxy.kill()

    moto_server.on_request(rf"PUT /{bucket}/models/m/1\.0\.0/weights\.pt\?partNumber=", cut_network)
    files = _release_files(tmp_path, big_file)
    with pytest.raises(StoreError, match=r"failed after 3 attempts: connection (refused|reset|aborted)"):
        publish(via_proxy, "m", "1.0.0", files, metrics={"mAP50-95": 0.5})
    assert cut.is_set()

    # The server kept its state; readers see no release because there is no manifest.
    assert "models/m/1.0.0/manifest.json" not in direct.list("models/")
    assert list_releases(direct, "m") == []
    with pytest.raises(NotFound, match="no releases of 'm'"):
        latest_version(direct, "m")
    with pytest.raises(NotFound, match=r"manifest\.json is missing"):
        fetch_release(direct.child("models/m/1.0.0"), tmp_path / "dest")
    assert not (tmp_path / "dest").exists()

    # Publishing again once the network is back works without force: there was no release.
    manifest = publish(
        direct, "m", "1.0.0", files, metrics={"mAP50-95": 0.5}, lineage=Lineage(code_version="t")
    )
    assert read_manifest(direct.child("models/m/1.0.0")) == manifest
    assert direct.list("models/m/1.0.0/") == [
        "models/m/1.0.0/manifest.json",
        "models/m/1.0.0/metrics.json",
        "models/m/1.0.0/model.onnx",
        "models/m/1.0.0/weights.pt",
    ]


def test_short_outage_is_ridden_out_by_retries(moto_server, bucket, start_proxy, tmp_path, big_file, caplog):
    proxy = start_proxy(moto_server.port)
    cfg = s3_config(proxy.endpoint, retry=RetryPolicy(attempts=6, base_delay_s=0.2, max_delay_s=1.0))
    store = open_store(f"s3://{bucket}", s3=cfg)
    restarted = threading.Event()

    def blip(_line):
        if restarted.is_set() or getattr(blip, "fired", False):
            return
        blip.fired = True  # type: ignore[attr-defined]
        proxy.kill()

        def restart():
            time.sleep(0.3)
            start_proxy(moto_server.port, port=proxy.port)
            restarted.set()

        threading.Thread(target=restart, daemon=True).start()

    moto_server.on_request(rf"PUT /{bucket}/models/m/2\.0\.0/weights\.pt\?partNumber=", blip)
    files = _release_files(tmp_path, big_file)
    manifest = publish(store, "m", "2.0.0", files, lineage=Lineage(code_version="t"))
    assert restarted.is_set()
    assert [r for r in caplog.records if r.name == "detpipe.store.retry"]  # it did retry
    assert [(o.path, o.sha256) for o in manifest.objects] == [
        ("model.onnx", sha256_file(files["model.onnx"])),
        ("weights.pt", sha256_file(big_file)),
    ]
    assert store.stat("models/m/2.0.0/weights.pt").etag.endswith("-3")
    fetch_release(store.child("models/m/2.0.0"), tmp_path / "dest")
    assert (tmp_path / "dest" / "weights.pt").read_bytes() == big_file.read_bytes()
