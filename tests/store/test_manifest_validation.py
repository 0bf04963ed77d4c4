"""Hostile manifests: every field that becomes a path, a header or a label is checked where parsed.

The attacks of the security review: a release whose manifest names itself ``../victim``
(its cache path climbed out of the cache and ``atomic_dir`` replaced the target), a version
``"1\\r\\nSet-Cookie: x"`` (it broke every later response in h11 and went into metrics
labels), and the same with absolute paths, separators and NUL.
"""

from __future__ import annotations

import json
import os

import pytest

from detpipe.errors import InvalidInput, StoreError
from detpipe.io import inside
from detpipe.store import Lineage, LocalStore, check_version, fetch_release, publish, read_manifest
from detpipe.store.manifest import NotARelease, parse_release_uri, release_prefix

HOSTILE = ["../victim", "..", "/etc", "a/b", "a\\b", "a\x00b", "1\r\nSet-Cookie: x", "1\n", " 1", ""]


@pytest.fixture
def release(tmp_path):
    """A valid published release in a local store; tests rewrite its manifest."""
    weights = tmp_path / "w.pt"
    weights.write_bytes(os.urandom(1000))
    store = LocalStore(tmp_path / "store")
    publish(store, "m", "1.0.0", {"weights.pt": weights}, lineage=Lineage(code_version="t"))
    return store.child("models/m/1.0.0")


def _rewrite(rel, **fields):
    doc = json.loads(rel.get_bytes("manifest.json"))
    doc.update(fields)
    rel.put_bytes("manifest.json", json.dumps(doc).encode())


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("field", ["name", "version"])
def test_hostile_name_or_version_is_refused_when_parsed(release, tmp_path, field, value):
    _rewrite(release, **{field: value})
    with pytest.raises(
        StoreError,
        match=f"malformed release manifest: invalid {'model name' if field == 'name' else 'version'}",
    ):
        read_manifest(release)
    with pytest.raises(StoreError, match="malformed release manifest"):
        fetch_release(release, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "path",
    ["../weights.pt", "/weights.pt", "engines/../../x/model.engine", "weights.pt\x00", "bench/a\r\nb.json"],
)
def test_hostile_object_path_is_refused(release, path):
    doc = json.loads(release.get_bytes("manifest.json"))
    doc["objects"][0]["path"] = path
    release.put_bytes("manifest.json", json.dumps(doc).encode())
    with pytest.raises(StoreError, match="not part of the release layout"):
        read_manifest(release)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"created": "2026-01-01T00:00:00Z\r\nX: y"}, "not an ISO 8601 UTC time"),
        ({"created": 7}, "not an ISO 8601 UTC time"),
        ({"name": ["m"]}, "invalid model name"),
        ({"version": 1}, "invalid version"),
    ],
)
def test_other_malformed_fields(release, fields, message):
    _rewrite(release, **fields)
    with pytest.raises(StoreError, match=message):
        read_manifest(release)


def test_an_object_listed_twice_is_refused(release):
    doc = json.loads(release.get_bytes("manifest.json"))
    doc["objects"].append(doc["objects"][0])
    release.put_bytes("manifest.json", json.dumps(doc).encode())
    with pytest.raises(StoreError, match="listed twice"):
        read_manifest(release)


@pytest.mark.parametrize(
    "version", ["1", "1.2", "1.2.3", "v2", "0.1.0-rc.1", "1.0.0+build.5", "1.0.0-rc.1+b5", "sha-8013c82d0716"]
)
def test_versions_accepted(version):
    assert check_version(version) == version
    assert release_prefix("m", version) == f"models/m/{version}"


@pytest.mark.parametrize(
    "version", [*HOSTILE, "01", "1.2.3.4", "latest", "sha-XYZ", "sha-12", "1.0.0-", "x" * 200]
)
def test_versions_refused(version):
    with pytest.raises(InvalidInput, match="invalid version"):
        check_version(version)


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        ("s3://detpipe/models/yolo12n-coco/1.2.0", ("s3://detpipe", "yolo12n-coco", "1.2.0")),
        ("s3://detpipe/models/yolo12n-coco/", ("s3://detpipe", "yolo12n-coco", None)),
        ("file:///srv/store/models/m/sha-8013c82d0716", ("file:///srv/store", "m", "sha-8013c82d0716")),
        ("/srv/store/models/m", ("/srv/store", "m", None)),
        ("models/m/3", (".", "m", "3")),
    ],
)
def test_release_uris_parse_to_store_name_and_version(uri, parsed):
    assert parse_release_uri(uri) == parsed
    store, name, version = parsed
    if version is not None and store != ".":
        assert f"{store}/{release_prefix(name, version)}" == uri.rstrip("/")


@pytest.mark.parametrize(
    ("uri", "error", "message"),
    [
        ("runs/model.onnx", NotARelease, "not a release"),
        ("s3://detpipe/releases/m/1", NotARelease, "not a release"),
        ("s3://detpipe/models/m/model.onnx", InvalidInput, "invalid version"),
        ("s3://detpipe/models/m/v 2", InvalidInput, "invalid version"),
        ("s3://detpipe/models/-m/1", InvalidInput, "invalid model name"),
        ("s3://detpipe/models/m\r\n", InvalidInput, "invalid model name"),
    ],
)
def test_release_uris_refused_where_parsed(uri, error, message):
    with pytest.raises(error, match=message):
        parse_release_uri(uri)


def test_inside_keeps_destinations_in_their_root(tmp_path):
    root = tmp_path / "cache"
    root.mkdir()
    assert inside(root, "m", "1.0.0") == (root / "m" / "1.0.0").resolve()
    for parts in [("..", "x"), ("m", ".."), ("/abs",), ("a/b",), ("a\\b",), ("a\x00",), ("a\r\n",), ("",)]:
        with pytest.raises(InvalidInput, match="not a plain file or directory name"):
            inside(root, *parts)
    (root / "link").symlink_to(tmp_path)  # a symlink that leads out of the root
    with pytest.raises(InvalidInput, match="leads outside"):
        inside(root, "link", "victim")
