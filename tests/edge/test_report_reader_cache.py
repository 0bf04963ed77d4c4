"""ReportReader's cheap passes: an object whose listed ETag is the one verified before is not
fetched again, on both backends (the real moto server for S3, its request log counting the
requests on the wire; locally the store's calls). A changed object is fetched and verified as
on a first pass, a revoked registration drops its device, and the cache in seen.json carries
no trust: registrations are verified again on every pass, and only when the listing's ETag is
the hash of the cached bytes."""

from __future__ import annotations

import collections
import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from edge_support import S3Fleet
from securesystemslib.signer import CryptoSigner

from detpipe.edge.keys import keygen, load_signer
from detpipe.edge.reports import (
    Reading,
    ReportReader,
    load_root,
    make_registration,
    register,
    registration_key,
    report_key,
    revoke,
    seen_key,
    sign_report,
)
from detpipe.errors import NotFound
from detpipe.store import LocalStore, Store

N_DEVICES = 1000  # the measured fleet
Counts = collections.Counter


class CountingLocalStore(LocalStore):
    """A local store that counts its calls the way S3 would count requests."""

    counts: Counts

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.counts = Counts()

    def _count(self, op: str, key: str) -> None:
        self.counts[f"{op} seen.json" if key.endswith("/seen.json") else op] += 1

    def get_bytes(self, key: str) -> bytes:  # get_tagged reads through it
        self._count("GET", key)
        return super().get_bytes(key)

    def put_bytes(self, key: str, data: bytes, **kw) -> object:
        self._count("PUT", key)
        return super().put_bytes(key, data, **kw)

    def list(self, prefix: str = "") -> list[str]:  # list_tagged lists through it
        self._count("LIST", prefix)
        return super().list(prefix)


@dataclass
class Fleet:
    """A store with enrolled devices' signed reports, and a way to count a pass's requests."""

    store: Store
    requests: Callable[[Callable[[], object]], Counts]
    signers: dict[str, CryptoSigner] = field(default_factory=dict)


def _moto_counter(fleet: S3Fleet, store: Store) -> Callable[[Callable[[], object]], Counts]:
    def requests(run: Callable[[], object]) -> Counts:
        start = len(fleet.server.requests(""))
        run()
        marker = f"count-marker-{uuid.uuid4().hex}"
        with pytest.raises(NotFound):
            store.stat(marker)  # its log line comes after every request of the pass
        fleet.server.wait_requests(marker, 1)
        lines = fleet.server.requests("")[start:]
        counts = Counts()
        for line in lines[: next(i for i, x in enumerate(lines) if marker in x)]:
            method, path = line.split('"')[1].split()[:2]
            if not path.startswith(f"/{fleet.bucket}") or method == "HEAD":
                continue
            op = "LIST" if "list-type=" in path else method
            counts[f"{op} seen.json" if path.endswith("/seen.json") else op] += 1
        return counts

    return requests


@pytest.fixture(params=["local", "s3"])
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Fleet:
    if request.param == "local":
        local = CountingLocalStore(tmp_path / "store")

        def requests(run: Callable[[], object]) -> Counts:
            local.counts.clear()
            run()
            return Counts(local.counts)

        return Fleet(local, requests)
    s3: S3Fleet = request.getfixturevalue("s3_fleet")
    store = s3.store()
    return Fleet(store, _moto_counter(s3, store))


def report(fleet: Fleet, device_id: str, seq: int, device_class: str = "cpu", signer=None) -> bytes:
    """Sign and upload a report of ``device_id``; returns its bytes."""
    signer = signer or fleet.signers.setdefault(device_id, CryptoSigner.generate_ed25519())
    fields = {"device_id": device_id, "device_class": device_class, "version": "1", "outcome": "installed",
              "inventory": {"tensorrt": None, "disk_free_bytes": 1 << 30}}  # fmt: skip
    data = json.dumps(sign_report(fields, signer, seq)).encode()
    fleet.store.put_bytes(report_key(device_id), data, content_type="application/json")
    return data


