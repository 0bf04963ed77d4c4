"""``detpipe edge enroll``: a device's own store user, its policy, and the files its node gets.

Each device has a MinIO user named by its device id (the access key) with a generated
secret, and the one device policy (:func:`detpipe.edge.policy.device_policy`, MinIO form:
``devices/${aws:username}/*``) attached. Nothing is shared between devices, and no device
holds the root user::

    enrollment = Enrollment("s3://detpipe", "orin-sm87-trt10.3.0", "cam-17")
    creds = new_credentials(enrollment.device_id)
    files = write_enrollment(enrollment, creds, Path("enroll/cam-17"))  # policy.json, credentials/ (0600)
    print("\\n".join(mc_commands(enrollment, files)))                     # or apply it:
    apply_enrollment(enrollment, creds, admin_config)                    # the minio package's MinioAdmin

The node is provisioned with ``credentials/{accesskey,secretkey}`` at
``/etc/detpipe-edge/minio/`` (:data:`NODE_CREDENTIALS_DIR`): the systemd unit loads them as
credentials, the k8s DaemonSet mounts that host directory, ``docker run`` mounts it too.
The secret key is written only there (mode 0600) and sent only to MinIO; it is never printed
or logged. Enrolling a device again gives it a new secret key.

Device keys of the fleet work (``--pubkey FILE --keys DIR``) are to join as a field of
:class:`Enrollment` and one more file in the output directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detpipe.edge.policy import DEFAULT_POLICY_NAME, check_device_id, device_policy, store_location
from detpipe.edge.targets import check_device_class
from detpipe.errors import InvalidInput, StoreError
from detpipe.io import write_bytes, write_json
from detpipe.store.config import SECRET_ACCESS_KEY_FILE, SECRET_SECRET_KEY_FILE, S3Config

log = logging.getLogger(__name__)

NODE_CREDENTIALS_DIR = "/etc/detpipe-edge/minio"
AGENT_UID = 1000  # the edge image's and DaemonSet's user
POLICY_FILE = "policy.json"
DEVICE_FILE = "device.json"
CREDENTIALS = "credentials"
COMMANDS_FILE = "enroll.sh"
SECRET_BYTES = 30  # token_urlsafe(30): 40 characters, MinIO's longest generated secret


@dataclass(frozen=True)
class Enrollment:
    """Who is enrolled where.

    Attributes:
        store: the agent's ``--store`` (``s3://bucket[/prefix]``).
        device_class: the device's class (``--device-class`` of its agent).
        device_id: the device's id: its MinIO user name and ``devices/<id>/`` in the store.
        policy_name: the MinIO policy every device user is attached to.
    """

    store: str
    device_class: str
    device_id: str
    policy_name: str = DEFAULT_POLICY_NAME

    def __post_init__(self) -> None:
        store_location(self.store)
        check_device_class(self.device_class)
        check_device_id(self.device_id)

    def policy(self) -> dict[str, Any]:
        """The MinIO-form policy document (``${aws:username}``)."""
        return device_policy(self.store)

    def describe(self) -> dict[str, str]:
        """What ``device.json`` records: everything but secrets."""
        return {
            "device_id": self.device_id,
            "device_class": self.device_class,
            "store": self.store,
            "user": self.device_id,
            "policy": self.policy_name,
        }


@dataclass(frozen=True)
class DeviceCredentials:
    """A device user's keys; the secret is not in ``repr``."""

    access_key: str
    secret_key: str = field(repr=False)


def new_credentials(device_id: str) -> DeviceCredentials:
    """The device's user (its id) and a fresh secret from :mod:`secrets`."""
    return DeviceCredentials(check_device_id(device_id), secrets.token_urlsafe(SECRET_BYTES))


@dataclass(frozen=True)
class EnrollmentFiles:
    """Where :func:`write_enrollment` put things."""

    out: Path
    policy: Path
    device: Path
    credentials: Path  # the directory the node installs at NODE_CREDENTIALS_DIR
    commands: Path


@contextlib.contextmanager
def _private_umask() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def write_enrollment(
    enrollment: Enrollment, creds: DeviceCredentials, out: Path, *, overwrite: bool = False
) -> EnrollmentFiles:
    """Write ``policy.json``, ``device.json``, ``credentials/`` (0700; files 0600) and ``enroll.sh``.

    Raises:
        InvalidInput: ``out`` already holds credentials and ``overwrite`` is false.
    """
    cred_dir = out / CREDENTIALS
    secret_file = cred_dir / SECRET_SECRET_KEY_FILE
    if secret_file.exists() and not overwrite:
        raise InvalidInput(
            f"{secret_file} exists: pass --overwrite to enroll {enrollment.device_id} again with a new secret"
        )
    files = EnrollmentFiles(out, out / POLICY_FILE, out / DEVICE_FILE, cred_dir, out / COMMANDS_FILE)
    write_json(files.policy, enrollment.policy())
    write_json(files.device, enrollment.describe())
    with _private_umask():
        cred_dir.mkdir(parents=True, exist_ok=True)
        cred_dir.chmod(0o700)
        for name, value in (
            (SECRET_ACCESS_KEY_FILE, creds.access_key),
            (SECRET_SECRET_KEY_FILE, creds.secret_key),
        ):
            write_bytes(cred_dir / name, value.encode() + b"\n")
            (cred_dir / name).chmod(0o600)
    commands = mc_commands(enrollment, files)
    write_bytes(files.commands, ("#!/bin/sh\nset -eu\n" + "\n".join(commands) + "\n").encode())
    files.commands.chmod(0o700)
    return files


