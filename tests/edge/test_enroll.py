"""``detpipe edge enroll`` as a process: files and modes, the secret kept out of output, --apply.

``--apply`` drives the ``minio`` package's real ``MinioAdmin`` over HTTP. No MinIO server
runs here, so it talks to a loopback stand-in of the three admin endpoints it calls
(``add-canned-policy``, ``add-user``, ``idp/builtin/policy/attach``) that records each
request and decrypts the encrypted bodies with the admin secret, as MinIO does: the test
checks what MinIO would be told, not that MinIO enforces it (tests/edge/test_policy.py runs
the policy against moto's IAM).
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from detpipe.edge.enroll import Enrollment, mc_commands
from detpipe.edge.policy import device_policy
from detpipe.store.config import S3Config

ROOT_KEY, ROOT_SECRET = "detpipe-root", "root-secret-Zq81-not-a-device-one"
STORE = "s3://detpipe"


def enroll(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DETPIPE_S3_", "AWS_", "MINIO_"))}
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "edge", "enroll", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_out_writes_the_policy_and_0600_credentials_and_never_prints_the_secret(tmp_path: Path) -> None:
    out = tmp_path / "enroll" / "cam-17"
    done = enroll("--store", STORE, "--device-class", "cpu", "--device-id", "cam-17", "--out", str(out))
    assert done.returncode == 0, done.stderr
    creds = out / "credentials"
    secret = (creds / "secretkey").read_text().strip()
    assert (creds / "accesskey").read_text().strip() == "cam-17"
    assert len(secret) == 40 and secret not in done.stdout + done.stderr
    assert _mode(creds) == 0o700 and _mode(creds / "secretkey") == _mode(creds / "accesskey") == 0o600
    assert json.loads((out / "policy.json").read_text()) == device_policy(STORE)
    assert json.loads((out / "device.json").read_text()) == {
        "device_id": "cam-17",
        "device_class": "cpu",
        "store": STORE,
        "user": "cam-17",
        "policy": "detpipe-edge-device",
    }
    script = (out / "enroll.sh").read_text()
    assert secret not in script and f'"$(cat {creds}/secretkey)"' in script
    assert "mc admin policy attach detpipe detpipe-edge-device --user cam-17" in done.stdout
    assert "user not created yet" in done.stdout
    # the agent reads them as it reads a mounted Secret: DETPIPE_S3_SECRET_DIR
    cfg = S3Config.from_env(
        {"DETPIPE_S3_ENDPOINT": "https://minio:9000", "DETPIPE_S3_SECRET_DIR": str(creds)}
    )
    assert (cfg.access_key, cfg.secret_key) == ("cam-17", secret)

    again = enroll("--store", STORE, "--device-class", "cpu", "--device-id", "cam-17", "--out", str(out))
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "--overwrite" in again.stderr
    assert (creds / "secretkey").read_text().strip() == secret
    rotated = enroll(
        "--store", STORE, "--device-class", "cpu", "--device-id", "cam-17", "--out", str(out), "--overwrite"
    )
    assert rotated.returncode == 0 and (creds / "secretkey").read_text().strip() != secret


def test_without_out_it_prints_policy_and_commands_and_makes_no_secret(tmp_path: Path) -> None:
    done = enroll("--store", "s3://detpipe/fleet", "--device-class", "cpu", "--device-id", "cam-17")
    assert done.returncode == 0, done.stderr
    policy_text = done.stdout.split("\n", 1)[1].split("\n# MinIO")[0]
    assert json.loads(policy_text) == device_policy("s3://detpipe/fleet")
    assert 'mc admin user add detpipe cam-17 "$DEVICE_SECRET_KEY"' in done.stdout
    assert mc_commands(Enrollment("s3://detpipe/fleet", "cpu", "cam-17"))[-1] in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device-id", "../cam"], "device id '../cam'"),
        (["--device-id", "Cam 17"], "device id 'Cam 17'"),
        (["--device-id", "cam-17", "--store", "runs/store"], "device credentials are for an s3:// store"),
        (["--device-id", "cam-17", "--device-class", "../x"], "device class"),
        (["--device-id", "cam-17", "--apply"], "--apply needs --out DIR"),
        (
            ["--device-id", "cam-17", "--minio-admin-url", "https://m:9000"],
            "--minio-admin-url is for --apply",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], message: str) -> None:
    base = {"--store": STORE, "--device-class": "cpu"}
    argv = [w for k, v in base.items() if k not in args for w in (k, v)] + args
    done = enroll(*argv)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("detpipe edge: error: ") and message in line, line


@dataclass
class AdminStandIn:
    """Records MinIO admin API requests; ``fail`` maps a command to (status, JSON body)."""

    url: str
    requests: list[dict] = field(default_factory=list)
    fail: dict[str, tuple[int, dict]] = field(default_factory=dict)


@pytest.fixture
def admin_api() -> Iterator[AdminStandIn]:
    from minio.crypto import decrypt
    from urllib3 import HTTPResponse

    state = AdminStandIn("")

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            parts = urlsplit(self.path)
            command = parts.path.removeprefix("/minio/admin/v3/")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if command in ("add-user", "idp/builtin/policy/attach"):  # madmin-encrypted bodies
                body = decrypt(HTTPResponse(body=io.BytesIO(body), preload_content=False), ROOT_SECRET)
            state.requests.append(
                {
                    "method": self.command,
                    "command": command,
                    "query": {k: v[0] for k, v in parse_qs(parts.query).items()},
                    "body": json.loads(body) if body else None,
                    "signed_by": self.headers.get("Authorization", "").split("Credential=")[1].split("/")[0],
                }
            )
            status, doc = state.fail.get(command, (204 if command.startswith("idp/") else 200, {}))
            data = json.dumps(doc).encode() if doc else b""
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _apply(admin: AdminStandIn, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {
        "AWS_ACCESS_KEY_ID": ROOT_KEY,
        "AWS_SECRET_ACCESS_KEY": ROOT_SECRET,
        "DETPIPE_S3_REGION": "us-east-1",
    }
    argv = ["--store", STORE, "--device-class", "cpu", "--device-id", "cam-17", "--out", str(out), "--apply"]
    return enroll(*argv, "--minio-admin-url", admin.url, *extra, env=env)


def test_apply_creates_the_policy_and_user_and_attaches_them(admin_api: AdminStandIn, tmp_path: Path) -> None:
    done = _apply(admin_api, tmp_path / "cam-17")
    assert done.returncode == 0, done.stderr
    secret = (tmp_path / "cam-17" / "credentials" / "secretkey").read_text().strip()
    assert secret not in done.stdout + done.stderr and "user created in MinIO" in done.stdout
    assert [(r["method"], r["command"], r["query"]) for r in admin_api.requests] == [
        ("PUT", "add-canned-policy", {"name": "detpipe-edge-device"}),
        ("PUT", "add-user", {"accessKey": "cam-17"}),
        ("POST", "idp/builtin/policy/attach", {}),
    ]
    policy, user, attach = (r["body"] for r in admin_api.requests)
    assert policy == device_policy(STORE)
    assert user == {"status": "enabled", "secretKey": secret}
    assert attach == {"policies": ["detpipe-edge-device"], "user": "cam-17"}
    assert {r["signed_by"] for r in admin_api.requests} == {ROOT_KEY}


def test_apply_again_keeps_an_existing_attachment(admin_api: AdminStandIn, tmp_path: Path) -> None:
    admin_api.fail["idp/builtin/policy/attach"] = (
        400,
        {
            "Code": "XMinioAdminPolicyChangeAlreadyApplied",
            "Message": "The specified policy change is already in effect.",
        },
    )
    done = _apply(admin_api, tmp_path / "cam-17")
    assert done.returncode == 0, done.stderr


def test_apply_refused_by_minio_is_one_line_naming_the_step(admin_api: AdminStandIn, tmp_path: Path) -> None:
    admin_api.fail["add-user"] = (403, {"Code": "AccessDenied", "Message": "Access Denied."})
    done = _apply(admin_api, tmp_path / "cam-17")
    assert done.returncode == 5, done.stderr
    (line,) = done.stderr.splitlines()
    assert line == (
        f"detpipe edge: error: MinIO admin at {admin_api.url.removeprefix('http://')}: "
        "add user cam-17 failed: HTTP 403 AccessDenied: Access Denied."
    )
    assert ROOT_SECRET not in done.stderr


def test_apply_without_admin_credentials_exits_2(tmp_path: Path) -> None:
    done = enroll(
        "--store", STORE, "--device-class", "cpu", "--device-id", "cam-17", "--out", str(tmp_path / "o"),
        "--apply", "--minio-admin-url", "http://127.0.0.1:9",
    )  # fmt: skip
    assert done.returncode == 2 and "needs MinIO's admin (root) credentials" in done.stderr


# -- device keys: --pubkey FILE --keys DIR, --revoke -------------------------------------------------


@pytest.fixture
def published(tmp_path: Path, keys: Path) -> Path:
    """A local store the fleet of ``keys`` has published to, and a device key pair."""
    from detpipe.edge.publish import PublishConfig, publish_version
    from detpipe.edge.reports import ensure_device_key
    from detpipe.store import LocalStore

    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"an artifact")
    publish_version(LocalStore(tmp_path / "store"), PublishConfig("cpu", "1", artifact, "onnx", keys))
    ensure_device_key(tmp_path / "device")
    return tmp_path / "store"


def test_pubkey_registers_the_key_signed_with_the_targets_key_and_revoke_removes_it(
    published: Path, keys: Path, tmp_path: Path
) -> None:
    from detpipe.edge.reports import load_public_key, trusted_root, verify_registration
    from detpipe.store import LocalStore

    pub = tmp_path / "device" / "device.pub"
    argv = ["--store", str(published), "--device-class", "cpu", "--device-id", "cam-17"]
    done = enroll(*argv, "--pubkey", str(pub), "--keys", str(keys))
    assert done.returncode == 0, done.stderr
    store = LocalStore(published)
    doc = json.loads(store.get_bytes("ota/devices/cpu/cam-17.json"))
    assert verify_registration(doc, trusted_root(store), "cpu", "cam-17") == load_public_key(pub)
    assert "cam-17 (cpu): key " in done.stdout and "registered at" in done.stdout

    done = enroll(*argv, "--revoke")
    assert done.returncode == 0 and "cam-17 (cpu): revoked" in done.stdout, done.stderr
    assert not store.exists("ota/devices/cpu/cam-17.json")
    assert "was not enrolled" in enroll(*argv, "--revoke").stdout


def test_a_key_of_another_fleet_registers_nothing(published: Path, tmp_path: Path) -> None:
    from detpipe.edge.keys import keygen

    other = keygen(tmp_path / "other-keys").parent
    argv = ["--store", str(published), "--device-class", "cpu", "--device-id", "cam-17"]
    done = enroll(*argv, "--pubkey", str(tmp_path / "device" / "device.pub"), "--keys", str(other))
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert "another fleet's keys" in line, line
    assert not (published / "ota" / "devices").exists()


def test_pubkey_with_out_also_writes_the_registration(s3_fleet, keys: Path, tmp_path: Path) -> None:
    from detpipe.edge.publish import PublishConfig, publish_version
    from detpipe.edge.reports import ensure_device_key

    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"an artifact")
    publish_version(s3_fleet.store(), PublishConfig("cpu", "1", artifact, "onnx", keys))
    ensure_device_key(tmp_path / "device")
    out = tmp_path / "enroll" / "cam-17"
    done = enroll(
        "--store", s3_fleet.uri, "--device-class", "cpu", "--device-id", "cam-17", "--out", str(out),
        "--pubkey", str(tmp_path / "device" / "device.pub"), "--keys", str(keys), env=s3_fleet.env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    registered = json.loads(s3_fleet.store().get_bytes("ota/devices/cpu/cam-17.json"))
    assert json.loads((out / "registration.json").read_text()) == registered
    assert (out / "credentials" / "secretkey").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pubkey", "PUB"], "--pubkey FILE and --keys DIR go together"),
        (["--keys", "KEYS"], "--pubkey FILE and --keys DIR go together"),
        (["--revoke", "--pubkey", "PUB"], "--revoke removes a registration: no --pubkey or --out with it"),
        (["--pubkey", "NOTAKEY", "--keys", "KEYS"], "not a PEM public key"),
    ],
)
def test_device_key_bad_input_exits_2_with_one_line(
    extra: list[str], message: str, published: Path, keys: Path, tmp_path: Path
) -> None:
    (tmp_path / "notakey").write_text("hello")
    paths = {
        "PUB": str(tmp_path / "device" / "device.pub"),
        "KEYS": str(keys),
        "NOTAKEY": str(tmp_path / "notakey"),
    }
    argv = ["--store", str(published), "--device-class", "cpu", "--device-id", "cam-17"]
    done = enroll(*argv, *[paths.get(a, a) for a in extra])
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("detpipe edge: error: ") and message in line, line