def enroll(fleet: Fleet, keys: Path, device_ids: list[str]) -> None:
    """Register and report (seq 1) every device, 8 at a time."""
    root, targets = load_root(keys / "root.json").signed, load_signer(keys, "targets")

    def one(device_id: str) -> None:
        signer = fleet.signers[device_id]
        register(fleet.store, "cpu", device_id, signer.public_key, [targets], root)
        report(fleet, device_id, 1)

    for device_id in device_ids:
        fleet.signers[device_id] = CryptoSigner.generate_ed25519()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, device_ids))


def one_pass(fleet: Fleet, keys: Path, root=None) -> tuple[Reading, Counts]:
    """What ``edge fleet`` and the rollout controller do each cycle, and the requests it made."""
    out: list[Reading] = []

    def run() -> None:
        reader = ReportReader(fleet.store, "cpu", root or load_root(keys / "root.json").signed)
        out.append(reader.read())
        reader.save_seen()

    counts = fleet.requests(run)
    return out[0], counts


def summary(reading: Reading) -> tuple:
    return (
        sorted(reading.enrolled),
        {d: (r.fields, r.current) for d, r in reading.valid.items()},
        sorted((i.device_id, i.reason) for i in reading.ignored),
    )


def test_a_pass_over_unchanged_devices_fetches_no_object(
    fleet: Fleet, keys: Path, request: pytest.FixtureRequest
) -> None:
    enroll(fleet, keys, [f"cam-{i:04d}" for i in range(N_DEVICES)])
    report(fleet, "orin-1", 1, device_class="orin")  # another class's devices
    report(fleet, "orin-2", 7, device_class="orin")
    report(fleet, "stray-1", 1)  # signed, claims the class, not enrolled: ignored

    first, cold = one_pass(fleet, keys)
    assert len(first.enrolled) == len(first.valid) == N_DEVICES
    assert [(i.device_id, i.reason) for i in first.ignored] == [("stray-1", "unenrolled")]
    assert cold["GET"] == 2 * N_DEVICES + 3  # every registration and report: the pass before the cache

    again, warm = one_pass(fleet, keys)
    assert summary(again) == summary(first) and all(r.current for r in again.valid.values())
    assert warm["GET"] == 1  # only the ignored report, fetched on every pass by design
    assert (warm["GET seen.json"], warm["PUT seen.json"]) == (1, 1)  # load, compare-and-swap on its ETag
    assert warm["LIST"] == cold["LIST"] and warm["PUT"] == 0
    backend = request.node.callspec.params["fleet"]
    print(f"\none pass over {N_DEVICES} unchanged devices (+2 of another class, 1 unenrolled), {backend}: "
          f"first pass {dict(sorted(cold.items()))}, next pass {dict(sorted(warm.items()))}")  # fmt: skip


def test_changed_objects_are_fetched_and_verified_again(fleet: Fleet, keys: Path) -> None:
    devices = ["cam-0", "cam-1", "cam-2", "cam-3"]
    enroll(fleet, keys, devices)
    cam0_seq1 = fleet.store.get_bytes(report_key("cam-0"))
    cam1_seq1 = fleet.store.get_bytes(report_key("cam-1"))
    base, _ = one_pass(fleet, keys)
    assert set(base.valid) == set(devices)

    report(fleet, "cam-0", 2)  # a new report
    report(fleet, "cam-1", 99, signer=CryptoSigner.generate_ed25519())  # forged: another key
    assert revoke(fleet.store, "cpu", "cam-2")  # its report is unchanged
    now, counts = one_pass(fleet, keys)
    assert counts["GET"] == 3  # the two changed reports, and cam-2's (no longer cached: not enrolled)
    assert sorted(now.enrolled) == ["cam-0", "cam-1", "cam-3"]
    assert sorted((i.device_id, i.reason) for i in now.ignored) == [
        ("cam-1", "forged"),
        ("cam-2", "unenrolled"),
    ]
    assert (now.valid["cam-0"]["seq"], now.valid["cam-0"].current) == (2, True)
    assert (now.valid["cam-1"]["seq"], now.valid["cam-1"].current) == (1, False)  # its last valid one
    assert "cam-2" not in now.valid and now.valid["cam-3"] == base.valid["cam-3"]

    fleet.store.put_bytes(report_key("cam-1"), cam1_seq1)  # the report seen before, back: still valid
    fleet.store.put_bytes(report_key("cam-0"), cam0_seq1)  # replayed: seq 1 after seq 2
    later, counts = one_pass(fleet, keys)
    assert counts["GET"] == 2  # cam-0's replay, cam-2's ignored report; cam-1's is the cached one
    assert sorted((i.device_id, i.reason) for i in later.ignored) == [
        ("cam-0", "replayed"),
        ("cam-2", "unenrolled"),
    ]
    assert (later.valid["cam-1"]["seq"], later.valid["cam-1"].current) == (1, True)
    assert (later.valid["cam-0"]["seq"], later.valid["cam-0"].current) == (2, False)


