"""S3/MinIO connection settings, read from the environment or a mounted Kubernetes Secret.

Nothing is read at import time: build a config with :meth:`S3Config.from_env` (which
``open_store`` does when given none) or construct it directly in tests::

    cfg = S3Config.from_env()                     # os.environ
    cfg = S3Config(endpoint="127.0.0.1:9000", access_key="...", secret_key="...", secure=False)

Environment variables (all optional):

====================================  =========================================================
``DETPIPE_S3_ENDPOINT``               ``host:port`` or ``http(s)://host:port``
                                      (default ``s3.amazonaws.com``)
``DETPIPE_S3_SECURE``                 ``true``/``false``: HTTPS or not (default ``true``, or
                                      the scheme of the endpoint)
``DETPIPE_S3_CA_BUNDLE``              a PEM file of the CA certificates that sign the server's
                                      certificate (a private CA: cert-manager, the cluster's);
                                      unset or no such file (an optional ConfigMap that is not
                                      there; a warning): ``SSL_CERT_FILE``, else certifi's
                                      public CAs. Read for HTTPS only
``DETPIPE_S3_REGION``                 region (else ``AWS_REGION``, ``AWS_DEFAULT_REGION``;
                                      unset: asked from the server per bucket)
``DETPIPE_S3_SECRET_DIR``             a directory holding files ``accesskey`` and ``secretkey``
                                      (a mounted k8s Secret such as ``detpipe-minio``)
``AWS_ACCESS_KEY_ID``,                credentials, used when ``DETPIPE_S3_SECRET_DIR`` is unset
``AWS_SECRET_ACCESS_KEY``             (``AWS_SESSION_TOKEN`` is passed on when set)
``MINIO_ACCESS_KEY``,                 credentials, used when neither of the above is set
``MINIO_SECRET_KEY``
``DETPIPE_S3_PART_SIZE``              multipart part size in bytes (default 16 MiB, min 5 MiB)
``DETPIPE_S3_RETRIES``                attempts per operation on transient errors (default 5)
``DETPIPE_S3_RETRY_DELAY``            first backoff delay in seconds (default 0.5), doubling
``DETPIPE_S3_TIMEOUT``                socket read timeout in seconds (default 60)
``DETPIPE_S3_CREATE_BUCKET``          ``true``: create a missing bucket (embedded MinIO)
====================================  =========================================================

Secret values never appear in ``repr``, logs or error messages; errors name only the
*source* of the credentials (:attr:`S3Config.credential_source`).
"""

from __future__ import annotations

import logging
import os
import random
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from detpipe.errors import InvalidInput

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # the S3 minimum for every part but the last
DEFAULT_PART_SIZE = 16 * MIB

# File names inside a mounted Secret directory (the keys of the k8s Secret `detpipe-minio`).
SECRET_ACCESS_KEY_FILE = "accesskey"
SECRET_SECRET_KEY_FILE = "secretkey"

