"""Releases: publish, list, fetch with verification; the same tests on both backends."""

from __future__ import annotations

import json
import os
import re

import pytest

from detpipe.errors import InvalidInput, NotFound, StoreError
from detpipe.io import sha256_file
from detpipe.store import (
    Lineage,
    LocalStore,
    fetch_release,
    latest_version,
    list_releases,
    publish,
    read_manifest,
    release_uri,
    version_key,
)


@pytest.fixture
def artifacts(tmp_path):
    """Small stand-ins for a release's files."""
    d = tmp_path / "artifacts"
    d.mkdir()
    files = {
        "weights.pt": os.urandom(300_000),
        "model.onnx": os.urandom(200_000),
        "bench/orin-nano.json": b'{"p50_ms": 7.5}\n',
        "engines/orin-nano/model.engine": os.urandom(100_000),
        "engines/orin-nano/model.engine.json": b'{"precision": "fp16"}\n',
    }
    out = {}
    for rel, data in files.items():
        path = d / rel.replace("/", "__")
        path.write_bytes(data)
        out[rel] = path
    subset = d / "train2017_10_p.txt"
    subset.write_text("./images/train2017/000000000009.jpg\n")
    out["_subset"] = subset
    return out


def _files(artifacts):
    return {k: v for k, v in artifacts.items() if not k.startswith("_")}


def _lineage(artifacts):
    return Lineage.for_subset(
        artifacts["_subset"],
        training_config={"epochs": 3, "imgsz": 320, "seed": 0},
        parent_weights="yolo11n.yaml",
        code_version="v0.1.0-3-gabcdef0",
    )


def test_publish_writes_objects_and_manifest(store, artifacts):
    metrics = {"mAP50-95": 0.372, "mAP50": 0.55}
    manifest = publish(
        store, "yolo11n-coco", "1.0.0", _files(artifacts), metrics=metrics, lineage=_lineage(artifacts)
    )

    prefix = "models/yolo11n-coco/1.0.0/"
    assert store.list(prefix) == [
        prefix + p
        for p in [
            "bench/orin-nano.json",
            "engines/orin-nano/model.engine",
            "engines/orin-nano/model.engine.json",
            "manifest.json",
            "metrics.json",
            "model.onnx",
            "weights.pt",
        ]
    ]
    metrics_blob = store.get_bytes(prefix + "metrics.json")
    assert json.loads(metrics_blob) == metrics
    expected_objects = sorted(
        [(rel, path.stat().st_size, sha256_file(path)) for rel, path in _files(artifacts).items()]
        + [("metrics.json", len(metrics_blob), store.stat(prefix + "metrics.json").sha256)]
    )
    doc = json.loads(store.get_bytes(prefix + "manifest.json"))
    assert [(o["path"], o["size"], o["sha256"]) for o in doc["objects"]] == expected_objects
    assert doc["schema"] == "detpipe.release/1"
    assert (doc["name"], doc["version"], doc["metrics"]) == ("yolo11n-coco", "1.0.0", metrics)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["created"])
    assert doc["lineage"] == {
        "dataset_subset": "train2017_10_p.txt",
        "dataset_subset_sha256": sha256_file(artifacts["_subset"]),
        "training_config": {"epochs": 3, "imgsz": 320, "seed": 0},
        "parent_weights": "yolo11n.yaml",
        "code_version": "v0.1.0-3-gabcdef0",
        "extra": {},
    }
    # every object carries its sha256 (S3: object metadata; local: hashed)
    for rel, _size, digest in expected_objects:
        assert store.stat(prefix + rel).sha256 == digest
    assert read_manifest(store.child(prefix.rstrip("/"))) == manifest


def test_code_version_is_filled_in(store, artifacts, monkeypatch):
    monkeypatch.setenv("DETPIPE_CODE_VERSION", "ci-build-42")
    manifest = publish(store, "m", "1", {"weights.pt": artifacts["weights.pt"]})
    assert manifest.lineage["code_version"] == "ci-build-42"
    monkeypatch.delenv("DETPIPE_CODE_VERSION")
    manifest = publish(store, "m", "2", {"weights.pt": artifacts["weights.pt"]})
    assert manifest.lineage["code_version"]  # git describe here, else "detpipe <version>"


def test_fetch_downloads_and_verifies(store, store_env, artifacts, tmp_path):
    manifest = publish(
        store, "m", "1.0.0", _files(artifacts), metrics={"mAP50-95": 0.3}, lineage=_lineage(artifacts)
    )
    dest = tmp_path / "fetched"
    got = fetch_release(
        release_uri(store, "m", "1.0.0"),
        dest,
    )
    assert got == manifest
    for rel, path in _files(artifacts).items():
        assert (dest / rel).read_bytes() == path.read_bytes()
    assert json.loads((dest / "metrics.json").read_text()) == {"mAP50-95": 0.3}
    assert (dest / "manifest.json").read_bytes() == store.get_bytes("models/m/1.0.0/manifest.json")
    with pytest.raises(InvalidInput, match="already exists"):
        fetch_release(store.child("models/m/1.0.0"), dest)
    fetch_release(store.child("models/m/1.0.0"), dest, overwrite=True)


