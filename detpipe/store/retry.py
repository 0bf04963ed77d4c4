"""Retries with exponential backoff and jitter, and which S3 failures are worth retrying.

Transient: connection refused/reset/aborted, timeouts, HTTP 5xx, S3 ``SlowDown`` /
``RequestTimeout`` / ``InternalError`` / ``ServiceUnavailable``. Everything else (4xx such
as bad credentials or a missing bucket, local file errors) fails on the first attempt::

    result = call_with_retry(lambda: client.stat_object(b, k), RetryPolicy(), "stat s3://b/k")
"""

from __future__ import annotations

import http.client
import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import urllib3.exceptions
from minio.error import InvalidResponseError, S3Error, ServerError

from detpipe.store.config import RetryPolicy

logger = logging.getLogger(__name__)

T = TypeVar("T")

_TRANSIENT_S3_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "OperationAborted", "ServerBusy"}
)
_TRANSIENT_NETWORK = (
    ConnectionError,  # refused, reset, aborted, broken pipe
    TimeoutError,
    http.client.IncompleteRead,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure that may go away when the operation is retried."""
    if isinstance(exc, urllib3.exceptions.MaxRetryError):
        return exc.reason is None or is_transient(exc.reason)
    if isinstance(exc, urllib3.exceptions.SSLError):
        return False  # certificate problems do not fix themselves
    if isinstance(exc, _TRANSIENT_NETWORK):
        return True
    if isinstance(exc, S3Error):
        status = getattr(exc.response, "status", None) or 0
        return exc.code in _TRANSIENT_S3_CODES or status >= 500
    if isinstance(exc, ServerError):
        return exc.status_code >= 500 or exc.status_code == 429
    if isinstance(exc, InvalidResponseError):  # a non-S3 body, e.g. a proxy's HTML 502 page
        return (getattr(exc, "_code", 0) or 0) >= 500
    return False


def describe(exc: BaseException) -> str:
    """A short, secret-free description of a transport failure for messages and logs."""
    root: BaseException = exc
    if isinstance(root, urllib3.exceptions.MaxRetryError) and root.reason is not None:
        root = root.reason
    for kind, text in (
        (ConnectionRefusedError, "connection refused"),
        (ConnectionResetError, "connection reset"),
        (ConnectionAbortedError, "connection aborted"),
        (BrokenPipeError, "connection closed by the server"),
    ):
        if (
            isinstance(root, kind)
            or isinstance(root.__context__, kind)
            or any(isinstance(a, kind) for a in root.args)
        ):
            return text
    if isinstance(root, urllib3.exceptions.NewConnectionError):
        return "connection refused"
    if isinstance(root, TimeoutError | urllib3.exceptions.TimeoutError):
        return "timed out"
    if isinstance(root, S3Error):
        return f"{root.code}: {root.message}"
    if isinstance(root, ServerError):
        return f"HTTP {root.status_code}"
    if isinstance(root, InvalidResponseError):
        return f"HTTP {getattr(root, '_code', '?')} with a non-S3 response"
    first_line = str(root).splitlines()[0] if str(root) else ""
    return f"{type(root).__name__}: {first_line[:200]}"


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    what: str,
    *,
    transient: Callable[[BaseException], bool] = is_transient,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """Call ``fn`` until it succeeds, a non-transient error occurs, or attempts run out.

    Args:
        fn: the operation; it must be safe to repeat (re-open files, restart uploads).
        policy: attempts and backoff.
        what: the operation for log lines (``"upload s3://b/k"``); never put secrets in it.
        transient: the classifier.
        sleep: the wait function (tests pass a recorder).
        rng: randomness for the jitter.

    Returns:
        What ``fn`` returned.

    Raises:
        The last exception ``fn`` raised, unchanged: callers translate it (a transient one
        reaching them means the attempts are used up).
    """
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as exc:
            if attempt >= policy.attempts or not transient(exc):
                raise
            delay = policy.delay(attempt, rng)
            logger.warning(
                "%s: %s; retry %d/%d in %.2fs", what, describe(exc), attempt, policy.attempts - 1, delay
            )
            sleep(delay)
            attempt += 1
