"""Store URIs and object keys, parsed and checked in one place.

A store URI names a *root*: an S3 bucket (plus an optional key prefix) or a local
directory. Everything below the root is addressed by a relative *key*
(``models/yolo11n/1.0.0/weights.pt``)::

    >>> parse_uri("s3://detpipe/prod")
    StoreURI(scheme='s3', bucket='detpipe', path='prod')
    >>> parse_uri("file:///data/store").path
    '/data/store'
    >>> parse_uri("runs/store").scheme       # a plain path is the local backend
    'file'
    >>> parse_uri("s3://detpipe/prod").join("models/a/1")
    's3://detpipe/prod/models/a/1'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from detpipe.errors import InvalidInput

# S3 bucket naming rules (the subset every S3 implementation, MinIO included, accepts).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_MAX_KEY_LEN = 1024


@dataclass(frozen=True)
class StoreURI:
    """A parsed store root.

    Attributes:
        scheme: ``"s3"`` or ``"file"``.
        bucket: the bucket (S3 only, else ``""``).
        path: the key prefix inside the bucket without slashes at either end (S3), or the
            local directory as given (file).
    """

    scheme: str
    bucket: str
    path: str

    def __str__(self) -> str:
        if self.scheme == "s3":
            return f"s3://{self.bucket}/{self.path}" if self.path else f"s3://{self.bucket}"
        return f"file://{Path(self.path).absolute().as_posix()}"

    def join(self, key: str) -> str:
        """The URI of ``key`` below this root (``key`` may be ``""`` for the root itself)."""
        key = check_key(key, allow_empty=True)
        root = str(self)
        return f"{root}/{key}" if key else root


def parse_uri(uri: str | Path) -> StoreURI:
    """Parse ``s3://bucket[/prefix]``, ``file://PATH`` or a plain filesystem path.

    Args:
        uri: the store root.

    Returns:
        The parsed :class:`StoreURI`.

    Raises:
        InvalidInput: an empty URI, an unknown scheme, a bad bucket name or prefix.
    """
    if isinstance(uri, Path):
        return StoreURI("file", "", str(uri))
    text = uri.strip()
    if not text:
        raise InvalidInput("empty store URI: use s3://BUCKET[/PREFIX], file://PATH or a directory path")
    scheme, sep, rest = text.partition("://")
    if not sep:
        return StoreURI("file", "", text)
    scheme = scheme.lower()
    if scheme == "file":
        if rest.startswith("localhost/"):
            rest = rest[len("localhost") :]
        if not rest:
            raise InvalidInput(f"{uri}: file:// URI without a path")
        return StoreURI("file", "", rest)
    if scheme == "s3":
        bucket, _, prefix = rest.partition("/")
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise InvalidInput(
                f"{uri}: invalid bucket name {bucket!r} "
                "(3-63 characters: lowercase letters, digits, '.' and '-')"
            )
        prefix = prefix.strip("/")
        if prefix:
            check_key(prefix)
        return StoreURI("s3", bucket, prefix)
    raise InvalidInput(f"{uri}: unsupported store URI scheme {scheme!r} (use s3://, file:// or a path)")


def check_key(key: str, allow_empty: bool = False) -> str:
    """Validate a relative object key and return it unchanged.

    Keys use ``/`` separators, have no empty, ``.`` or ``..`` segments, no leading or
    trailing slash and no backslashes or NUL bytes, so that they mean the same thing on S3
    and on a filesystem.

    Raises:
        InvalidInput: the key breaks one of those rules.
    """
    if key == "" and allow_empty:
        return key
    if not key or len(key) > _MAX_KEY_LEN:
        raise InvalidInput(f"invalid object key {key!r}: must be 1-{_MAX_KEY_LEN} characters")
    if "\\" in key or "\x00" in key:
        raise InvalidInput(f"invalid object key {key!r}: backslashes and NUL bytes are not allowed")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidInput(f"invalid object key {key!r}: empty, '.' or '..' path segment")
    return key


def check_prefix(prefix: str) -> str:
    """Validate a listing prefix (``""``, ``"models/"``, ``"models/yolo"``) and return it unchanged.

    Raises:
        InvalidInput: the prefix, without its trailing slash, is not a valid key.
    """
    if prefix:
        check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def join_key(*parts: str) -> str:
    """Join key segments with ``/``, skipping empty ones (``join_key("", "a/b")`` is ``"a/b"``)."""
    return "/".join(p.strip("/") for p in parts if p.strip("/"))
