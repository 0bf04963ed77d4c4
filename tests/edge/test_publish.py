"""keygen and publish: key files, the TUF repository in the store, rollout edits, CLI errors."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Root, Targets, Timestamp

from detpipe.edge.fetcher import OtaFetcher
from detpipe.edge.keys import ROLES, keygen
from detpipe.edge.publish import PublishConfig, publish_target, rollback_to, set_rollout
from detpipe.edge.repository import StoreRepository
from detpipe.edge.rotate import rotate_key
from detpipe.edge.trust import load_trust, refresh
from detpipe.errors import InvalidInput, NotFound, StoreError
from detpipe.store import LocalStore


def detpipe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", *args], capture_output=True, text=True, timeout=60
    )


def test_keygen_writes_private_keys_0600_and_a_self_signed_root(tmp_path: Path):
    root_path = keygen(tmp_path / "k")
    for role in ROLES:
        mode = stat.S_IMODE((tmp_path / "k" / f"{role}.pem").stat().st_mode)
        assert mode == 0o600, (role, oct(mode))
    md = Metadata[Root].from_file(str(root_path))
    root = md.signed
    assert root.version == 1 and root.consistent_snapshot
    root.verify_delegate(Root.type, md.signed_bytes, md.signatures)  # raises when unsigned
    assert {r: len(root.roles[r].keyids) for r in ROLES} == dict.fromkeys(ROLES, 1)
    assert b"PRIVATE" not in root_path.read_bytes()
    with pytest.raises(InvalidInput, match="keys already exist"):
        keygen(tmp_path / "k")


def test_publish_layout_and_verified_listing(tmp_path: Path):
    keys = tmp_path / "keys"
    keygen(keys)
    store = LocalStore(tmp_path / "store")
    art = tmp_path / "a.onnx"
    art.write_bytes(b"one")
    r1 = publish_target(store, PublishConfig("cpu", "1", art, "onnx", keys))
    art.write_bytes(b"two!")
    r2 = publish_target(
        store, PublishConfig("cpu", "2", art, "onnx", keys, rollout_pct=10, groups=("canary",))
    )
    listed = store.list("ota/")
    assert f"ota/targets/cpu/1/{r1.sha256}.model.onnx" in listed
    assert f"ota/targets/cpu/2/{r2.sha256}.model.onnx" in listed
    for name in (
        "1.root.json",
        "root.json",
        "1.targets.json",
        "2.targets.json",
        "2.snapshot.json",
        "timestamp.json",
    ):
        assert f"ota/metadata/{name}" in listed
    ts = Metadata[Timestamp].from_bytes(store.get_bytes("ota/metadata/timestamp.json")).signed
    assert ts.version == 2 and ts.snapshot_meta.version == 2
    targets = Metadata[Targets].from_bytes(store.get_bytes("ota/metadata/2.targets.json")).signed
    custom = targets.targets["cpu/2/model.onnx"].custom
    assert custom == {
        "version": "2", "device_class": "cpu", "format": "onnx", "file": "model.onnx",
        "rollout_pct": 10, "groups": ["canary"], "rollback": False,
    }  # fmt: skip
    repo = refresh(str(store.root), load_trust(keys / "root.json"), tmp_path / "cache", OtaFetcher())
    assert sorted((r.version, r.rollout_pct) for r in repo.releases) == [("1", 100), ("2", 10)]

    set_rollout(store, keys, "cpu", "2", 50)
    rollback_to(store, keys, "cpu", "1")
    repo = refresh(str(store.root), load_trust(keys / "root.json"), tmp_path / "cache", OtaFetcher())
    assert [(r.version, r.rollback) for r in repo.releases] == [("1", True)]
    with pytest.raises(NotFound, match="no published version 7"):
        set_rollout(store, keys, "cpu", "7", 50)


def test_engine_targets_carry_the_sidecar(tmp_path: Path):
    keys = tmp_path / "keys"
    keygen(keys)
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\0" * 64)
    with pytest.raises(InvalidInput, match="no sidecar"):
        publish_target(LocalStore(tmp_path / "s"), PublishConfig("orin", "1", engine, "engine", keys))
    gpu = {"name": "Orin", "compute_capability": "8.7", "dla_cores": 2}
    sidecar = {
        "schema": "detpipe.engine-sidecar/1",
        "tensorrt_version": "10.3.0",
        "precision": "fp16",
        "gpu": gpu,
        "workspace_gib": 4.0,
    }
    (tmp_path / "model.engine.json").write_text(json.dumps(sidecar))
    r = publish_target(LocalStore(tmp_path / "s"), PublishConfig("orin", "1", engine, "engine", keys))
    assert r.custom()["sidecar"]["gpu"]["name"] == "Orin"
    assert r.custom()["sidecar"]["workspace_gib"] == "4.0"  # canonical JSON: no floats


def test_cli_keygen_publish_and_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture):
    keys, store = tmp_path / "keys", tmp_path / "store"
    assert main_in_process(capsys, "edge", "keygen", "--out", str(keys))[0] == 0
    model = tmp_path / "m.onnx"
    model.write_bytes(b"m")
    ok = detpipe("edge", "publish", "--store", str(store), "--device-class", "cpu", "--onnx", str(model),
                 "--version", "1", "--keys", str(keys), "--rollout", "25", "--group", "canary")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["rollout_pct"] == 25
    cases = {
        ("--version", "1", "--rollout", "101"): "argument --rollout: must be 0-100, got 101",
        (
            "--version",
            "9",
            "--rollout",
            "5",
        ): "detpipe edge: error: no published version 9 for device class cpu",
        ("--version", "2"): "detpipe edge: error: give --engine, --onnx or --release",
        ("--onnx", str(model)): "detpipe edge: error: --version is required",
        ("--version", "2", "--onnx", str(tmp_path / "nope")): "nope: no such file",
        ("--version", "2", "--onnx", str(model), "--expires", "7w"): "expected a duration like 7d",
    }
    cases[("--version", "2", "--onnx", str(model), "--keys", str(tmp_path / "none"))] = (
        "none/targets.pem: no such key"
    )
    for extra, message in cases.items():
        code, err = main_in_process(capsys, "edge", "publish", "--store", str(store), "--device-class", "cpu",
                                    "--keys", str(keys), *extra)  # fmt: skip
        assert code == 2, (extra, err)
        assert message in err.strip().splitlines()[-1], (extra, err)
    assert not [
        k for k in LocalStore(store).list("ota/targets/") if "/2/" in k
    ]  # nothing uploaded by a failure


def main_in_process(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """The CLI in this process (argparse errors exit through SystemExit); returns (code, stderr)."""
    from detpipe.cli.main import main

    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as e:
        code = int(e.code or 0)
    return code, capsys.readouterr().err


def test_devices_follow_key_rotations_and_retired_keys_stop_working(tmp_path: Path):
    keys, store = tmp_path / "keys", LocalStore(tmp_path / "store")
    keygen(keys)
    art = tmp_path / "m.onnx"

    def put(version: str, key_dir: Path = keys) -> None:
        art.write_bytes(version.encode())
        publish_target(store, PublishConfig("cpu", version, art, "onnx", key_dir))

    def versions() -> list[str]:  # a device provisioned with root v1, keeping its TUF cache
        repo = refresh(
            str(store.root), load_trust(keys / "root.json"), tmp_path / "device-cache", OtaFetcher()
        )
        return sorted(r.version for r in repo.releases)

    put("1")
    assert versions() == ["1"]
    assert rotate_key(store, keys, "targets") == 2
    retired = next(keys.glob("targets.*.retired.pem"))
    put("2")
    assert versions() == ["1", "2"]
    assert rotate_key(store, keys, "root") == 3
    assert rotate_key(store, keys, "timestamp") == 4
    put("3")
    assert versions() == ["1", "2", "3"]
    assert Metadata[Root].from_bytes(store.get_bytes("ota/metadata/4.root.json")).signed.version == 4
    old = tmp_path / "old-keys"  # someone still signing with the retired targets key
    old.mkdir()
    for role in ("snapshot", "timestamp"):
        (old / f"{role}.pem").write_bytes((keys / f"{role}.pem").read_bytes())
    (old / "targets.pem").write_bytes(retired.read_bytes())
    with pytest.raises(InvalidInput, match=r"targets\.pem: key \w{8} is not trusted for targets by root v4"):
        put("4", old)  # publish refuses to sign what no device would accept
    forged = StoreRepository(store, old)  # someone writing to the store without publish's check
    with forged.edit_targets() as targets:
        targets.targets.clear()
    forged.publish_metadata()
    with pytest.raises(StoreError, match="signature check failed"):
        versions()
    with pytest.raises(InvalidInput, match=r"root\.pem"):
        rotate_key(store, old, "targets")


def test_publish_release_checks_its_signature_before_signing_it_for_the_fleet(
    tmp_path: Path, keys: Path, models, capsys: pytest.CaptureFixture, monkeypatch
):
    """``edge publish --release``: a signed release goes out; unsigned, altered or foreign ones do not."""
    from detpipe.signing import ReleaseSigner
    from detpipe.signing import keygen as release_keygen
    from detpipe.store import publish, release_uri

    key, pub = release_keygen(tmp_path / "release-keys")
    _, other_pub = release_keygen(tmp_path / "other-keys")
    releases = LocalStore(tmp_path / "releases")
    signed = publish(releases, "pico", "1", {"model.onnx": models.good}, signer=ReleaseSigner(key))
    assert signed.version == "1"
    publish(releases, "pico", "2", {"model.onnx": models.other})  # no signer: no manifest.sig
    publish(releases, "pico", "3", {"model.onnx": models.other}, signer=ReleaseSigner(key))
    altered = releases.root / "models" / "pico" / "3" / "manifest.json"
    altered.write_text(altered.read_text().replace('"3"', '"3.0"', 1))
    fleet = tmp_path / "fleet"
    monkeypatch.delenv("DETPIPE_RELEASE_KEY", raising=False)

    def edge_publish(version: str, *extra: str) -> tuple[int, str]:
        return main_in_process(capsys, "edge", "publish", "--store", str(fleet), "--device-class", "cpu",
                               "--keys", str(keys), "--version", version,
                               "--release", release_uri(releases, "pico", version), *extra)  # fmt: skip

    refusals = {
        ("2", "--release-key", str(pub)): "the release is not signed (no manifest.sig)",
        ("3", "--release-key", str(pub)): "manifest.json was altered after signing",
        ("1", "--release-key", str(other_pub)): "signed by another key",
        ("1",): "pass --release-key PUB (or DETPIPE_RELEASE_KEY)",
        ("1", "--release-key", str(pub), "--allow-unsigned"): "not both",
        ("1", "--release-key", str(tmp_path / "nope.pub")): "cannot read the release public key",
    }
    for args, message in refusals.items():
        code, err = edge_publish(*args)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], (args, err)
    assert not LocalStore(fleet).list("ota/")  # nothing was uploaded or signed

    monkeypatch.setenv("DETPIPE_RELEASE_KEY", str(pub))
    code, err = edge_publish("1")
    assert code == 0, err
    repo = refresh(str(fleet), load_trust(keys / "root.json"), tmp_path / "cache", OtaFetcher())
    assert [(r.version, r.sha256) for r in repo.releases] == [("1", signed.objects[0].sha256)]

    unsigned = release_uri(releases, "pico", "2")
    res = detpipe("edge", "publish", "--store", str(fleet), "--device-class", "cpu", "--keys", str(keys),
                  "--version", "2", "--release", unsigned, "--allow-unsigned")  # fmt: skip
    assert res.returncode == 0, res.stderr  # local development: it goes out, loudly
    assert "WARNING detpipe.edge.publish: --allow-unsigned:" in res.stderr and "WITHOUT" in res.stderr
