"""The :class:`Store` protocol that both backends (S3/MinIO and local files) implement.

A store is rooted at a URI (``s3://bucket/prefix`` or a directory) and addresses objects
by relative keys. Every object carries the sha256 of its content: S3 keeps it in the
object metadata (``x-amz-meta-sha256``), the local backend hashes the file::

    store = open_store("s3://detpipe")            # detpipe.store.open_store
    info = store.put_file("models/a/1/weights.pt", "runs/train/weights/best.pt")
    assert store.stat("models/a/1/weights.pt").sha256 == info.sha256
    store.get_file("models/a/1/weights.pt", "/tmp/weights.pt")  # atomic, hash-checked
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object.

    Attributes:
        key: the key relative to the store root.
        size: size in bytes.
        sha256: hex sha256 of the content; ``None`` for an S3 object uploaded by another
            tool without the ``sha256`` metadata.
        etag: the S3 ETag (``"<md5>-<parts>"`` after a multipart upload); ``None`` locally.
        modified: last modification time (UTC), when the backend reports one.
    """

    key: str
    size: int
    sha256: str | None
    etag: str | None = None
    modified: datetime | None = None


@runtime_checkable
class Store(Protocol):
    """An artifact store rooted at :attr:`uri`; keys are relative to that root.

    Writes are all-or-nothing per object (atomic rename locally, a single PUT or a completed
    multipart upload on S3). Missing objects raise :class:`~detpipe.errors.NotFound`; store
    failures (credentials, missing bucket, transfers that keep failing) raise
    :class:`~detpipe.errors.StoreError`.
    """

    @property
    def uri(self) -> str:
        """The root URI (``s3://bucket/prefix`` or ``file:///abs/dir``)."""
        ...

    def child(self, prefix: str) -> Store:
        """A store of the same backend rooted at ``prefix`` below this one."""
        ...

    def put_file(
        self, key: str, path: str | Path, *, sha256: str | None = None, content_type: str | None = None
    ) -> ObjectInfo:
        """Upload a local file (streamed); ``sha256`` skips re-hashing when the caller knows it."""
        ...

    def get_file(self, key: str, dest: str | Path) -> ObjectInfo:
        """Download to ``dest`` atomically; ``ObjectInfo.sha256`` is the hash of what was written.

        Raises StoreError when the content does not match the object's recorded sha256.
        """
        ...

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> ObjectInfo:
        """Upload a small object from memory.

        A conditional write (S3's ``If-Match`` / ``If-None-Match: *``): with ``if_match`` it
        happens only while the object's ETag is that one (from :meth:`get_tagged`), with
        ``if_none_match`` only when there is no object at ``key``; else it raises
        :class:`~detpipe.errors.PreconditionFailed` and writes nothing. Of two writers that
        read the same ETag, exactly one wins: the store's compare-and-swap.
        """
        ...

    def get_bytes(self, key: str) -> bytes:
        """Download a small object into memory."""
        ...

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        """A small object and its ETag, the token :meth:`put_bytes` ``if_match`` compares."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` is an object."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Keys that start with ``prefix`` (a plain string prefix, as on S3), sorted."""
        ...

    def list_tagged(self, prefix: str = "") -> list[tuple[str, str]]:
        """``(key, etag)`` of the keys that start with ``prefix``, sorted: one listing, no GETs.

        The ETag is the one :meth:`get_tagged` returns for the same content (S3's, unquoted;
        locally the sha256), so a caller can tell an object it read before from a changed one.
        """
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """Size, sha256 and ETag of ``key``."""
        ...
