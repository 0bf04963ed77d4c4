"""Key rotation and the root chain: the keys directory keeps every root version, every store
gets the versions it lacks, and publish refuses to sign with a key the shipped root does not
trust (issue 21: a store first published after a rotation carried root v1 and cut devices off)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from edge_support import Models, S3Fleet
from store_servers import RetryPolicy
from tuf.api.metadata import Metadata, Root

from detpipe.edge.agent import Agent, AgentConfig
from detpipe.edge.fetcher import OtaFetcher
from detpipe.edge.keys import keygen
from detpipe.edge.publish import PublishConfig, publish_target
from detpipe.edge.rootchain import local_chain
from detpipe.edge.rotate import rotate_key
from detpipe.errors import InvalidInput
from detpipe.store import LocalStore, Store

QUICK = RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.02)


def detpipe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def root_versions(store: Store) -> list[int]:
    names = [k.rsplit("/", 1)[1] for k in store.list("ota/metadata/")]
    return sorted(int(n.split(".")[0]) for n in names if n.endswith(".root.json") and n[0].isdigit())


def provisioned(keys: Path, dest: Path) -> Path:
    """A copy of the keys directory's root.json now: what a device is provisioned with today."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(keys / "root.json", dest))


def local_agent(store: LocalStore, trust: Path, d: Path, device_id: str) -> Agent:
    return Agent(AgentConfig(str(store.root), "cpu", device_id, trust, d))


def s3_agent(fleet: S3Fleet, trust: Path, d: Path, device_id: str) -> Agent:
    cfg = fleet.config(retry=QUICK)
    config = AgentConfig(fleet.uri, "cpu", device_id, trust, d)
    return Agent(config, OtaFetcher(cfg, retry=QUICK, sleep=lambda s: None), s3=cfg)


def test_rotate_writes_the_new_root_into_the_keys_directory(tmp_path: Path):
    keys, store = tmp_path / "keys", LocalStore(tmp_path / "store")
    keygen(keys)
    assert rotate_key(store, keys, "targets") == 2
    assert rotate_key(store, keys, "root") == 3
    assert [md.signed.version for md in local_chain(keys)] == [1, 2, 3]
    assert Metadata[Root].from_file(str(keys / "root.json")).signed.version == 3
    for v in (1, 2, 3):  # the keys directory and the rotation's store hold the same chain
        assert (keys / f"{v}.root.json").read_bytes() == store.get_bytes(f"ota/metadata/{v}.root.json")
    assert (keys / "targets.pem").stat().st_mode & 0o777 == 0o600


def test_after_a_rotation_a_fresh_store_gets_the_whole_chain_and_devices_update(
    tmp_path: Path, models: Models, s3_fleet: S3Fleet
):
    keys, rotated = tmp_path / "keys", LocalStore(tmp_path / "rotated")
    keygen(keys)
    v1_root = provisioned(keys, tmp_path / "provisioned" / "v1.root.json")
    publish_target(rotated, PublishConfig("cpu", "1", models.good, "onnx", keys))
    old = tmp_path / "old-device"
    assert local_agent(rotated, v1_root, old, "cam-1").run_once()["outcome"] == "installed"

    res = detpipe("edge", "rotate", "--store", str(rotated.root), "--keys", str(keys), "--role", "targets")
    assert res.returncode == 0, res.stderr
    assert Metadata[Root].from_file(str(keys / "root.json")).signed.version == 2

    # the bug: the first publish to a new store shipped root v1 while signing with the new key
    res = detpipe("edge", "publish", "--store", s3_fleet.uri, "--device-class", "cpu", "--onnx",
                  str(models.good), "--version", "1", "--keys", str(keys), env=s3_fleet.env())  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "No signature for keyid" not in res.stderr  # issue 21: python-tuf's INFO line, quieted
    assert root_versions(s3_fleet.store()) == [1, 2]
    assert json.loads(s3_fleet.store().get_bytes("ota/metadata/root.json"))["signed"]["version"] == 2

    v2_root = provisioned(keys, tmp_path / "provisioned" / "v2.root.json")
    for trust, device_id in ((v2_root, "cam-new"), (v1_root, "cam-v1")):  # today's root, and the old one
        r = s3_agent(s3_fleet, trust, tmp_path / device_id, device_id).run_once()
        assert (r["outcome"], r.get("version")) == ("installed", "1"), (device_id, r)

    publish_target(rotated, PublishConfig("cpu", "2", models.other, "onnx", keys))
    r = local_agent(rotated, v1_root, old, "cam-1").run_once()  # the device from before the rotation
    assert (r["outcome"], r["version"]) == ("installed", "2"), r