def test_the_cache_carries_no_trust(fleet: Fleet, keys: Path, tmp_path: Path) -> None:
    enroll(fleet, keys, ["cam-0", "cam-1"])
    one_pass(fleet, keys)
    targets, root = load_signer(keys, "targets"), load_root(keys / "root.json").signed

    # another fleet's root: the cached registrations are verified again, and fail
    other_keys = tmp_path / "other-fleet"
    other = load_root(keygen(other_keys)).signed
    foreign, _ = one_pass(fleet, keys, root=other)
    assert foreign.enrolled == {} and foreign.valid == {}
    assert sorted((i.device_id, i.reason) for i in foreign.ignored) == [
        ("cam-0", "bad-registration"), ("cam-1", "bad-registration")
    ]  # fmt: skip
    one_pass(fleet, keys)  # the fleet's own root again

    # cam-1 is enrolled again with a new key: its registration's ETag changes, it is fetched again
    new_key = CryptoSigner.generate_ed25519()
    register(fleet.store, "cpu", "cam-1", new_key.public_key, [targets], root)
    now, counts = one_pass(fleet, keys)
    assert counts["GET"] == 2  # cam-1's registration and its report (the same, but under another key)
    assert now.enrolled["cam-1"] == new_key.public_key
    assert [(i.device_id, i.reason) for i in now.ignored] == [("cam-1", "forged")]  # the old key's report

    # seen.json edited by someone who may write the store but holds no targets key
    attacker = CryptoSigner.generate_ed25519()
    seen = json.loads(fleet.store.get_bytes(seen_key("cpu")))
    assert set(seen["registrations"]) == {"cam-0", "cam-1"}
    listed = dict(fleet.store.list_tagged("ota/devices/cpu/"))[registration_key("cpu", "cam-0")]
    seen["registrations"]["cam-0"] = {  # under the listed ETag, enrolling the attacker's key
        "etag": listed,
        "doc": make_registration("cpu", "cam-0", attacker.public_key, [load_signer(other_keys, "targets")]),
    }
    seen["registrations"]["cam-9"] = {  # signed by the fleet even, but there is no such registration
        "etag": listed, "doc": make_registration("cpu", "cam-9", attacker.public_key, [targets])
    }  # fmt: skip
    fleet.store.put_bytes(seen_key("cpu"), json.dumps(seen).encode())
    report(fleet, "cam-0", 5, signer=attacker)
    report(fleet, "cam-9", 1, signer=attacker)
    now, counts = one_pass(fleet, keys)
    assert counts["GET"] == 4  # cam-0's registration (its cached one did not verify), 3 reports
    assert now.enrolled["cam-0"] == fleet.signers["cam-0"].public_key and "cam-9" not in now.enrolled
    assert sorted((i.device_id, i.reason) for i in now.ignored) == [
        ("cam-0", "forged"), ("cam-1", "forged"), ("cam-9", "unenrolled")
    ]  # fmt: skip
    assert (now.valid["cam-0"]["seq"], now.valid["cam-0"].current) == (1, False)