def test_fetch_only_some_objects(store, artifacts, tmp_path):
    publish(store, "m", "1.0.0", _files(artifacts), lineage=_lineage(artifacts))
    dest = tmp_path / "partial"
    fetch_release(store.child("models/m/1.0.0"), dest, only=["weights.pt"])
    assert sorted(p.name for p in dest.iterdir()) == ["manifest.json", "weights.pt"]
    assert (dest / "weights.pt").read_bytes() == artifacts["weights.pt"].read_bytes()
    with pytest.raises(NotFound, match=r"the release has no model\.plan \(it has: "):
        fetch_release(store.child("models/m/1.0.0"), tmp_path / "none", only=["weights.pt", "model.plan"])
    assert not (tmp_path / "none").exists()


def test_fetch_refuses_a_tampered_object(store, artifacts, tmp_path):
    publish(store, "m", "1.0.0", _files(artifacts), lineage=_lineage(artifacts))
    # someone with write access replaces the engine (with consistent metadata, so only the
    # manifest can tell)
    store.put_bytes("models/m/1.0.0/engines/orin-nano/model.engine", b"not the engine")
    dest = tmp_path / "out" / "release"
    with pytest.raises(StoreError) as e:
        fetch_release(store.child("models/m/1.0.0"), dest)
    assert re.fullmatch(
        re.escape(f"{store.uri}/models/m/1.0.0/engines/orin-nano/model.engine: sha256 ")
        + r"[0-9a-f]{64} \(14 bytes\) does not match the manifest \([0-9a-f]{64}, 100000 bytes\): "
        r"corrupt or tampered; refusing",
        str(e.value),
    )
    assert not dest.exists()
    assert list((tmp_path / "out").iterdir()) == []  # no half-downloaded release left


def test_fetch_refuses_a_missing_object_and_a_moved_manifest(store, store_env, artifacts, tmp_path):
    publish(store, "m", "1.0.0", _files(artifacts), lineage=_lineage(artifacts))
    store.delete("models/m/1.0.0/model.onnx")
    with pytest.raises(StoreError, match=r"model\.onnx: listed in the manifest but missing; refusing"):
        fetch_release(store.child("models/m/1.0.0"), tmp_path / "a")
    # a manifest copied under another version is not that version
    store.put_bytes("models/m/9.9.9/manifest.json", store.get_bytes("models/m/1.0.0/manifest.json"))
    with pytest.raises(StoreError, match=r"manifest is for m 1\.0\.0, not m 9\.9\.9; refusing"):
        fetch_release(
            release_uri(store, "m", "9.9.9"),
            tmp_path / "b",
        )
    store.put_bytes("models/m/8/manifest.json", b"{not json")
    with pytest.raises(StoreError, match="malformed release manifest"):
        fetch_release(store.child("models/m/8"), tmp_path / "c")


def test_releases_without_manifest_do_not_exist(store, artifacts, tmp_path):
    for version in ["0.1.0", "1.9.0", "1.10.0", "1.10.0-rc1", "v1.2"]:
        publish(
            store, "m", version, {"weights.pt": artifacts["weights.pt"]}, lineage=Lineage(code_version="t")
        )
    store.put_bytes("models/m/2.0.0/weights.pt", b"a publish that never finished")
    publish(
        store, "other", "5.0.0", {"weights.pt": artifacts["weights.pt"]}, lineage=Lineage(code_version="t")
    )

    assert list_releases(store, "m") == ["0.1.0", "v1.2", "1.9.0", "1.10.0-rc1", "1.10.0"]
    assert latest_version(store, "m") == "1.10.0"
    with pytest.raises(NotFound, match=r"manifest\.json is missing"):
        fetch_release(store.child("models/m/2.0.0"), tmp_path / "x")
    with pytest.raises(NotFound, match=f"no releases of 'nothing' in {re.escape(store.uri)}"):
        latest_version(store, "nothing")
    assert list_releases(store, "nothing") == []


