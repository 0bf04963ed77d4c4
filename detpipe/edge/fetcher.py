"""The OTA transport: a python-tuf ``FetcherInterface`` for ``s3://``, ``https://`` and ``file://``.

TUF leaves transport to the fetcher; resume and retries live here, not in the updater.
:meth:`OtaFetcher._fetch` streams a URL in bounded chunks and, when a connection drops
mid-body, re-requests the rest from the byte it got to (S3 ``offset`` / HTTP ``Range``).
:meth:`OtaFetcher.download_to` appends to a partial file on disk and so resumes across
agent restarts too; memory stays at one chunk (1 MiB) whatever the artifact size::

    fetcher = OtaFetcher(S3Config.from_env())
    got = fetcher.download_to("s3://detpipe/ota/targets/cpu/3/<sha>.model.onnx", part, max_length=n)

A missing object is ``DownloadHTTPError(404)`` (the TUF updater probes ``N+1.root.json``
that way); an object longer than ``max_length`` stops at the limit with
``DownloadLengthMismatchError`` (endless-data attack).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import urllib3
from minio.error import S3Error
from tuf.api import exceptions
from tuf.ngclient.fetcher import FetcherInterface

from detpipe.store.config import RetryPolicy, S3Config
from detpipe.store.retry import describe, is_transient

log = logging.getLogger(__name__)

CHUNK = 1 << 20
_AUTH = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}


@dataclass
class Stream:
    """An open response body: ``start`` is the byte offset its first chunk is at."""

    start: int
    chunks: Iterator[bytes]
    close: Callable[[], None]


class OtaFetcher(FetcherInterface):
    """Fetch ``s3://``, ``http(s)://`` and ``file://`` URLs with resume.

    Args:
        s3: settings for ``s3://`` URLs (endpoint, credentials); read from the environment
            on first use when ``None``.
        retry: attempts per download (each one resumes where the last stopped).
        timeout_s: connect/read timeout for HTTP(S).
        sleep: the wait between attempts (tests record it).
    """

    def __init__(
        self,
        s3: S3Config | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._s3_config = s3
        self._s3_client = None
        self.retry = retry or RetryPolicy(attempts=4, base_delay_s=0.5, max_delay_s=10.0)
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s), retries=False
        )
        self._sleep = sleep
        self.requests = 0  # streams opened (tests and the benchmark read it)

    # -- transports ------------------------------------------------------------------------------

    def _open(self, url: str, offset: int) -> Stream:
        self.requests += 1
        parts = urlparse(url)
        if parts.scheme == "s3":
            return self._open_s3(parts.netloc, unquote(parts.path.lstrip("/")), offset, url)
        if parts.scheme in ("http", "https"):
            return self._open_http(url, offset)
        if parts.scheme == "file":
            return _open_file(Path(unquote(parts.path)), offset, url)
        raise exceptions.DownloadError(f"{url}: unsupported scheme (s3://, https://, http://, file://)")

    def _client(self):
        if self._s3_client is None:
            from detpipe.store.s3 import make_client

            self._s3_client = make_client(self._s3_config or S3Config.from_env())
        return self._s3_client

    def _open_s3(self, bucket: str, key: str, offset: int, url: str) -> Stream:
        try:
            response = self._client().get_object(bucket, key, offset=offset)
        except S3Error as e:
            if e.code in ("NoSuchKey", "NoSuchObject", "NoSuchBucket"):
                raise exceptions.DownloadHTTPError(f"{url}: {e.code}", 404) from None
            if e.code == "InvalidRange" and offset:  # nothing past offset
                return Stream(offset, iter(()), lambda: None)
            if e.code in _AUTH:
                raise exceptions.DownloadHTTPError(f"{url}: access denied ({e.code})", 403) from None
            raise

        def close() -> None:
            response.close()
            response.release_conn()

        return Stream(offset, response.stream(CHUNK), close)

    def _open_http(self, url: str, offset: int) -> Stream:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = self._http.request("GET", url, headers=headers, preload_content=False)
        if response.status == 416 and offset:  # nothing left: the partial file is complete (or too long)
            response.release_conn()
            return Stream(offset, iter(()), lambda: None)
        if response.status >= 400:
            response.release_conn()
            raise exceptions.DownloadHTTPError(f"{url}: HTTP {response.status}", response.status)
        start = offset if response.status == 206 else 0  # a 200 ignored the Range: start over

        def close() -> None:
            response.release_conn()

        return Stream(start, response.stream(CHUNK), close)

    # -- FetcherInterface ---------------------------------------------------------------------------

    def _fetch(self, url: str) -> Iterator[bytes]:
        """Chunks of ``url`` from byte 0, resuming after dropped connections."""
        got, skip = 0, 0

        def restart(start: int) -> None:
            nonlocal skip
            skip = got - start  # the server ignored the range: drop what we already have

        def position() -> int:
            return got

        for chunk in self._transfer(url, position, restart):
            if skip:
                cut = min(skip, len(chunk))
                chunk, skip = chunk[cut:], skip - cut
            if chunk:
                got += len(chunk)
                yield chunk

    def _transfer(
        self, url: str, position: Callable[[], int], restart: Callable[[int], None]
    ) -> Iterator[bytes]:
        """Chunks of ``url`` from ``position()``, re-opened there after transient failures."""
        attempt = 1
        while True:
            stream = None
            try:
                at = position()
                stream = self._open(url, at)
                if stream.start != at:
                    restart(stream.start)
                yield from stream.chunks
                return
            except exceptions.DownloadError:
                raise
            except Exception as e:
                if attempt >= self.retry.attempts or not _transient(e):
                    raise exceptions.DownloadError(
                        f"{url}: {describe(e)} (after {attempt} attempt(s))"
                    ) from e
                delay = self.retry.delay(attempt, random.Random())
                log.warning("%s: %s at byte %d; resuming in %.2fs", url, describe(e), position(), delay)
                self._sleep(delay)
                attempt += 1
            finally:
                if stream is not None:
                    stream.close()

    # -- resumable file download -----------------------------------------------------------------

    def download_to(
        self, url: str, part: Path, max_length: int, progress: Callable[[int], None] | None = None
    ) -> int:
        """Append the rest of ``url`` to ``part`` (resuming from its size); returns bytes fetched.

        Raises:
            DownloadLengthMismatchError: the object is longer than ``max_length``.
            DownloadError / DownloadHTTPError: the transfer failed (``part`` keeps what arrived).
        """
        part.parent.mkdir(parents=True, exist_ok=True)
        if part.exists() and part.stat().st_size > max_length:
            part.unlink()
        if part.exists() and part.stat().st_size == max_length:
            return 0  # complete already (a restart after the download): the caller verifies the hash
        fetched = 0
        with part.open("ab") as f:

            def position() -> int:
                f.flush()
                return f.tell()

            def restart(start: int) -> None:
                f.seek(start)
                f.truncate()

            try:
                for chunk in self._transfer(url, position, restart):
                    if f.tell() + len(chunk) > max_length:
                        raise exceptions.DownloadLengthMismatchError(
                            f"{url}: longer than the {max_length} bytes its signed metadata allows"
                        )
                    f.write(chunk)
                    fetched += len(chunk)
                    if progress is not None:
                        progress(f.tell())
            finally:
                f.flush()
                os.fsync(f.fileno())
        return fetched


def _transient(e: BaseException) -> bool:
    return is_transient(e) or isinstance(e, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError)


def _open_file(path: Path, offset: int, url: str) -> Stream:
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise exceptions.DownloadHTTPError(f"{url}: no such file", 404) from None
    f.seek(offset)

    def chunks() -> Iterator[bytes]:
        while block := f.read(CHUNK):
            yield block

    return Stream(offset, chunks(), f.close)
