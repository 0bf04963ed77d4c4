"""A device's store policy, enforced by a real S3 server (moto with IAM auth on).

What is tested where:

* **Enforcement (concrete form).** moto checks a signed request's action and object ARN
  against the user's IAM policies (``*`` wildcards, Allow/Deny), but it does not substitute
  policy variables: in moto a ``${aws:username}`` resource matches nothing. So the enforcing
  tests attach the concrete form, ``device_policy(store, username="cam-17")``, to an IAM user
  ``cam-17`` and talk to moto with that user's keys through detpipe's own S3 store and the OTA
  agent.
* **The MinIO form** (``devices/${aws:username}/*``, what ``detpipe edge enroll`` prints and
  applies) is checked structurally: it is the concrete form with the user's name substituted,
  as MinIO does for a user whose name is its access key, and its version is the one that has
  policy variables. MinIO itself is not run here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from store_servers import ALLOW_S3, IamUsers, MotoServer, s3_config

from detpipe.edge.agent import Agent, AgentConfig
from detpipe.edge.keys import keygen
from detpipe.edge.policy import USERNAME_VARIABLE, check_device_id, device_policy
from detpipe.edge.publish import PublishConfig, publish_target
from detpipe.errors import InvalidInput, StoreError
from detpipe.store import S3Store, open_store
from detpipe.store.config import S3Config

DEVICE, OTHER = "cam-17", "cam-18"


@dataclass(frozen=True)
class Keys:
    access: str
    secret: str


@dataclass(frozen=True)
class Fleet:
    server: MotoServer
    bucket: str
    admin: Keys
    device: Keys  # the IAM user DEVICE, with the concrete policy of DEVICE attached

    def store(self, keys: Keys, **overrides: object) -> S3Store:
        cfg = s3_config(self.server.endpoint, access_key=keys.access, secret_key=keys.secret, **overrides)
        store = open_store(f"s3://{self.bucket}", s3=cfg)
        assert isinstance(store, S3Store)
        return store

    def config(self, keys: Keys) -> S3Config:
        return s3_config(self.server.endpoint, access_key=keys.access, secret_key=keys.secret)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    """moto with IAM enforced: an admin user (``s3:*``) and the device user ``cam-17``.

    Users, keys and the bucket are made while moto still lets requests through without
    authentication; ``/moto-api/reset-auth`` with 0 (what ``INITIAL_NO_AUTH_ACTION_COUNT``
    sets at start-up) then makes every request need a known key, a valid signature and a
    policy that allows it.
    """
    server = MotoServer()
    try:
        users = IamUsers(server)
        admin = users.add("pipeline", ALLOW_S3)
        bucket = server.make_bucket()
        device = users.add(DEVICE, device_policy(f"s3://{bucket}", username=DEVICE), "detpipe-edge-device")
        users.enforce()
        admin_keys = Keys(*admin)
        fleet = Fleet(server, bucket, admin_keys, Keys(*device))
        fleet.store(admin_keys).put_bytes("ota/metadata/probe.json", b"{}")
        fleet.store(admin_keys).put_bytes("models/yolo/1/manifest.json", b"{}")
        yield fleet
    finally:
        server.kill()


def test_device_reads_ota_and_writes_only_its_own_status(fleet: Fleet) -> None:
    store = fleet.store(fleet.device)
    assert store.get_bytes("ota/metadata/probe.json") == b"{}"
    store.put_bytes(f"devices/{DEVICE}/status.json", b'{"outcome": "unchanged"}')
    admin = fleet.store(fleet.admin)
    assert admin.get_bytes(f"devices/{DEVICE}/status.json") == b'{"outcome": "unchanged"}'


@pytest.mark.parametrize(
    "attack",
    [
        pytest.param(lambda s: s.put_bytes(f"devices/{OTHER}/status.json", b"{}"), id="other-device-status"),
        pytest.param(lambda s: s.put_bytes("models/yolo/1/manifest.json", b"{}"), id="replace-release"),
        pytest.param(lambda s: s.put_bytes("models/yolo/2/model.onnx", b"x"), id="new-release"),
        pytest.param(lambda s: s.get_bytes("models/yolo/1/manifest.json"), id="read-release"),
        pytest.param(lambda s: s.put_bytes("ota/metadata/timestamp.json", b"{}"), id="write-ota"),
        pytest.param(lambda s: s.delete("ota/metadata/probe.json"), id="delete-ota"),
        pytest.param(lambda s: s.delete(f"devices/{DEVICE}/status.json"), id="delete-own-status"),
        pytest.param(lambda s: s.list("devices/"), id="list-devices"),
    ],
)
def test_device_is_denied_everything_else(fleet: Fleet, attack) -> None:
    admin = fleet.store(fleet.admin)
    with pytest.raises(StoreError, match="access denied"):
        attack(fleet.store(fleet.device))
    assert admin.get_bytes("models/yolo/1/manifest.json") == b"{}"
    assert admin.get_bytes("ota/metadata/probe.json") == b"{}"
    assert not admin.exists(f"devices/{OTHER}/status.json")


def test_without_a_region_the_client_may_ask_the_buckets_location(fleet: Fleet) -> None:
    """The minio client asks GetBucketLocation first when no region is set (the k8s default)."""
    store = fleet.store(fleet.device, region=None)
    assert store.get_bytes("ota/metadata/probe.json") == b"{}"


def test_the_agent_runs_a_cycle_with_only_its_device_credentials(
    fleet: Fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """TUF refresh (root probe included), target download and status report, as cam-17."""
    keys = tmp_path / "ota-keys"
    root = keygen(keys)
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"not a model: the health check refuses it after download and verify")
    publish_target(fleet.store(fleet.admin), PublishConfig("cpu", "1", artifact, "onnx", keys))

    def agent(device_id: str) -> Agent:
        cfg = AgentConfig(f"s3://{fleet.bucket}", "cpu", device_id, root, tmp_path / device_id)
        return Agent(cfg, s3=fleet.config(fleet.device))

    with caplog.at_level(logging.WARNING):
        result = agent(DEVICE).run_once()
    assert result["outcome"] == "rolled-back", result  # downloaded + verified, then refused by health
    assert "could not report status" not in caplog.text
    status = json.loads(fleet.store(fleet.admin).get_bytes(f"devices/{DEVICE}/status.json"))
    assert status["device_id"] == DEVICE and status["outcome"] == "rolled-back"

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        agent(OTHER).run_once()  # a stolen cam-17 key posing as cam-18
    assert "could not report status to the store: access denied" in caplog.text
    assert not fleet.store(fleet.admin).exists(f"devices/{OTHER}/status.json")


def test_minio_form_is_the_concrete_form_with_the_user_name_substituted() -> None:
    variable = device_policy("s3://detpipe/fleet")
    text = json.dumps(variable)
    assert text.count(USERNAME_VARIABLE) == 1
    assert json.loads(text.replace(USERNAME_VARIABLE, DEVICE)) == device_policy("s3://detpipe/fleet", DEVICE)
    assert variable["Version"] == "2012-10-17"  # 2008-10-17 documents do not expand variables
    by_sid = {s["Sid"]: s for s in variable["Statement"]}
    assert by_sid["WriteOwnStatus"]["Resource"] == ["arn:aws:s3:::detpipe/fleet/devices/${aws:username}/*"]
    assert by_sid["ReadOta"] == {
        "Sid": "ReadOta",
        "Effect": "Allow",
        "Action": ["s3:GetObject"],
        "Resource": ["arn:aws:s3:::detpipe/fleet/ota/*"],
    }
    assert by_sid["NeverReleases"]["Effect"] == "Deny"
    allowed = [a for s in variable["Statement"] if s["Effect"] == "Allow" for a in s["Action"]]
    assert sorted(allowed) == ["s3:GetBucketLocation", "s3:GetObject", "s3:PutObject"]  # no wildcards
    for statement in variable["Statement"]:
        for resource in statement["Resource"]:
            assert resource == "arn:aws:s3:::detpipe" or resource.startswith("arn:aws:s3:::detpipe/fleet/")


@pytest.mark.parametrize(
    "bad",
    ["", "ab", "..", "../cam", "cam/17", "Cam-17", "-cam", "cam\x0017", "cam\r\n17", "a=b", "c,d", "x" * 64],
)
def test_device_ids_that_could_escape_a_path_or_label_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput, match="device id"):
        check_device_id(bad)
    with pytest.raises(InvalidInput, match="device id"):
        device_policy("s3://detpipe", username=bad)


def test_only_s3_stores_have_device_policies(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="s3:// store"):
        device_policy(str(tmp_path))
    assert check_device_id("jetson-orin.7_a") == "jetson-orin.7_a"