def test_republish_is_refused_unless_forced(store, artifacts, tmp_path):
    publish(store, "m", "1.0.0", _files(artifacts), lineage=Lineage(code_version="t"), signer=_Signer())
    with pytest.raises(
        InvalidInput, match=r"release m 1\.0\.0 already exists at .*; pass force=True to replace it"
    ):
        publish(store, "m", "1.0.0", {"weights.pt": artifacts["model.onnx"]})
    assert store.stat("models/m/1.0.0/weights.pt").sha256 == sha256_file(artifacts["weights.pt"])  # unchanged

    manifest = publish(
        store,
        "m",
        "1.0.0",
        {"weights.pt": artifacts["model.onnx"]},
        force=True,
        lineage=Lineage(code_version="t"),
    )
    assert [(o.path, o.sha256) for o in manifest.objects] == [
        ("weights.pt", sha256_file(artifacts["model.onnx"]))
    ]
    # objects of the old release are gone, and so is its (now wrong) signature
    assert store.list("models/m/1.0.0/") == ["models/m/1.0.0/manifest.json", "models/m/1.0.0/weights.pt"]
    fetch_release(store.child("models/m/1.0.0"), tmp_path / "d")
    assert (tmp_path / "d" / "weights.pt").read_bytes() == artifacts["model.onnx"].read_bytes()


def test_failed_local_publish_leaves_no_release(tmp_path, artifacts):
    store = LocalStore(tmp_path / "store")
    # a file where the engines/ directory must go: the engine upload fails after others succeeded
    blocker = tmp_path / "store" / "models" / "m" / "1.0.0" / "engines"
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"")
    with pytest.raises(StoreError, match=r"write file://.*/models/m/1\.0\.0/engines/orin-nano/model\.engine"):
        publish(store, "m", "1.0.0", _files(artifacts), lineage=Lineage(code_version="t"))
    assert store.exists("models/m/1.0.0/bench/orin-nano.json")  # uploaded before the failure
    assert not store.exists("models/m/1.0.0/manifest.json")
    assert list_releases(store, "m") == []


class _Signer:
    def sign(self, manifest: bytes) -> bytes:
        return b"sig:" + manifest[:16]


class _Verifier:
    def __init__(self) -> None:
        self.seen: tuple[bytes, bytes] | None = None

    def verify(self, manifest: bytes, signature: bytes | None) -> None:
        self.seen = (manifest, signature)
        if signature is None:
            raise StoreError("not signed")
        if signature != b"sig:" + manifest[:16]:
            raise StoreError("bad signature")


def test_signing_hook(store, artifacts, tmp_path):
    publish(
        store,
        "m",
        "1",
        {"weights.pt": artifacts["weights.pt"]},
        signer=_Signer(),
        lineage=Lineage(code_version="t"),
    )
    blob = store.get_bytes("models/m/1/manifest.json")
    assert store.get_bytes("models/m/1/manifest.sig") == b"sig:" + blob[:16]
    verifier = _Verifier()
    fetch_release(store.child("models/m/1"), tmp_path / "a", verifier=verifier)
    assert verifier.seen == (blob, b"sig:" + blob[:16])
    assert (tmp_path / "a" / "manifest.sig").read_bytes() == b"sig:" + blob[:16]

    store.put_bytes("models/m/1/manifest.sig", b"forged")
    with pytest.raises(StoreError, match="bad signature"):
        fetch_release(store.child("models/m/1"), tmp_path / "b", verifier=verifier)
    publish(store, "m", "2", {"weights.pt": artifacts["weights.pt"]}, lineage=Lineage(code_version="t"))
    with pytest.raises(StoreError, match="not signed"):
        fetch_release(store.child("models/m/2"), tmp_path / "c", verifier=verifier)


@pytest.mark.parametrize(
    ("name", "version", "files", "metrics", "message"),
    [
        ("m", "1", {"notes.txt": "x"}, None, "'notes.txt' is not part of the release layout"),
        ("m", "1", {"engines/Orin/model.engine": "x"}, None, "not part of the release layout"),
        ("m", "1", {"manifest.json": "x"}, None, "manifest.json is written by publish itself"),
        ("m/x", "1", {"weights.pt": "x"}, None, "invalid model name 'm/x'"),
        ("m", "../1", {"weights.pt": "x"}, None, "invalid version '../1'"),
        ("m", "1", {"weights.pt": "missing.pt"}, None, "weights.pt: missing.pt is not a file"),
        ("m", "1", {}, None, "nothing to publish"),
        ("m", "1", {}, {"mAP": float("nan")}, "metrics must be JSON values: non-finite values for mAP"),
    ],
)
def test_publish_refuses_bad_input(store, name, version, files, metrics, message):
    with pytest.raises(InvalidInput, match=re.escape(message)):
        publish(store, name, version, files, metrics=metrics, lineage=Lineage(code_version="t"))
    assert store.list() == []


def test_version_order():
    versions = ["1.10.0", "v2", "1.9.2", "1.0.0", "1.0.0-rc2", "1.0.0-rc10", "exp10", "exp2", "20240101"]
    assert sorted(versions, key=version_key) == [
        "exp2",
        "exp10",
        "1.0.0-rc2",
        "1.0.0-rc10",
        "1.0.0",
        "1.9.2",
        "1.10.0",
        "v2",
        "20240101",
    ]
