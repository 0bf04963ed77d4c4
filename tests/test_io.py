"""Atomic writes: complete files or nothing."""

from __future__ import annotations

import json
import os

import pytest

from detpipe.errors import InvalidInput
from detpipe.io import atomic_dir, atomic_writer, read_json, sha256_file, write_json, write_text


def test_write_json_roundtrip_and_no_temp_left(tmp_path):
    path = write_json(tmp_path / "a" / "b.json", {"x": [1, 2]})
    assert read_json(path) == {"x": [1, 2]}
    assert sorted(p.name for p in path.parent.iterdir()) == ["b.json"]


def test_write_replaces_existing_file(tmp_path):
    target = tmp_path / "t.txt"
    write_text(target, "old")
    write_text(target, "new")
    assert target.read_text() == "new"


def test_atomic_dir_success_replaces_old(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("stale")
    with atomic_dir(out) as tmp:
        (tmp / "fresh.txt").write_text("fresh")
        assert not (out / "fresh.txt").exists()  # invisible until the block ends
    assert sorted(p.name for p in out.iterdir()) == ["fresh.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_failure_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_failure_keeps_previous_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    with pytest.raises(RuntimeError), atomic_dir(out):
        raise RuntimeError("boom")
    assert (out / "keep.txt").read_text() == "keep"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_read_json_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,\n  oops}')
    with pytest.raises(InvalidInput, match=r"bad.json: not valid JSON \(line 2, column 3\)"):
        read_json(bad)
    with pytest.raises(InvalidInput, match="no such file"):
        read_json(tmp_path / "missing.json")


def test_sha256_file(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert json.loads(json.dumps(sha256_file(p)))  # plain str


def test_atomic_writer_streams_or_leaves_nothing(tmp_path):
    target = tmp_path / "big.bin"
    with atomic_writer(target) as f:
        f.write(b"a" * 10)
        f.write(b"b")
        assert not target.exists()  # invisible until the block ends
    assert target.read_bytes() == b"a" * 10 + b"b"
    with pytest.raises(RuntimeError), atomic_writer(target) as f:
        f.write(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"a" * 10 + b"b"  # old content kept
    assert [p.name for p in tmp_path.iterdir()] == ["big.bin"]  # no temp file left


def test_outputs_get_normal_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        f = write_text(tmp_path / "f.txt", "x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "x").write_text("x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(f.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_discard_partial_writes_removes_only_temp_files_of_atomic_writes(tmp_path):
    from detpipe.io import atomic_writer, discard_partial_writes

    (tmp_path / "best.pt").write_bytes(b"complete")
    try:
        with atomic_writer(tmp_path / "last.pt") as f:
            f.write(b"half")
            leftover = next(tmp_path.glob(".last.pt.*.tmp"))
            os.link(leftover, tmp_path / ".last.pt.killed.tmp")  # what a SIGKILL here leaves behind
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert [p.name for p in discard_partial_writes(tmp_path)] == [".last.pt.killed.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]
    assert discard_partial_writes(tmp_path / "missing") == []
