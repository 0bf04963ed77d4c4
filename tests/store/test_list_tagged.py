"""``Store.list_tagged``: one listing with each object's ETag, on both backends (the real moto
server for S3): the ETag is the one ``get_tagged`` returns, it changes with the content and
only with it, and what the listing leaves out (another prefix, a removed object) is not there."""

from __future__ import annotations

import hashlib
from pathlib import Path

from detpipe.store import LocalStore, Store


def test_listing_etags_are_get_tagged_etags(store: Store, tmp_path: Path) -> None:
    assert store.list_tagged("devices/") == []
    infos = {f"devices/cam-{i}/status.json": store.put_bytes(f"devices/cam-{i}/status.json", b"r%d" % i)
             for i in (2, 1, 10)}  # fmt: skip
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 300_000)
    infos["devices/file.bin"] = store.put_file("devices/file.bin", big)
    store.put_bytes("devicesX/other.json", b"not below devices/")
    tagged = store.list_tagged("devices/")
    assert [k for k, _ in tagged] == store.list("devices/") == sorted(infos)
    for key, etag in tagged:
        assert etag == store.get_tagged(key)[1] and '"' not in etag, key
    assert dict(tagged)["devices/cam-1/status.json"] == infos["devices/cam-1/status.json"].etag
    assert [k for k, _ in store.list_tagged("devices")] == sorted([*infos, "devicesX/other.json"])


def test_etag_changes_with_the_content_and_only_with_it(store: Store) -> None:
    store.put_bytes("a/report.json", b"seq 1")
    ((_, first),) = store.list_tagged("a/")
    store.put_bytes("a/report.json", b"seq 1")  # the same bytes again
    assert store.list_tagged("a/") == [("a/report.json", first)]
    store.put_bytes("a/report.json", b"seq 2")
    ((_, second),) = store.list_tagged("a/")
    assert second != first and second == store.get_tagged("a/report.json")[1]
    store.delete("a/report.json")
    assert store.list_tagged("a/") == []


def test_local_etag_is_the_sha256_and_temp_files_are_skipped(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_bytes("a/b.json", b"hello")
    (tmp_path / "store" / "a" / ".b.json.123.tmp").write_bytes(b"half")  # a write in flight
    assert store.list_tagged("a/") == [("a/b.json", hashlib.sha256(b"hello").hexdigest())]