def mc_commands(
    enrollment: Enrollment, files: EnrollmentFiles | None = None, alias: str = "detpipe"
) -> list[str]:
    """The ``mc`` commands that do what :func:`apply_enrollment` does, then the node's provisioning.

    The secret key is read from the credentials file when the command runs (``$(cat ...)``),
    never spelled out. Without ``files`` the policy is ``policy.json`` and the secret
    ``$DEVICE_SECRET_KEY``.
    """
    q = shlex.quote
    user = enrollment.device_id
    if files is None:
        policy, secret, cred_dir = POLICY_FILE, '"$DEVICE_SECRET_KEY"', CREDENTIALS
    else:
        policy, cred_dir = str(files.policy), str(files.credentials)
        secret = f'"$(cat {q(str(files.credentials / SECRET_SECRET_KEY_FILE))})"'
    node = NODE_CREDENTIALS_DIR
    creds = " ".join(q(f"{cred_dir}/{n}") for n in (SECRET_ACCESS_KEY_FILE, SECRET_SECRET_KEY_FILE))
    return [
        f"# MinIO (mc alias {alias} -> the store's admin endpoint, as the root user)",
        f"mc admin policy create {q(alias)} {q(enrollment.policy_name)} {q(policy)}",
        f"mc admin user add {q(alias)} {q(user)} {secret}",
        f"mc admin policy attach {q(alias)} {q(enrollment.policy_name)} --user {q(user)}",
        f"# on the device {user} (the agent runs as uid {AGENT_UID}; its DaemonSet mounts {node})",
        f"install -d -o {AGENT_UID} -g {AGENT_UID} -m 0700 {node}",
        f"install -o {AGENT_UID} -g {AGENT_UID} -m 0400 {creds} {node}/",
    ]


def admin_client(config: S3Config) -> Any:
    """A ``minio.MinioAdmin`` for ``config`` (endpoint, root credentials, TLS and CA bundle)."""
    from minio import MinioAdmin
    from minio.credentials import StaticProvider

    from detpipe.store.s3 import http_pool

    if not config.access_key or not config.secret_key:
        raise InvalidInput(
            "--apply needs MinIO's admin (root) credentials: set DETPIPE_S3_SECRET_DIR, "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or MINIO_ACCESS_KEY/MINIO_SECRET_KEY"
        )
    provider = StaticProvider(config.access_key, config.secret_key, config.session_token)
    return MinioAdmin(
        endpoint=config.endpoint,
        credentials=provider,
        region=config.region or "",
        secure=config.secure,
        http_client=http_pool(config),
    )


def apply_enrollment(enrollment: Enrollment, creds: DeviceCredentials, admin_config: S3Config) -> None:
    """Create the policy and the device's user in MinIO and attach one to the other.

    Re-running is safe: the policy is replaced with the same document, the user gets the new
    secret, and an attachment that exists already is kept.

    Raises:
        InvalidInput: no admin credentials.
        StoreError: MinIO refused a step or could not be reached (the step is named).
    """
    admin = admin_client(admin_config)
    _admin_step(
        f"create policy {enrollment.policy_name}",
        admin_config,
        lambda: admin.policy_add(enrollment.policy_name, policy=enrollment.policy()),
    )
    _admin_step(
        f"add user {creds.access_key}",
        admin_config,
        lambda: admin.user_add(creds.access_key, creds.secret_key),
    )
    _admin_step(
        f"attach policy {enrollment.policy_name} to {creds.access_key}",
        admin_config,
        lambda: admin.attach_policy([enrollment.policy_name], user=creds.access_key),
        already_ok="XMinioAdminPolicyChangeAlreadyApplied",
    )
    log.info(
        "enrolled %s in MinIO at %s (policy %s)",
        creds.access_key,
        admin_config.endpoint,
        enrollment.policy_name,
    )


def _admin_step(what: str, config: S3Config, call: Any, already_ok: str | None = None) -> None:
    import urllib3
    from minio.error import MinioAdminException

    from detpipe.store.retry import describe
    from detpipe.store.s3 import tls_failure, tls_problem

    try:
        call()
    except MinioAdminException as e:
        body = str(getattr(e, "_body", ""))
        if already_ok and already_ok in body:
            return
        status = f"HTTP {getattr(e, '_code', '?')} {_error_code(body)}".rstrip()
        raise StoreError(f"MinIO admin at {config.endpoint}: {what} failed: {status}") from None
    except (urllib3.exceptions.HTTPError, OSError) as e:
        reason = tls_problem(config, e) if tls_failure(e) is not None else describe(e)
        raise StoreError(f"MinIO admin at {config.endpoint}: {what} failed: {reason}") from None


def _error_code(body: str) -> str:
    """``Code: Message`` of a MinIO admin error body (JSON), or nothing."""
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(doc, dict):
        return ""
    return ": ".join(str(doc[k])[:200] for k in ("Code", "Message") if doc.get(k))
