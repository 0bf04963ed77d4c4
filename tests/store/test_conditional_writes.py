"""Conditional writes (S3's ``If-Match`` / ``If-None-Match: *``) on both backends, the real moto
server for S3: a create-only write wins once, a write with a stale ETag loses and writes nothing,
and of many writers racing from one ETag exactly one wins."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from detpipe.errors import NotFound, PreconditionFailed
from detpipe.store import Store


def test_create_only_write_wins_once(store: Store):
    store.put_bytes("locks/a.json", b"first", if_none_match=True)
    with pytest.raises(PreconditionFailed, match="exists"):
        store.put_bytes("locks/a.json", b"second", if_none_match=True)
    assert store.get_bytes("locks/a.json") == b"first"


def test_write_with_a_stale_etag_loses_and_writes_nothing(store: Store):
    store.put_bytes("state.json", b"v1")
    data, etag = store.get_tagged("state.json")
    assert data == b"v1"
    info = store.put_bytes("state.json", b"v2", if_match=etag)
    assert store.get_tagged("state.json") == (b"v2", info.etag)
    with pytest.raises(PreconditionFailed, match="changed"):
        store.put_bytes("state.json", b"v3", if_match=etag)
    assert store.get_bytes("state.json") == b"v2"


def test_if_match_on_a_missing_object_fails(store: Store):
    with pytest.raises((PreconditionFailed, NotFound)):  # S3 answers 404, as for a GET
        store.put_bytes("nothing.json", b"x", if_match="0" * 32)
    assert not store.exists("nothing.json")


def test_racing_writers_from_one_etag_one_wins(store: Store):
    store.put_bytes("race.json", b"start")
    _, etag = store.get_tagged("race.json")

    def write(i: int) -> bool:
        try:
            store.put_bytes("race.json", f"writer {i}".encode(), if_match=etag)
        except PreconditionFailed:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(write, range(8)))
    assert sum(won) == 1
    assert store.get_bytes("race.json") == f"writer {won.index(True)}".encode()
