"""The local-filesystem store: the embedded default (``make run``, tests, a laptop).

Objects are plain files below a root directory; keys map to relative paths. Writes go
through :mod:`detpipe.io` (temp file, fsync, rename), so a reader never sees half a file.
There is no object metadata: :meth:`LocalStore.stat` hashes the file, and releases carry
their hashes in ``manifest.json`` like on S3::

    store = LocalStore("runs/store")
    store.put_bytes("notes/a.txt", b"hello")
    store.list("notes/")            # ['notes/a.txt']
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from detpipe.errors import InvalidInput, NotFound, PreconditionFailed, StoreError
from detpipe.io import atomic_writer, sha256_file, write_bytes
from detpipe.store.base import ObjectInfo
from detpipe.store.uri import StoreURI, check_key, check_prefix, join_key

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_TEMP_RE = re.compile(r"^\..+\.tmp$")  # detpipe.io's in-flight temp files


class LocalStore:
    """A :class:`~detpipe.store.base.Store` over a directory (created on first write)."""

    def __init__(self, root: str | Path) -> None:
        """Root the store at ``root``.

        Args:
            root: the directory; relative paths are taken from the working directory.
        """
        self._root = Path(root).absolute()

    @property
    def uri(self) -> str:
        """``file://`` URI of the root."""
        return str(StoreURI("file", "", str(self._root)))

    @property
    def root(self) -> Path:
        """The root directory."""
        return self._root

    def __repr__(self) -> str:
        return f"LocalStore({str(self._root)!r})"

    def child(self, prefix: str) -> LocalStore:
        """A store rooted at ``prefix`` below this one."""
        return LocalStore(self._path(check_key(prefix.strip("/"))))

    def _path(self, key: str) -> Path:
        return self._root.joinpath(*check_key(key).split("/"))

    def put_file(
        self, key: str, path: str | Path, *, sha256: str | None = None, content_type: str | None = None
    ) -> ObjectInfo:
        """Copy ``path`` to ``key`` atomically (streamed), hashing while copying."""
        target = self._path(key)
        source = Path(path)
        if not source.is_file():
            raise InvalidInput(
                f"{path}: no such file" if not source.exists() else f"{path}: not a regular file"
            )
        h = hashlib.sha256()
        try:
            with source.open("rb") as src, atomic_writer(target) as dst:
                while block := src.read(_CHUNK):
                    h.update(block)
                    dst.write(block)
                if sha256 is not None and sha256 != h.hexdigest():  # raised before the rename
                    raise InvalidInput(f"{path} changed while it was being stored (expected sha256 {sha256})")
        except OSError as e:
            raise StoreError(f"write {self.uri}/{key} failed: {e.strerror or e}") from e
        digest = h.hexdigest()
        logger.debug("stored %s -> %s/%s", path, self.uri, key)
        return ObjectInfo(key, target.stat().st_size, digest, modified=_mtime(target))

    def get_file(self, key: str, dest: str | Path) -> ObjectInfo:
        """Copy ``key`` to ``dest`` atomically; ``sha256`` is the hash of the copy."""
        source = self._existing(key)
        h = hashlib.sha256()
        with source.open("rb") as src, atomic_writer(dest) as dst:
            while block := src.read(_CHUNK):
                h.update(block)
                dst.write(block)
        return ObjectInfo(key, Path(dest).stat().st_size, h.hexdigest(), modified=_mtime(source))

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> ObjectInfo:
        """Write ``data`` to ``key`` atomically; conditionally as on S3 (the ETag is the sha256).

        A conditional write holds an exclusive ``flock`` on the store's root directory while it
        compares and renames, so that processes sharing the directory take turns.
        """
        path = self._path(key)
        try:
            with self._locked() if (if_match is not None or if_none_match) else contextlib.nullcontext():
                if if_none_match and path.is_file():
                    raise PreconditionFailed(f"{self.uri}/{key}: exists already (If-None-Match)")
                if if_match is not None:
                    current = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
                    if current != if_match:
                        raise PreconditionFailed(f"{self.uri}/{key}: changed since it was read (If-Match)")
                target = write_bytes(path, data)
        except OSError as e:
            raise StoreError(f"write {self.uri}/{key} failed: {e.strerror or e}") from e
        digest = hashlib.sha256(data).hexdigest()
        return ObjectInfo(key, len(data), digest, etag=digest, modified=_mtime(target))

    def get_bytes(self, key: str) -> bytes:
        """Read ``key`` into memory."""
        return self._existing(key).read_bytes()

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        """``key``'s content and its ETag (here: its sha256)."""
        data = self.get_bytes(key)
        return data, hashlib.sha256(data).hexdigest()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the lock

    def exists(self, key: str) -> bool:
        """Whether ``key`` is a file."""
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``, sorted; in-flight temp files are skipped."""
        # Walk only the deepest directory the prefix names completely.
        base_key = check_prefix(prefix).rsplit("/", 1)[0] if "/" in prefix else ""
        base = self._root.joinpath(*base_key.split("/")) if base_key else self._root
        if not base.is_dir():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if _TEMP_RE.match(name):
                    continue
                key = Path(dirpath, name).relative_to(self._root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def list_tagged(self, prefix: str = "") -> list[tuple[str, str]]:
        """``(key, etag)`` of the keys starting with ``prefix``; the ETag is the file's sha256, as
        :meth:`get_tagged` has it (a file removed since the listing is left out)."""
        tagged = []
        for key in self.list(prefix):
            with contextlib.suppress(FileNotFoundError):
                tagged.append((key, sha256_file(self._path(key))))
        return tagged

    def delete(self, key: str) -> None:
        """Remove ``key`` and the directories it leaves empty (up to the root)."""
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        parent = path.parent
        while parent != self._root and self._root in parent.parents:
            try:
                parent.rmdir()
            except OSError:  # not empty (or gone): stop pruning
                break
            parent = parent.parent

    def stat(self, key: str) -> ObjectInfo:
        """Size and sha256 (hashed now) of ``key``."""
        path = self._existing(key)
        return ObjectInfo(key, path.stat().st_size, sha256_file(path), modified=_mtime(path))

    def _existing(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"{self.uri}/{join_key(key)}: no such object")
        return path


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
