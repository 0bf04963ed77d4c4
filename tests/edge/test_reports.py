"""Signed device reports: the agent's key pair, the signature and sequence number of each report
across agent processes, registrations and what makes one trusted, the inventory off a Jetson.

The agents run as ``detpipe edge agent --once`` processes on a local store, and publish an
artifact that is not a model (the health check refuses it: a report either way), so these tests
need no trained model. Enrollment against the S3 server is in test_enroll.py.
"""

from __future__ import annotations

import json
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from edge_support import S3Fleet, run_agent
from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import CryptoSigner, Signature

from detpipe.edge.inventory import collect, dpkg_version, parse_l4t
from detpipe.edge.keys import keygen, load_signer
from detpipe.edge.publish import PublishConfig, publish_version
from detpipe.edge.reports import (
    REASONS,
    SAVE_ATTEMPTS,
    ReportReader,
    canonical_bytes,
    load_public_key,
    load_root,
    make_registration,
    register,
    registration_key,
    seen_key,
    sign_report,
    trusted_root,
    verify_registration,
)
from detpipe.errors import InvalidInput, StoreError
from detpipe.store import LocalStore, Store


@pytest.fixture
def store(tmp_path: Path, keys: Path) -> LocalStore:
    s = LocalStore(tmp_path / "store")
    artifact = tmp_path / "not-a-model.onnx"
    artifact.write_bytes(b"not a model: the health check refuses it")
    publish_version(s, PublishConfig("cpu", "1", artifact, "onnx", keys))
    return s


