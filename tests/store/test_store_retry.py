"""Retry policy: which errors are retried, how long it waits, when it gives up."""

from __future__ import annotations

import random

import pytest
import urllib3
from minio.error import S3Error, ServerError

from detpipe.store import RetryPolicy
from detpipe.store.retry import call_with_retry, describe, is_transient


def _s3_error(code: str, status: int) -> S3Error:
    return S3Error(
        urllib3.HTTPResponse(body=b"", status=status), code, "msg", "/b/k", "req", "host", "b", "k"
    )


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        BrokenPipeError(32, "Broken pipe"),
        TimeoutError("timed out"),
        urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
        urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection"),
        urllib3.exceptions.ReadTimeoutError(None, "/b/k", "Read timed out."),
        urllib3.exceptions.MaxRetryError(None, "/b/k", ConnectionRefusedError(111, "refused")),
        _s3_error("SlowDown", 503),
        _s3_error("InternalError", 500),
        _s3_error("Whatever", 502),
        ServerError("server failed with HTTP status code 502", 502),
    ],
)
def test_transient(exc):
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        _s3_error("AccessDenied", 403),
        _s3_error("SignatureDoesNotMatch", 403),
        _s3_error("NoSuchBucket", 404),
        _s3_error("NoSuchKey", 404),
        ServerError("server failed with HTTP status code 400", 400),
        urllib3.exceptions.SSLError("certificate verify failed"),
        urllib3.exceptions.MaxRetryError(None, "/b/k", urllib3.exceptions.SSLError("bad cert")),
        FileNotFoundError(2, "No such file"),
        ValueError("bug"),
    ],
)
def test_not_transient(exc):
    assert not is_transient(exc)


def test_describe_is_short():
    assert (
        describe(urllib3.exceptions.ProtocolError("aborted", ConnectionResetError(104, "x")))
        == "connection reset"
    )
    assert describe(ConnectionRefusedError(111, "Connection refused")) == "connection refused"
    assert describe(_s3_error("SlowDown", 503)) == "SlowDown: msg"


def test_backoff_grows_with_jitter_and_is_capped():
    policy = RetryPolicy(attempts=10, base_delay_s=0.1, max_delay_s=0.5)
    rng = random.Random(1)
    for attempt, cap in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (9, 0.5)]:
        delays = {policy.delay(attempt, rng) for _ in range(50)}
        assert all(cap / 2 <= d <= cap for d in delays)
        assert len(delays) > 1  # jitter: not a constant


def test_retries_transient_then_succeeds():
    calls, sleeps = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError(104, "Connection reset by peer")
        return 42

    policy = RetryPolicy(attempts=5, base_delay_s=0.1, max_delay_s=1.0)
    assert call_with_retry(flaky, policy, "op", sleep=sleeps.append, rng=random.Random(0)) == 42
    assert len(calls) == 3
    assert len(sleeps) == 2
    assert 0.05 <= sleeps[0] <= 0.1
    assert 0.1 <= sleeps[1] <= 0.2


def test_gives_up_after_bounded_attempts(caplog):
    calls, sleeps = [], []

    def down():
        calls.append(1)
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(ConnectionRefusedError):
        call_with_retry(
            down, RetryPolicy(attempts=4, base_delay_s=0.01), "upload s3://b/k", sleep=sleeps.append
        )
    assert (len(calls), len(sleeps)) == (4, 3)
    messages = [r.getMessage() for r in caplog.records if r.name == "detpipe.store.retry"]
    assert [m.split(" in ")[0] for m in messages] == [
        "upload s3://b/k: connection refused; retry 1/3",
        "upload s3://b/k: connection refused; retry 2/3",
        "upload s3://b/k: connection refused; retry 3/3",
    ]


def test_no_retry_on_client_errors():
    calls = []

    def denied():
        calls.append(1)
        raise _s3_error("AccessDenied", 403)

    with pytest.raises(S3Error):
        call_with_retry(denied, RetryPolicy(attempts=5), "op", sleep=lambda _: None)
    assert len(calls) == 1
