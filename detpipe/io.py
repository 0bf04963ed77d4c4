"""Atomic file output and hashing.

Every file detpipe writes goes through here, so a failed command never leaves a
half-written file or directory behind::

    with atomic_dir(out) as tmp:          # build everything in a sibling temp dir
        write_json(tmp / "summary.json", summary)
    # -> renamed to `out` only when the block finishes without an exception
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from detpipe.errors import InvalidInput

# Errors of write()/fsync() on the file itself (full disk, quota, size limit, I/O), which
# carry no file name; atomic_writer adds the destination's.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_path(path: str | Path) -> None:
    """Flush a file's (or a directory's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Report an OSError on ``path``'s temp sibling (creating it, renaming it) under ``path`` itself."""
    try:
        yield
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from e


def discard_partial_writes(directory: str | Path) -> list[Path]:
    """Remove the temp files that atomic writes of a killed process left in ``directory``.

    A process killed inside :func:`atomic_writer` (or the writes built on it) leaves its
    ``.<name>.<random>.tmp`` behind (the destination itself is untouched); a restart that
    continues the work calls this first. Returns what was removed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.glob(".*.tmp") if p.is_file()]
    for p in stale:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return stale


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """Stream bytes into ``path`` atomically (for data too large to hold in memory).

    The file appears at ``path`` complete, fsynced, only when the block finishes without an
    exception; otherwise the temp file is removed and ``path`` is left as it was::

        with atomic_writer(dest) as f:
            for chunk in response.stream(1 << 20):
                f.write(chunk)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _naming(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp's 0600 is for the temp file only
            os.fsync(f.fileno())
        with _naming(path):  # e.g. IsADirectoryError: name the destination, not the temp file
            os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None and e.errno in _WRITE_ERRNOS:
            raise OSError(e.errno, e.strerror, str(path)) from e  # a write() names no file
        raise
    fsync_path(path.parent)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: temp file in the same dir, fsync, rename."""
    with atomic_writer(path) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON atomically (keys kept in insertion order)."""
    return write_text(path, json.dumps(obj, indent=indent) + "\n")


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file (list files, YAML); a leading BOM is dropped.

    Raises:
        InvalidInput: the file is not UTF-8 text (names the file and the first bad byte).
        OSError: the file cannot be read (the CLI turns it into one line naming the file).
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidInput(
            f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})"
        ) from None


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a missing or malformed file raises :class:`InvalidInput`."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path}: is a directory, expected a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f" (line {e.lineno}, column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
        raise InvalidInput(f"{path}: not valid JSON{where}") from None


def decode_json_typed(data: bytes, decoder: Any) -> Any | None:
    """JSON ``data`` decoded by a msgspec ``decoder`` into typed records, or None on anything unusual.

    None (bytes that are not UTF-8, a decode or type error, nesting too deep) means: read the
    file with :func:`read_json` instead, which says what is wrong in its own words. msgspec does
    not check the UTF-8 of strings it skips, so non-ASCII input is checked here.
    """
    import msgspec

    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None


def inside(root: str | Path, *parts: str) -> Path:
    """``root / parts...``, refused unless it stays inside ``root`` once symlinks are resolved.

    Each part must be one plain name (no separator, ``.``/``..``, NUL, CR or LF): a value read
    from a manifest or a request can then neither climb out of ``root`` nor name an absolute path.

    Raises:
        InvalidInput: a part that is not a plain name, or a destination outside ``root``.
    """
    for part in parts:
        if (
            not part
            or part in (".", "..")
            or any(c in part for c in "/\\\x00\r\n")
            or Path(part).is_absolute()
        ):
            raise InvalidInput(f"{part!r} is not a plain file or directory name")
    base = Path(root).resolve()
    dest = base.joinpath(*parts).resolve()
    if not dest.is_relative_to(base):
        raise InvalidInput(f"{'/'.join(parts)!r} leads outside {root}")
    return dest


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Build a directory in a temp sibling and move it to ``path`` on success.

    On an exception the temp directory is removed and ``path`` is left as it was.
    With ``overwrite`` an existing ``path`` is replaced only after the new one is complete.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise InvalidInput(f"{path}: already exists")
    if path.exists() and not path.is_dir():
        raise InvalidInput(f"{path}: exists and is not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _naming(path):
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp's 0700 is for the build only
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        fsync_path(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