def agent_once(store: LocalStore, keys: Path, d: Path, device_id: str = "cam-1") -> dict:
    done = run_agent(
        ["--store", str(store.root), "--device-class", "cpu", "--device-id", device_id,
         "--trust", str(keys / "root.json"), "--dir", str(d), "--once"]
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    return json.loads(store.get_bytes(f"devices/{device_id}/status.json"))


def test_key_pair_made_once_0600_and_every_report_signed_with_a_growing_seq(
    store: LocalStore, keys: Path, tmp_path: Path
) -> None:
    d = tmp_path / "device"
    first = agent_once(store, keys, d)
    key_bytes = (d / "device.key").read_bytes()
    assert stat.S_IMODE((d / "device.key").stat().st_mode) == 0o600
    pub = load_public_key(d / "device.pub")
    second = agent_once(store, keys, d)  # a new process: a restart
    third = agent_once(store, keys, d)
    assert (d / "device.key").read_bytes() == key_bytes and load_public_key(d / "device.pub") == pub
    assert [r["seq"] for r in (first, second, third)] == [1, 2, 3]
    assert json.loads((d / "report-seq.json").read_text()) == {"seq": 3}
    assert json.loads((d / "status.json").read_text()) == third  # the local copy is the same report
    for report in (first, second, third):
        body = {k: v for k, v in report.items() if k != "signature"}
        assert report["signature"]["keyid"] == pub.keyid
        pub.verify_signature(Signature.from_dict(dict(report["signature"])), canonical_bytes(body))
        assert (report["schema"], report["device_id"]) == ("detpipe.device-report/1", "cam-1")
    assert (first["outcome"], first["tried_version"], first["rolled_back"]) == ("rolled-back", "1", True)
    assert third["outcome"] == "unchanged" and third["refused"] == first["refused"]  # refused for good
    assert len(first["refused"]) == 1
    inv = third["inventory"]
    assert {"l4t", "jetpack", "tensorrt", "cuda", "compute_capability", "dla_cores"} <= inv.keys()
    assert isinstance(inv["disk_free_bytes"], int) and inv["disk_free_bytes"] > 0


def test_a_changed_field_no_longer_verifies(store: LocalStore, keys: Path, tmp_path: Path) -> None:
    d = tmp_path / "device"
    report = agent_once(store, keys, d)
    pub = load_public_key(d / "device.pub")
    tampered = {**report, "outcome": "installed"}
    body = {k: v for k, v in tampered.items() if k != "signature"}
    with pytest.raises(UnverifiedSignatureError):
        pub.verify_signature(Signature.from_dict(dict(report["signature"])), canonical_bytes(body))


def test_reports_must_be_canonical_json() -> None:
    with pytest.raises(InvalidInput, match="no floats"):
        sign_report({"timings": 0.5}, CryptoSigner.generate_ed25519(), 1)


def test_registration_verifies_only_with_the_trusted_targets_key(
    store: LocalStore, keys: Path, tmp_path: Path
) -> None:
    device = CryptoSigner.generate_ed25519().public_key
    root = trusted_root(store)  # the store's chain from its 1.root.json
    assert root == trusted_root(store, load_root(keys / "root.json"))
    doc = make_registration("cpu", "cam-1", device, [load_signer(keys, "targets")])
    assert verify_registration(doc, root, "cpu", "cam-1") == device
    with pytest.raises(InvalidInput, match="names cam-1"):
        verify_registration(doc, root, "cpu", "cam-2")  # a registration moved to another device

    other = keygen(tmp_path / "other-fleet").parent
    foreign = make_registration("cpu", "cam-1", device, [load_signer(other, "targets")])
    with pytest.raises(InvalidInput, match="not signed by the targets key"):
        verify_registration(foreign, root, "cpu", "cam-1")
    with pytest.raises(
        InvalidInput, match="not signed by the targets key"
    ):  # the root key is not the targets key
        verify_registration(
            make_registration("cpu", "cam-1", device, [load_signer(keys, "root")]), root, "cpu", "cam-1"
        )
    with pytest.raises(InvalidInput, match="does not satisfy root v1"):
        register(store, "cpu", "cam-1", device, [load_signer(other, "targets")], root)
    with pytest.raises(InvalidInput, match="another fleet"):
        trusted_root(store, load_root(other / "root.json"))
    assert not store.exists(registration_key("cpu", "cam-1"))


def test_reader_trusts_a_registration_only_from_the_targets_key(
    store: LocalStore, keys: Path, tmp_path: Path
) -> None:
    for device_id in ("cam-1", "cam-2"):
        agent_once(store, keys, tmp_path / device_id, device_id)
    root = trusted_root(store)
    pub1 = load_public_key(tmp_path / "cam-1" / "device.pub")
    pub2 = load_public_key(tmp_path / "cam-2" / "device.pub")
    register(store, "cpu", "cam-1", pub1, [load_signer(keys, "targets")], root)
    other = keygen(tmp_path / "other-fleet").parent
    foreign = make_registration("cpu", "cam-2", pub2, [load_signer(other, "targets")])
    store.put_bytes(registration_key("cpu", "cam-2"), json.dumps(foreign).encode())
    reading = ReportReader(store, "cpu", root, seen={}).read()
    assert set(reading.valid) == {"cam-1"} and set(reading.enrolled) == {"cam-1"}
    assert [(i.device_id, i.reason) for i in reading.ignored] == [("cam-2", "bad-registration")]
    assert reading.ignored_counts() == {**dict.fromkeys(REASONS, 0), "bad-registration": 1}


@pytest.fixture(params=["local", "s3"])
def seen_store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """An empty store on either backend (S3: a fresh bucket on the moto server)."""
    if request.param == "local":
        return LocalStore(tmp_path / "seen-store")
    fleet: S3Fleet = request.getfixturevalue("s3_fleet")
    return fleet.store()


def _entry(keyid: str, seq: int) -> dict:
    return {"keyid": keyid, "seq": seq, "sha256": f"{seq:064x}", "report": {"seq": seq}}


def test_readers_saving_at_once_lose_no_device(seen_store: Store, keys: Path) -> None:
    """8 readers save at once (from one barrier): every device is kept, and of one device that
    all of them saw, the newest seq."""
    root = load_root(keys / "root.json").signed
    seen_store.put_bytes(seen_key("cpu"), json.dumps({"devices": {"old": _entry("k", 1)}}).encode())
    n = 8
    barrier = threading.Barrier(n)

    def save(i: int) -> None:
        reader = ReportReader(seen_store, "cpu", root)  # all load the same seen.json (one ETag)
        reader.seen.update({f"cam-{i}": _entry(f"k{i}", 1), "shared": _entry("ks", 10 + i)})
        barrier.wait(timeout=60)
        reader.save_seen()

    with ThreadPoolExecutor(n) as pool:
        list(pool.map(save, range(n)))  # re-raises a thread's failure
    devices = json.loads(seen_store.get_bytes(seen_key("cpu")))["devices"]
    assert set(devices) == {"old", "shared", *(f"cam-{i}" for i in range(n))}
    assert devices["shared"]["seq"] == 10 + n - 1
    assert all(devices[f"cam-{i}"] == _entry(f"k{i}", 1) for i in range(n))


def test_save_seen_gives_up_after_bounded_attempts_when_another_writer_always_wins(
    tmp_path: Path, keys: Path
) -> None:
    class Contended(LocalStore):
        """A store where another writer rewrites seen.json right after every read of it."""

        puts = 0

        def get_tagged(self, key: str) -> tuple[bytes, str]:
            tagged = super().get_tagged(key)
            self.put_bytes(key, json.dumps({"devices": {"rival": _entry("r", self.puts)}}).encode())
            return tagged

        def put_bytes(self, key: str, data: bytes, **kw) -> object:
            Contended.puts += 1
            return super().put_bytes(key, data, **kw)

    store = Contended(tmp_path / "store")
    store.put_bytes(seen_key("cpu"), b"{}")
    reader = ReportReader(store, "cpu", load_root(keys / "root.json").signed, seen={"cam-1": _entry("k", 1)})
    Contended.puts = 0
    with pytest.raises(StoreError, match=rf"other readers kept writing it .*\({SAVE_ATTEMPTS} attempts\)"):
        reader.save_seen()
    assert Contended.puts == 2 * SAVE_ATTEMPTS  # each attempt: the rival's write, then ours, refused
    assert "cam-1" not in json.loads(store.get_bytes(seen_key("cpu")))["devices"]


def test_inventory_parsers_and_a_cpu_machine(tmp_path: Path) -> None:
    assert (
        parse_l4t("# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64") == "36.4.0"
    )
    assert parse_l4t("# R35 (release), REVISION: 5.0, GCID: 35550185") == "35.5.0"
    assert parse_l4t("garbage") is None
    status = (
        "Package: nvidia-jetpack\nStatus: deinstall ok config-files\nVersion: 5.1.2-b104\n\n"
        "Package: nvidia-jetpack\nStatus: install ok installed\nVersion: 6.1+b123\n\n"
        "Package: nvidia-jetpack-dev\nStatus: install ok installed\nVersion: 9.9\n"
    )
    assert dpkg_version(status, "nvidia-jetpack") == "6.1"
    assert (
        dpkg_version("Package: other\nStatus: install ok installed\nVersion: 1\n", "nvidia-jetpack") is None
    )
    inv = collect(tmp_path)
    json.dumps(inv)
    assert canonical_bytes(inv)  # no floats: signable as it is
    if not Path("/etc/nv_tegra_release").exists():
        assert inv["l4t"] is None and inv["jetpack"] is None