ANONYMOUS = "no credentials (anonymous)"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter for transient store errors.

    Attempt ``n`` (1-based) that fails transiently waits a random delay in
    ``[cap/2, cap]`` with ``cap = min(max_delay_s, base_delay_s * 2**(n-1))`` ("equal
    jitter": clients that failed together do not retry together, and the delay still grows).

    Attributes:
        attempts: total tries per operation, the first one included (>= 1).
        base_delay_s: the cap of the first backoff.
        max_delay_s: the largest cap.
    """

    attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise InvalidInput(f"retry attempts must be >= 1, got {self.attempts}")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise InvalidInput("retry delays must be >= 0")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        cap = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return (rng or random).uniform(cap / 2, cap)


@dataclass(frozen=True)
class S3Config:
    """How to reach an S3-compatible server.

    Attributes:
        endpoint: ``host[:port]`` without a scheme.
        access_key: access key id (``None``: anonymous). Not shown in ``repr``.
        secret_key: secret key. Not shown in ``repr``.
        session_token: optional STS session token. Not shown in ``repr``.
        secure: HTTPS when true.
        region: the region, or ``None`` to ask the server.
        part_size: multipart part size in bytes; larger files are uploaded in parts.
        retry: backoff policy for transient errors.
        connect_timeout_s: TCP connect timeout.
        read_timeout_s: socket read timeout.
        create_bucket: create the bucket when it is missing (embedded MinIO, tests).
        credential_source: where the credentials came from, for error messages.
        ca_bundle: PEM file of the CAs trusted for HTTPS (``None``: ``SSL_CERT_FILE`` or
            certifi's); see :func:`check_ca_bundle`.
    """

    endpoint: str = "s3.amazonaws.com"
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    secure: bool = True
    region: str | None = None
    part_size: int = DEFAULT_PART_SIZE
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    create_bucket: bool = False
    credential_source: str = ANONYMOUS
    ca_bundle: str | None = None

    def __post_init__(self) -> None:
        if "://" in self.endpoint or not self.endpoint or "/" in self.endpoint:
            raise InvalidInput(f"S3 endpoint must be host[:port], got {self.endpoint!r}")
        if self.part_size < MIN_PART_SIZE:
            raise InvalidInput(f"S3 part size must be >= {MIN_PART_SIZE} bytes (5 MiB), got {self.part_size}")
        if bool(self.access_key) != bool(self.secret_key):
            raise InvalidInput(
                f"S3 credentials from {self.credential_source}: access key and secret key go together"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> S3Config:
        """Build the config from environment variables (see the module docstring).

        Args:
            env: the environment to read; ``os.environ`` when ``None``.

        Raises:
            InvalidInput: a malformed value, half a credential pair, or an unreadable
                Secret directory.
        """
        env = os.environ if env is None else env
        endpoint = env.get("DETPIPE_S3_ENDPOINT", "").strip() or "s3.amazonaws.com"
        secure = _parse_bool(env, "DETPIPE_S3_SECURE")
        scheme, sep, host = endpoint.partition("://")
        if sep:
            if scheme not in ("http", "https"):
                raise InvalidInput(f"DETPIPE_S3_ENDPOINT: unsupported scheme {scheme!r} (http or https)")
            if secure is not None and secure != (scheme == "https"):
                raise InvalidInput(f"DETPIPE_S3_ENDPOINT is {scheme}:// but DETPIPE_S3_SECURE says otherwise")
            secure, endpoint = scheme == "https", host.rstrip("/")
        secure = True if secure is None else secure
        ca_bundle = env.get("DETPIPE_S3_CA_BUNDLE", "").strip() or None
        if ca_bundle is not None and secure and not Path(ca_bundle).exists():
            # an optional ConfigMap that is not there (a store with a public certificate): the
            # connection is still verified, against the system's CAs
            log.warning("DETPIPE_S3_CA_BUNDLE=%s does not exist: trusting the system's CAs", ca_bundle)
            ca_bundle = None
        if ca_bundle is not None and secure:
            check_ca_bundle(ca_bundle, "DETPIPE_S3_CA_BUNDLE")
        access, secret, token, source = _credentials(env)
        region = (
            env.get("DETPIPE_S3_REGION") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
        )
        return cls(
            endpoint=endpoint,
            access_key=access,
            secret_key=secret,
            session_token=token,
            secure=secure,
            region=region,
            part_size=_parse_int(env, "DETPIPE_S3_PART_SIZE", DEFAULT_PART_SIZE),
            retry=RetryPolicy(
                attempts=_parse_int(env, "DETPIPE_S3_RETRIES", RetryPolicy.attempts),
                base_delay_s=_parse_float(env, "DETPIPE_S3_RETRY_DELAY", RetryPolicy.base_delay_s),
            ),
            read_timeout_s=_parse_float(env, "DETPIPE_S3_TIMEOUT", 60.0),
            create_bucket=bool(_parse_bool(env, "DETPIPE_S3_CREATE_BUCKET")),
            credential_source=source,
            ca_bundle=ca_bundle if secure else None,
        )


def check_ca_bundle(path: str, name: str = "CA bundle") -> str:
    """Return ``path`` if it is a readable PEM file of CA certificates, else raise ``InvalidInput``.

    ``name`` says where the path came from (``DETPIPE_S3_CA_BUNDLE``) in the message.
    """
    if not Path(path).is_file():
        raise InvalidInput(f"{name}={path}: no such file (a PEM file of the CA certificates to trust)")
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError) as e:
        raise InvalidInput(f"{name}={path}: not a PEM file of CA certificates ({e})") from None
    return path


def _credentials(env: Mapping[str, str]) -> tuple[str | None, str | None, str | None, str]:
    """(access key, secret key, session token, source) from the first source that is set."""
    secret_dir = env.get("DETPIPE_S3_SECRET_DIR", "").strip()
    if secret_dir:
        source = (
            f"DETPIPE_S3_SECRET_DIR={secret_dir} (files {SECRET_ACCESS_KEY_FILE}, {SECRET_SECRET_KEY_FILE})"
        )
        return (
            _read_secret(secret_dir, SECRET_ACCESS_KEY_FILE),
            _read_secret(secret_dir, SECRET_SECRET_KEY_FILE),
            None,
            source,
        )
    for key_var, secret_var in (
        ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
        ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"),
    ):
        access, secret = env.get(key_var, ""), env.get(secret_var, "")
        if access or secret:
            if not (access and secret):
                missing = secret_var if access else key_var
                raise InvalidInput(f"{key_var}/{secret_var}: {missing} is not set (both are needed)")
            token = (env.get("AWS_SESSION_TOKEN") or None) if key_var.startswith("AWS") else None
            return access, secret, token, f"{key_var}/{secret_var}"
    return None, None, None, ANONYMOUS


def _read_secret(directory: str, name: str) -> str:
    path = Path(directory) / name
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise InvalidInput(
            f"DETPIPE_S3_SECRET_DIR: {path} does not exist (expected files accesskey, secretkey)"
        ) from None
    except OSError as e:
        raise InvalidInput(f"DETPIPE_S3_SECRET_DIR: cannot read {path}: {e.strerror}") from None
    if not value:
        raise InvalidInput(f"DETPIPE_S3_SECRET_DIR: {path} is empty")
    return value


def _parse_bool(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return None
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise InvalidInput(f"{name}={raw!r}: expected true or false")


def _parse_int(env: Mapping[str, str], name: str, default: int) -> int:
    return int(_parse_number(env, name, default, integer=True))


def _parse_float(env: Mapping[str, str], name: str, default: float) -> float:
    return _parse_number(env, name, default, integer=False)


def _parse_number(env: Mapping[str, str], name: str, default: float, integer: bool) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise InvalidInput(f"{name}={raw!r}: expected {'an integer' if integer else 'a number'}") from None
    if value < 0:
        raise InvalidInput(f"{name}={raw!r}: must not be negative")
    return value
