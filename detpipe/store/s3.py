"""The S3/MinIO store, over the ``minio`` client.

Every upload records the content's sha256 as object metadata (``x-amz-meta-sha256``);
files larger than the part size go up as a multipart upload (the ETag then ends in
``-<parts>``). Downloads are streamed into an atomic temp file, hashed on the way, and
checked against that metadata. Each operation is retried on transient errors
(:mod:`detpipe.store.retry`); the client's own urllib3 retries are switched off so that
exactly one policy applies. Known failures become one-line errors::

    store = S3Store("detpipe", "", S3Config.from_env())
    store.put_file("models/a/1/weights.pt", "best.pt")
    # StoreError: access denied for s3://detpipe: check the credentials in AWS_ACCESS_KEY_ID/...
    # StoreError: bucket 'detpipe' does not exist at minio:9000 (create it, or ...)
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import certifi
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from detpipe.errors import InvalidInput, NotFound, PreconditionFailed, StoreError
from detpipe.io import atomic_writer, sha256_file
from detpipe.store.base import ObjectInfo
from detpipe.store.config import ANONYMOUS, S3Config
from detpipe.store.retry import call_with_retry, describe, is_transient
from detpipe.store.uri import StoreURI, check_key, check_prefix, join_key

logger = logging.getLogger(__name__)

T = TypeVar("T")

SHA256_META = "sha256"  # stored as the x-amz-meta-sha256 header
_SHA256_HEADER = "x-amz-meta-sha256"
_CHUNK = 1 << 20
_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "InvalidSecurity",
        "AllAccessDisabled",
    }
)


def http_pool(config: S3Config) -> urllib3.PoolManager:
    """The connection pool of a client for ``config``: retries off, bounded timeouts, and TLS
    verified against ``config.ca_bundle`` (else ``SSL_CERT_FILE``, else certifi's CAs)."""
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=config.connect_timeout_s, read=config.read_timeout_s),
        retries=False,
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=config.ca_bundle or os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )


def make_client(config: S3Config) -> Minio:
    """A ``Minio`` client for ``config`` (the pool of :func:`http_pool`)."""
    http = http_pool(config)
    return Minio(
        config.endpoint,
        access_key=config.access_key,
        secret_key=config.secret_key,
        session_token=config.session_token,
        secure=config.secure,
        region=config.region,
        http_client=http,
    )


def tls_failure(exc: BaseException) -> BaseException | None:
    """The TLS error behind ``exc`` (a failed handshake or certificate check), if there is one."""
    for e in (exc, getattr(exc, "reason", None), exc.__cause__, exc.__context__):
        if isinstance(e, urllib3.exceptions.SSLError | ssl.SSLError):
            return e
    return None


def tls_problem(config: S3Config, exc: BaseException) -> str:
    """One line on a failed TLS connection to ``config.endpoint`` and what to do about it."""
    root = tls_failure(exc) or exc
    cause = next((a for a in (root, *root.args) if isinstance(a, ssl.SSLError)), root)
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = f"certificate not verified: {cause.verify_message}"
    else:
        reason = getattr(cause, "reason", None) or str(cause).splitlines()[0][:200] or type(cause).__name__
    if config.ca_bundle:
        hint = f"is the server's certificate signed by a CA in DETPIPE_S3_CA_BUNDLE={config.ca_bundle}?"
    else:
        hint = "for a private CA set DETPIPE_S3_CA_BUNDLE to a PEM file of it"
    return f"TLS connection to {config.endpoint} failed ({reason}): {hint}"


class _HashingReader:
    """A file wrapper that hashes what the uploader reads, to catch files changing mid-upload."""

    def __init__(self, f: io.BufferedReader) -> None:
        self._f = f
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        block = self._f.read(size)
        self.sha256.update(block)
        return block


