"""The OTA transport against real servers: moto's S3 (s3:// and plain http:// with Range), files.

A killable TCP proxy between fetcher and server drops the connection mid-download; the
next download resumes from the partial file and fetches only the rest.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from store_servers import Proxy, s3_config
from tuf.api import exceptions

from detpipe.edge.fetcher import CHUNK, OtaFetcher
from detpipe.store.config import RetryPolicy

SIZE = 6 * CHUNK + 12345


@pytest.fixture
def blob(s3_fleet) -> tuple[str, bytes]:
    data = os.urandom(SIZE)
    s3_fleet.store().put_bytes("ota/targets/blob.bin", data)
    return f"s3://{s3_fleet.bucket}/ota/targets/blob.bin", data


def quick_retry() -> RetryPolicy:
    return RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.02)


def test_s3_download_resumes_after_a_dropped_connection(s3_fleet, blob, tmp_path: Path, faults):
    url, data = blob
    # The proxy passes on 3 MiB of the response and then nothing more: when it is killed the
    # client can hold at most that much (loopback socket buffers could otherwise already hold
    # the whole blob, and the "drop" would go unnoticed), so the body ends short, every time.
    s3_fleet.proxy.kill()
    s3_fleet.proxy = Proxy(s3_fleet.server.port, stall_after=3 * CHUNK)
    fetcher = OtaFetcher(s3_fleet.config(), retry=quick_retry(), sleep=lambda s: None)
    part = tmp_path / "blob.part"

    def cut(size: int) -> None:
        if size >= 2 * CHUNK and s3_fleet.proxy.proc.poll() is None:
            s3_fleet.proxy.kill()  # the network goes away mid-body

    with pytest.raises(exceptions.DownloadError):
        fetcher.download_to(url, part, SIZE, progress=cut)
    have = part.stat().st_size
    assert 2 * CHUNK <= have < 3 * CHUNK
    s3_fleet.restart_proxy()
    fetched = fetcher.download_to(url, part, SIZE)
    assert fetched == SIZE - have < SIZE  # only the rest came over the wire
    assert hashlib.sha256(part.read_bytes()).digest() == hashlib.sha256(data).digest()
    faults.record("connection-dropped", bad_activation=False)


def test_in_call_resume_and_length_limit_over_http_range(s3_fleet, blob, tmp_path: Path):
    _, data = blob
    url = (
        f"http://{s3_fleet.server.endpoint}/{s3_fleet.bucket}/ota/targets/blob.bin"  # moto serves plain GETs
    )
    fetcher = OtaFetcher(retry=quick_retry(), sleep=lambda s: None)
    assert b"".join(fetcher.fetch(url)) == data
    part = tmp_path / "p"
    part.write_bytes(data[:1000])
    assert fetcher.download_to(url, part, SIZE) == SIZE - 1000  # Range: bytes=1000-
    assert part.read_bytes() == data
    small = tmp_path / "small"
    with pytest.raises(exceptions.DownloadLengthMismatchError):
        fetcher.download_to(url, small, CHUNK)
    assert small.stat().st_size <= CHUNK  # never more than the signed length on disk
    with pytest.raises(exceptions.DownloadHTTPError) as e:
        b"".join(fetcher.fetch(url + ".missing"))
    assert e.value.status_code == 404


def test_s3_and_file_missing_objects_are_404(s3_fleet, tmp_path: Path):
    fetcher = OtaFetcher(s3_config(s3_fleet.server.endpoint), retry=quick_retry())
    for url in (f"s3://{s3_fleet.bucket}/ota/metadata/2.root.json", f"file://{tmp_path}/2.root.json"):
        with pytest.raises(exceptions.DownloadHTTPError) as e:
            fetcher.download_bytes(url, 100)
        assert e.value.status_code == 404, url
    (tmp_path / "f.bin").write_bytes(b"x" * 300)
    part = tmp_path / "f.part"
    part.write_bytes(b"x" * 100)
    assert OtaFetcher().download_to(f"file://{tmp_path}/f.bin", part, 300) == 200


def test_unreachable_store_fails_after_bounded_retries(tmp_path: Path):
    sleeps: list[float] = []
    fetcher = OtaFetcher(
        s3_config("127.0.0.1:9"),
        retry=RetryPolicy(attempts=3, base_delay_s=0.1, max_delay_s=1.0),
        sleep=sleeps.append,
    )
    with pytest.raises(exceptions.DownloadError, match="after 3 attempt"):
        fetcher.download_bytes("s3://fleet-bucket/ota/metadata/timestamp.json", 100)
    assert len(sleeps) == 2 and 0.05 <= sleeps[0] <= 0.1 and 0.1 <= sleeps[1] <= 0.2  # exponential, jittered
