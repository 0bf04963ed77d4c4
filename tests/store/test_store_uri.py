"""Store URIs and keys: one parser, exact results, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from detpipe.errors import InvalidInput
from detpipe.store import LocalStore, S3Store, open_store, parse_uri
from detpipe.store.uri import StoreURI, check_key, join_key


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://detpipe", StoreURI("s3", "detpipe", "")),
        ("s3://detpipe/", StoreURI("s3", "detpipe", "")),
        ("s3://detpipe/prod/models/", StoreURI("s3", "detpipe", "prod/models")),
        ("S3://my.bucket-1/a", StoreURI("s3", "my.bucket-1", "a")),
        ("file:///data/store", StoreURI("file", "", "/data/store")),
        ("file://localhost/data/store", StoreURI("file", "", "/data/store")),
        ("runs/store", StoreURI("file", "", "runs/store")),
        ("/abs/store", StoreURI("file", "", "/abs/store")),
    ],
)
def test_parse_uri(uri, expected):
    assert parse_uri(uri) == expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "empty store URI"),
        ("gs://bucket/x", "unsupported store URI scheme 'gs'"),
        ("s3://", "invalid bucket name ''"),
        ("s3://ab", "invalid bucket name 'ab'"),
        ("s3://Upper", "invalid bucket name 'Upper'"),
        ("s3://bucket/a//b", "empty, '.' or '..' path segment"),
        ("s3://bucket/../x", "empty, '.' or '..' path segment"),
        ("file://", "file:// URI without a path"),
    ],
)
def test_parse_uri_refuses(uri, message):
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_uri(uri)


def test_uri_join_and_str(tmp_path):
    assert parse_uri("s3://b-1/p").join("models/a/1") == "s3://b-1/p/models/a/1"
    assert parse_uri("s3://b-1").join("") == "s3://b-1"
    assert str(parse_uri(tmp_path)) == f"file://{tmp_path.as_posix()}"


@pytest.mark.parametrize("key", ["", "/abs", "a/", "a//b", "./a", "a/../b", "a\\b", "a\x00b", "x" * 1025])
def test_check_key_refuses(key):
    with pytest.raises(InvalidInput, match="invalid object key"):
        check_key(key)


def test_check_key_and_join():
    assert check_key("models/a/1.0.0/engines/orin-nano/model.engine.json").endswith(".json")
    assert join_key("", "a/b", "", "c/") == "a/b/c"


def test_open_store_picks_backend(tmp_path, monkeypatch):
    local = open_store(f"file://{tmp_path}/s")
    assert isinstance(local, LocalStore)
    assert local.root == tmp_path / "s"
    assert isinstance(open_store(Path(tmp_path)), LocalStore)
    monkeypatch.setenv("DETPIPE_S3_ENDPOINT", "http://127.0.0.1:1")
    s3 = open_store("s3://detpipe/prefix")  # no request is made until an operation
    assert isinstance(s3, S3Store)
    assert (s3.uri, s3.config.endpoint, s3.config.secure) == ("s3://detpipe/prefix", "127.0.0.1:1", False)