def test_a_store_published_before_a_rotation_gets_the_new_root_versions(tmp_path: Path, models: Models):
    keys = tmp_path / "keys"
    keygen(keys)
    v1_root = provisioned(keys, tmp_path / "v1.root.json")
    other, rotated = LocalStore(tmp_path / "other"), LocalStore(tmp_path / "rotated")
    publish_target(other, PublishConfig("cpu", "1", models.good, "onnx", keys))
    d = tmp_path / "device"
    assert local_agent(other, v1_root, d, "cam-1").run_once()["outcome"] == "installed"
    rotate_key(rotated, keys, "targets")
    rotate_key(rotated, keys, "root")
    assert root_versions(other) == [1]
    publish_target(other, PublishConfig("cpu", "2", models.other, "onnx", keys))
    assert root_versions(other) == [1, 2, 3]
    r = local_agent(other, v1_root, d, "cam-1").run_once()
    assert (r["outcome"], r["version"]) == ("installed", "2"), r
    assert json.loads((d / "tuf" / "root.json").read_text())["signed"]["version"] == 3  # walked 1 -> 3


def test_publish_refuses_keys_the_shipped_root_does_not_trust(tmp_path: Path, models: Models):
    """The keys directory the old ``rotate`` left: root.json v1 beside the new targets key."""
    keys = tmp_path / "keys"
    keygen(keys)
    stale = tmp_path / "stale-keys"
    shutil.copytree(keys, stale)
    rotate_key(LocalStore(tmp_path / "rotated"), keys, "targets")
    shutil.copy(keys / "targets.pem", stale / "targets.pem")
    fresh = tmp_path / "fresh"
    res = detpipe("edge", "publish", "--store", str(fresh), "--device-class", "cpu", "--onnx",
                  str(models.good), "--version", "1", "--keys", str(stale))  # fmt: skip
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "targets.pem: key" in lines[0], lines
    assert "is not trusted for targets by root v1" in lines[0]
    assert not LocalStore(fresh).list("ota/")  # refused before anything was written


def test_a_keys_copy_behind_the_store_follows_the_store_chain(tmp_path: Path, models: Models):
    """CI's copy of the keys got the new targets key but not the new root: the store's chain is walked."""
    keys, store = tmp_path / "keys", LocalStore(tmp_path / "store")
    keygen(keys)
    ci = tmp_path / "ci-keys"
    shutil.copytree(keys, ci)
    (ci / "root.pem").unlink()
    rotate_key(store, keys, "targets")
    shutil.copy(keys / "targets.pem", ci / "targets.pem")
    publish_target(store, PublishConfig("cpu", "1", models.good, "onnx", ci))
    r = local_agent(store, keys / "1.root.json", tmp_path / "d", "cam-1").run_once()
    assert (r["outcome"], r["version"]) == ("installed", "1"), r
    with pytest.raises(InvalidInput, match=r"root chain starts at v2, a new store needs 1\.root\.json"):
        partial = tmp_path / "partial"
        shutil.copytree(keys, partial)
        (partial / "1.root.json").unlink()
        publish_target(LocalStore(tmp_path / "new"), PublishConfig("cpu", "1", models.good, "onnx", partial))


def test_another_fleets_store_is_refused(tmp_path: Path, models: Models):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    keygen(ours)
    keygen(theirs)
    store = LocalStore(tmp_path / "store")
    publish_target(store, PublishConfig("cpu", "1", models.good, "onnx", theirs))
    with pytest.raises(InvalidInput, match="belongs to another fleet's keys"):
        publish_target(store, PublishConfig("cpu", "2", models.other, "onnx", ours))