class S3Store:
    """A :class:`~detpipe.store.base.Store` over ``s3://bucket/prefix``."""

    def __init__(self, bucket: str, prefix: str, config: S3Config, client: Minio | None = None) -> None:
        """Root the store at ``s3://bucket/prefix``; no request is made until the first operation.

        Args:
            bucket: the bucket name.
            prefix: key prefix inside the bucket (``""`` for the bucket root).
            config: endpoint, credentials, part size, retry policy.
            client: a client to share between stores of the same server (built when ``None``).
        """
        self._location = StoreURI("s3", bucket, prefix.strip("/"))
        self._config = config
        self._client = client or make_client(config)
        self._bucket_ok = False

    @property
    def uri(self) -> str:
        """``s3://bucket[/prefix]``."""
        return str(self._location)

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return self._location.bucket

    @property
    def config(self) -> S3Config:
        """The connection settings (their repr hides the secrets)."""
        return self._config

    def __repr__(self) -> str:
        return f"S3Store({self.uri!r}, endpoint={self._config.endpoint!r})"

    def child(self, prefix: str) -> S3Store:
        """A store rooted at ``prefix`` below this one, sharing the client."""
        sub = join_key(self._location.path, check_key(prefix.strip("/")))
        return S3Store(self.bucket, sub, self._config, client=self._client)

    # -- operations ---------------------------------------------------------------------------

    def put_file(
        self, key: str, path: str | Path, *, sha256: str | None = None, content_type: str | None = None
    ) -> ObjectInfo:
        """Upload ``path`` streamed (multipart above the part size) with its sha256 as metadata."""
        path = Path(path)
        if not path.is_file():
            raise InvalidInput(
                f"{path}: no such file" if not path.exists() else f"{path}: not a regular file"
            )
        size = path.stat().st_size
        digest = sha256 or sha256_file(path)
        name = self._name(key)

        def attempt() -> Any:
            with path.open("rb") as f:
                reader = _HashingReader(f)
                result = self._client.put_object(
                    self.bucket,
                    name,
                    reader,  # type: ignore[arg-type]  # minio only needs read()
                    size,
                    content_type=content_type or "application/octet-stream",
                    metadata={SHA256_META: digest},
                    part_size=self._config.part_size,
                )
            if reader.sha256.hexdigest() != digest:
                with contextlib.suppress(MinioException, OSError):
                    self._client.remove_object(self.bucket, name)
                raise InvalidInput(f"{path} changed while it was being uploaded to {self._uri(key)}")
            return result

        result = self._call(attempt, "upload", key)
        logger.debug("uploaded %s -> %s (%d bytes, etag %s)", path, self._uri(key), size, result.etag)
        return ObjectInfo(key, size, digest, etag=result.etag)

    def get_file(self, key: str, dest: str | Path) -> ObjectInfo:
        """Download ``key`` to ``dest`` atomically, verifying the recorded sha256 if there is one."""
        name = self._name(key)

        def attempt() -> ObjectInfo:
            response = self._client.get_object(self.bucket, name)
            try:
                h, size = hashlib.sha256(), 0
                with atomic_writer(dest) as f:
                    for block in response.stream(_CHUNK):
                        h.update(block)
                        f.write(block)
                        size += len(block)
                    recorded = response.headers.get(_SHA256_HEADER)
                    if recorded is not None and recorded != h.hexdigest():
                        # raised inside the writer: dest is left untouched
                        raise StoreError(
                            f"{self._uri(key)}: content sha256 {h.hexdigest()} does not match its "
                            f"recorded sha256 {recorded}: the object is corrupt or was replaced"
                        )
                return ObjectInfo(
                    key, size, h.hexdigest(), etag=(response.headers.get("ETag") or "").strip('"')
                )
            finally:
                response.close()
                response.release_conn()

        return self._call(attempt, "download", key)

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> ObjectInfo:
        """Upload ``data`` in a single PUT with its sha256 as metadata; conditionally with the
        ``If-Match`` / ``If-None-Match: *`` headers (MinIO and S3 compare and write atomically).

        A conditional PUT that is retried after a lost response may find its own first attempt
        in place: an object whose sha256 is ``data``'s counts as written.
        """
        digest = hashlib.sha256(data).hexdigest()
        name = self._name(key)
        if if_match is None and not if_none_match:
            result = self._call(
                lambda: self._client.put_object(
                    self.bucket,
                    name,
                    io.BytesIO(data),
                    len(data),
                    content_type=content_type or "application/octet-stream",
                    metadata={SHA256_META: digest},
                ),
                "upload",
                key,
            )
            return ObjectInfo(key, len(data), digest, etag=result.etag)
        headers = {"Content-Type": content_type or "application/octet-stream", _SHA256_HEADER: digest}
        if if_match is not None:
            headers["If-Match"] = f'"{if_match.strip(chr(34))}"'
        if if_none_match:
            headers["If-None-Match"] = "*"
        try:
            # minio-py's put_object sends no conditional headers; its PutObject call does
            result = self._call(
                lambda: self._client._put_object(self.bucket, name, data, headers), "upload", key
            )
        except PreconditionFailed:
            with contextlib.suppress(NotFound):
                if (there := self.stat(key)).sha256 == digest:
                    return ObjectInfo(key, len(data), digest, etag=there.etag)
            raise
        return ObjectInfo(key, len(data), digest, etag=result.etag)

    def get_bytes(self, key: str) -> bytes:
        """Download ``key`` into memory, verifying the recorded sha256 if there is one."""
        return self.get_tagged(key)[0]

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        """``key``'s content (its recorded sha256 verified) and its ETag."""
        name = self._name(key)

        def attempt() -> tuple[bytes, str | None, str]:
            response = self._client.get_object(self.bucket, name)
            try:
                etag = (response.headers.get("ETag") or "").strip('"')
                return response.read(), response.headers.get(_SHA256_HEADER), etag
            finally:
                response.close()
                response.release_conn()

        data, recorded, etag = self._call(attempt, "download", key)
        if recorded is not None and recorded != hashlib.sha256(data).hexdigest():
            raise StoreError(f"{self._uri(key)}: content does not match its recorded sha256 {recorded}")
        return data, etag

    def exists(self, key: str) -> bool:
        """Whether ``key`` is an object (a missing bucket is an error, not ``False``)."""
        try:
            self.stat(key)
        except NotFound:
            return False
        return True

    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``, sorted."""
        root = self._location.path
        full = f"{root}/{check_prefix(prefix)}" if root else check_prefix(prefix)

        def attempt() -> list[str]:
            objects = self._client.list_objects(self.bucket, prefix=full or None, recursive=True)
            return [o.object_name for o in objects if o.object_name and not o.is_dir]

        names = self._call(attempt, "list", prefix)
        cut = len(root) + 1 if root else 0
        return sorted(n[cut:] for n in names)

    def list_tagged(self, prefix: str = "") -> list[tuple[str, str]]:
        """``(key, etag)`` of the keys starting with ``prefix``, sorted: the listing's ETags
        (unquoted, as :meth:`get_tagged` has them), no request per object."""
        root = self._location.path
        full = f"{root}/{check_prefix(prefix)}" if root else check_prefix(prefix)

        def attempt() -> list[tuple[str, str]]:
            objects = self._client.list_objects(self.bucket, prefix=full or None, recursive=True)
            return [
                (o.object_name, (o.etag or "").strip('"')) for o in objects if o.object_name and not o.is_dir
            ]

        tagged = self._call(attempt, "list", prefix)
        cut = len(root) + 1 if root else 0
        return sorted((name[cut:], etag) for name, etag in tagged)

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error if it is absent)."""
        name = self._name(key)
        self._call(lambda: self._client.remove_object(self.bucket, name), "delete", key)

    def stat(self, key: str) -> ObjectInfo:
        """Size, sha256 metadata and ETag of ``key``."""
        name = self._name(key)
        obj = self._call(lambda: self._client.stat_object(self.bucket, name), "stat", key)
        meta = obj.metadata or {}
        return ObjectInfo(
            key,
            int(obj.size or 0),
            meta.get(_SHA256_HEADER),
            etag=obj.etag,
            modified=obj.last_modified,
        )

    def ensure_bucket(self, create: bool = False) -> None:
        """Check that the bucket exists; with ``create``, make it when it does not.

        Raises:
            StoreError: the bucket is missing (and ``create`` is false) or access is denied.
        """
        if self._bucket_ok:
            return
        exists = self._call(lambda: self._client.bucket_exists(self.bucket), "check bucket", "", check=False)
        if not exists:
            if not create:
                raise self._missing_bucket()
            logger.info("creating bucket %s at %s", self.bucket, self._config.endpoint)
            self._call(lambda: self._client.make_bucket(self.bucket), "create bucket", "", check=False)
        self._bucket_ok = True

    # -- helpers ------------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        return join_key(self._location.path, check_key(key))

    def _uri(self, key: str) -> str:
        return f"{self._location}/{key}" if key else str(self._location)

    def _call(self, fn: Callable[[], T], op: str, key: str, check: bool = True) -> T:
        """Run ``fn`` with retries and turn client failures into detpipe errors."""
        what = f"{op} {self._uri(key)}"
        try:
            return call_with_retry(fn, self._config.retry, what)
        except S3Error as e:
            if e.code in _AUTH_CODES:
                raise self._access_denied() from None
            if e.code in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise PreconditionFailed(f"{what}: the object exists or changed since it was read") from None
            if e.code == "NoSuchBucket":
                raise self._missing_bucket() from None
            if e.code in ("NoSuchKey", "NoSuchObject"):
                if check:  # a HEAD on a missing bucket also answers NoSuchKey
                    self.ensure_bucket()
                raise NotFound(f"{self._uri(key)}: no such object") from None
            if is_transient(e):
                raise self._gave_up(what, e) from e
            raise StoreError(f"{what} failed: {e.code}: {e.message}") from e
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as e:
            if tls_failure(e) is not None:
                raise StoreError(f"{what} failed: {tls_problem(self._config, e)}") from None
            if is_transient(e):
                raise self._gave_up(what, e) from e
            raise StoreError(f"{what} failed: {describe(e)}") from e

    def _gave_up(self, what: str, e: BaseException) -> StoreError:
        n = self._config.retry.attempts
        return StoreError(
            f"{what} failed after {n} attempt{'s' if n > 1 else ''}: {describe(e)} "
            f"(endpoint {self._config.endpoint})"
        )

    def _access_denied(self) -> StoreError:
        source = self._config.credential_source
        if source == ANONYMOUS:
            hint = (
                "no credentials are set: set DETPIPE_S3_SECRET_DIR, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                "or MINIO_ACCESS_KEY/MINIO_SECRET_KEY"
            )
        else:
            hint = f"check the credentials from {source} (and that they may use this bucket)"
        return StoreError(f"access denied for s3://{self.bucket}: {hint}")

    def _missing_bucket(self) -> StoreError:
        return StoreError(
            f"bucket '{self.bucket}' does not exist at {self._config.endpoint} "
            "(create it, or set DETPIPE_S3_CREATE_BUCKET=true / pass create_bucket=True)"
        )
