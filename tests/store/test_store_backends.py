"""The Store interface, the same tests against the local filesystem and a real S3 server."""

from __future__ import annotations

import hashlib
import os

import pytest

from detpipe.errors import InvalidInput, NotFound
from detpipe.io import sha256_file
from detpipe.store import LocalStore


def test_bytes_round_trip(store):
    info = store.put_bytes("notes/a.txt", b"hello")
    assert (info.key, info.size, info.sha256) == ("notes/a.txt", 5, hashlib.sha256(b"hello").hexdigest())
    assert store.get_bytes("notes/a.txt") == b"hello"
    store.put_bytes("notes/a.txt", b"replaced")
    assert store.get_bytes("notes/a.txt") == b"replaced"


def test_file_round_trip_with_hash(store, tmp_path):
    src = tmp_path / "weights.pt"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    digest = sha256_file(src)
    put = store.put_file("models/m/1/weights.pt", src)
    assert (put.size, put.sha256) == (src.stat().st_size, digest)

    stat = store.stat("models/m/1/weights.pt")
    assert (stat.key, stat.size, stat.sha256) == ("models/m/1/weights.pt", src.stat().st_size, digest)

    dest = tmp_path / "out" / "w.pt"
    got = store.get_file("models/m/1/weights.pt", dest)
    assert (got.size, got.sha256) == (src.stat().st_size, digest)
    assert dest.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["w.pt"]  # no temp file left


def test_exists_list_delete(store):
    for key in ["a/b.txt", "a/c/d.txt", "ab.txt", "z.txt"]:
        store.put_bytes(key, key.encode())
    assert store.exists("a/b.txt")
    assert not store.exists("a/missing.txt")
    assert not store.exists("a")  # a "directory" is not an object
    assert store.list() == ["a/b.txt", "a/c/d.txt", "ab.txt", "z.txt"]
    assert store.list("a/") == ["a/b.txt", "a/c/d.txt"]
    assert store.list("a") == ["a/b.txt", "a/c/d.txt", "ab.txt"]
    assert store.list("a/c/d") == ["a/c/d.txt"]
    assert store.list("nothing/") == []

    store.delete("a/c/d.txt")
    store.delete("a/c/d.txt")  # deleting a missing key is fine
    assert not store.exists("a/c/d.txt")
    assert store.list("a/") == ["a/b.txt"]


def test_missing_object_is_not_found(store, tmp_path):
    with pytest.raises(NotFound) as e:
        store.get_bytes("models/none/1/weights.pt")
    assert str(e.value) == f"{store.uri}/models/none/1/weights.pt: no such object"
    with pytest.raises(NotFound):
        store.stat("models/none/1/weights.pt")
    dest = tmp_path / "keep.pt"
    dest.write_bytes(b"old")
    with pytest.raises(NotFound):
        store.get_file("models/none/1/weights.pt", dest)
    assert dest.read_bytes() == b"old"  # untouched


def test_child_store_shares_keys(store):
    child = store.child("models/m")
    child.put_bytes("1/weights.pt", b"w")
    assert child.uri == f"{store.uri}/models/m"
    assert store.list() == ["models/m/1/weights.pt"]
    assert child.list() == ["1/weights.pt"]
    assert store.get_bytes("models/m/1/weights.pt") == b"w"


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", "a/./b"])
def test_bad_keys_are_refused(store, key):
    with pytest.raises(InvalidInput, match="invalid object key"):
        store.put_bytes(key, b"x")


def test_missing_local_source_is_invalid_input(store, tmp_path):
    with pytest.raises(InvalidInput, match=r"nope\.pt: no such file"):
        store.put_file("x/nope.pt", tmp_path / "nope.pt")


def test_local_store_leaves_no_temp_files_and_prunes_dirs(tmp_path):
    store = LocalStore(tmp_path / "s")
    store.put_bytes("a/b/c.txt", b"1")
    (tmp_path / "s" / "a" / "b" / ".c.txt.abc123.tmp").write_bytes(b"in flight")
    assert store.list() == ["a/b/c.txt"]
    (tmp_path / "s" / "a" / "b" / ".c.txt.abc123.tmp").unlink()
    store.delete("a/b/c.txt")
    assert list((tmp_path / "s").iterdir()) == []


@pytest.mark.parametrize("prefix", ["../", "a//", "/abs"])
def test_bad_prefixes_are_refused(store, prefix):
    with pytest.raises(InvalidInput, match="invalid object key"):
        store.list(prefix)
