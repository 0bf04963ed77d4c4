"""``detpipe edge fleet`` as a process against the moto S3 server, on reports of real agent processes:
the table and its JSON; forged, replayed, unsigned and unenrolled reports change nothing and are
counted by reason; bad input exits 2 in one line, an unreachable store 5."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edge_support import Models, S3Fleet, run_agent
from securesystemslib.signer import CryptoSigner
from store_servers import free_port

from detpipe.edge.keys import load_signer
from detpipe.edge.publish import PublishConfig, publish_version
from detpipe.edge.reports import REASONS, load_public_key, register, report_key, sign_report, trusted_root

DEVICES = ("cam-1", "cam-2", "cam-3", "cam-4", "cam-5")
UNCHANGED = ("devices", "by_version", "by_outcome", "target", "failing", "stale", "inventory")


def detpipe(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    checkout = str(Path(__file__).parents[2])
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "edge", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": checkout, **env},
    )


def agents(fleet: S3Fleet, keys: Path, tmp_path: Path, devices: tuple[str, ...]) -> None:
    def one(device_id: str) -> None:
        done = run_agent(
            ["--store", fleet.uri, "--device-class", "cpu", "--device-id", device_id, "--trust",
             str(keys / "root.json"), "--dir", str(tmp_path / device_id), "--once"],
            env=fleet.env(),
        )  # fmt: skip
        assert done.returncode in (0, 1), done.stderr

    with ThreadPoolExecutor(len(devices)) as pool:
        list(pool.map(one, devices))


def fleet_json(fleet: S3Fleet, out: Path, *extra: str) -> tuple[dict, str]:
    done = detpipe("fleet", "--store", fleet.uri, "--device-class", "cpu", "--json", str(out), *extra,
                   env=fleet.env())  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text()), done.stdout


def test_fleet_table_and_json_on_five_agents(s3_fleet: S3Fleet, keys: Path, models: Models, tmp_path: Path):
    store = s3_fleet.store()
    publish_version(store, PublishConfig("cpu", "1", models.good, "onnx", keys))
    agents(s3_fleet, keys, tmp_path, DEVICES)
    for device_id in DEVICES[:4]:  # cam-5 is never enrolled
        done = detpipe("enroll", "--store", s3_fleet.uri, "--device-class", "cpu", "--device-id", device_id,
                       "--pubkey", str(tmp_path / device_id / "device.pub"), "--keys", str(keys),
                       env=s3_fleet.env())  # fmt: skip
        assert done.returncode == 0 and "registered at" in done.stdout, done.stderr
    publish_version(store, PublishConfig("cpu", "2", models.nan, "onnx", keys))
    agents(s3_fleet, keys, tmp_path, DEVICES[:2])  # v2 fails its health check on cam-1 and cam-2

    doc, table = fleet_json(s3_fleet, tmp_path / "fleet.json", "--version", "2", "--stale", "1h")
    assert doc["devices"] == {"enrolled": 4, "reporting": 4, "stale": 0}
    assert doc["by_version"] == {"1": 4} and doc["by_outcome"] == {"installed": 2, "rolled-back": 2}
    assert doc["target"] == {"version": "2", "running": 0, "failed": 2, "incompatible": 0, "pending": 2}
    assert [(f["device_id"], f["outcome"], f["version"], f["tried_version"]) for f in doc["failing"]] == [
        ("cam-1", "rolled-back", "1", "2"), ("cam-2", "rolled-back", "1", "2")
    ]  # fmt: skip
    assert all("non-finite" in f["error"] for f in doc["failing"])
    assert doc["ignored"]["counts"] == {**dict.fromkeys(REASONS, 0), "unenrolled": 1}
    assert [(i["device_id"], i["reason"]) for i in doc["ignored"]["reports"]] == [("cam-5", "unenrolled")]
    assert doc["inventory"]["tensorrt"] == {"none": 4} and doc["inventory"]["jetpack"] == {"none": 4}
    assert [r["seq"] for r in doc["reports"]] == [2, 2, 1, 1]
    assert table.splitlines()[0] == (
        f"fleet cpu at {s3_fleet.uri}: 4 enrolled, 4 reporting, 0 stale (no valid report for 1h)"
    )
    assert "version 2: 0 running, 2 failed, 0 incompatible, 2 pending" in table
    assert "  cam-5  unenrolled: no " in table
    assert "  cam-1  rolled-back  tried 2: " in table and "  rolled-back  2" in table

    done = detpipe("enroll", "--store", s3_fleet.uri, "--device-class", "cpu", "--device-id", "cam-4",
                   "--revoke", env=s3_fleet.env())  # fmt: skip
    assert done.returncode == 0 and "cam-4 (cpu): revoked" in done.stdout, done.stderr
    doc, _ = fleet_json(s3_fleet, tmp_path / "after-revoke.json")
    assert doc["devices"]["enrolled"] == 3 and doc["ignored"]["counts"]["unenrolled"] == 2


def test_forged_replayed_unsigned_and_unenrolled_reports_change_nothing(
    s3_fleet: S3Fleet, keys: Path, tmp_path: Path
) -> None:
    store = s3_fleet.store()
    artifact = tmp_path / "not-a-model.onnx"
    artifact.write_bytes(b"not a model: the health check refuses it")
    publish_version(store, PublishConfig("cpu", "1", artifact, "onnx", keys))
    agents(s3_fleet, keys, tmp_path, ("cam-1", "cam-2", "cam-3"))
    root = trusted_root(store)
    for device_id in ("cam-1", "cam-2"):  # cam-3 reports, signed, but is not enrolled
        register(store, "cpu", device_id, load_public_key(tmp_path / device_id / "device.pub"),
                 [load_signer(keys, "targets")], root)  # fmt: skip
    old_report = store.get_bytes(report_key("cam-1"))  # seq 1
    agents(s3_fleet, keys, tmp_path, ("cam-1",))  # seq 2
    base, _ = fleet_json(s3_fleet, tmp_path / "base.json")
    assert base["devices"] == {"enrolled": 2, "reporting": 2, "stale": 0}
    assert base["ignored"]["counts"]["unenrolled"] == 1

    good2 = json.loads(store.get_bytes(report_key("cam-2")))
    fields = {k: v for k, v in good2.items() if k not in ("signature", "seq", "schema", "reported_at")}
    claim = {**fields, "outcome": "installed", "version": "9", "last_error": None}
    attacks = {
        "forged": sign_report(claim, CryptoSigner.generate_ed25519(), 99),  # another key, a newer seq
        "unsigned": {k: v for k, v in claim.items()},
    }
    counts = dict(base["ignored"]["counts"])
    for reason, doc in attacks.items():
        store.put_bytes(report_key("cam-2"), json.dumps(doc).encode())
        now, _ = fleet_json(s3_fleet, tmp_path / f"{reason}.json")
        counts[reason] += 1
        assert {k: now[k] for k in UNCHANGED if k in base} == {k: base[k] for k in UNCHANGED if k in base}
        assert now["ignored"]["counts"] == counts, reason
        assert (reason, "cam-2") in [(i["reason"], i["device_id"]) for i in now["ignored"]["reports"]]
        counts[reason] -= 1  # the next attack replaces this report
    store.put_bytes(report_key("cam-2"), json.dumps(good2).encode())  # the device's own, seen before: valid

    store.put_bytes(report_key("cam-1"), old_report)  # replayed: a validly signed, older report
    now, table = fleet_json(s3_fleet, tmp_path / "replayed.json")
    assert {k: now[k] for k in UNCHANGED if k in base} == {k: base[k] for k in UNCHANGED if k in base}
    assert now["ignored"]["counts"] == {**counts, "replayed": 1}
    assert "  cam-1  replayed: seq 1, last seen 2" in table
    row = next(r for r in now["reports"] if r["device_id"] == "cam-1")
    assert (row["seq"], row["current"]) == (2, False)  # the last valid report still counts
    seen = json.loads(store.get_bytes("ota/fleet/cpu/seen.json"))
    assert seen["devices"]["cam-1"]["seq"] == 2 and set(seen["devices"]) == {"cam-1", "cam-2"}


def test_bad_input_exits_2_in_one_line_and_an_unreachable_store_5(s3_fleet: S3Fleet, keys: Path) -> None:
    base = ["fleet", "--store", s3_fleet.uri]
    for extra, message in (
        (["--device-class", "../x"], "device class '../x'"),
        (["--device-class", "cpu", "--version", "../2"], "version '../2'"),
        (["--device-class", "cpu"], "nothing published yet"),  # an empty bucket, no --trust
    ):
        done = detpipe(*base, *extra, env=s3_fleet.env())
        assert done.returncode == 2 and done.stdout == "", done.stderr
        (line,) = done.stderr.splitlines()
        assert line.startswith("detpipe edge: error: ") and message in line, line
    done = detpipe(
        *base, "--device-class", "cpu", "--stale", "0h", env=s3_fleet.env()
    )  # argparse: usage + 1 line
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith(
        "detpipe edge fleet: error: argument --stale: expected a duration"
    )
    dead = {
        **s3_fleet.env(),
        "DETPIPE_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "DETPIPE_S3_RETRIES": "1",
    }
    done = detpipe(*base, "--device-class", "cpu", "--trust", str(keys / "root.json"), env=dead)
    assert done.returncode == 5, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("detpipe edge: error: ")
