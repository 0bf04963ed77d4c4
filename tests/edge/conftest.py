"""Fixtures for the edge OTA tests: keys, stores (local and a real moto S3 server), models.

``models`` derives test artifacts from the session's pico ONNX model (tests/conftest.py),
never trains its own: ``good`` (the model), ``other`` (the same network with a different
padding initializer, i.e. a second valid version), ``big`` (a valid model padded with an
8 MiB unused initializer, for mid-download faults) and ``nan`` (loads, but its output is
NaN: fails the health check).

``faults`` counts every injected fault by kind and whether it ended in a bad activation;
the terminal summary prints one line with the counts.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from edge_support import Models, S3Fleet, nan_output, with_initializer
from store_servers import MotoServer, Proxy

from detpipe.edge.keys import keygen

FAULTS: collections.Counter[str] = collections.Counter()
BAD_ACTIVATIONS: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:
    if FAULTS:
        kinds = ", ".join(f"{k}={n}" for k, n in sorted(FAULTS.items()))
        terminalreporter.write_line(
            f"edge OTA fault injection: {sum(FAULTS.values())} faults injected ({kinds}); "
            f"bad activations: {len(BAD_ACTIVATIONS)}" + (f" {BAD_ACTIVATIONS}" if BAD_ACTIVATIONS else "")
        )


class FaultLog:
    """Record an injected fault and whether the device ended up running something bad."""

    def record(self, kind: str, bad_activation: bool) -> None:
        FAULTS[kind] += 1
        if bad_activation:
            BAD_ACTIVATIONS.append(kind)


@pytest.fixture(scope="session")
def faults() -> FaultLog:
    return FaultLog()


@pytest.fixture(scope="session")
def models(pico_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Models:
    d = tmp_path_factory.mktemp("edge-models")
    rng = np.random.default_rng(0)
    return Models(
        good=pico_onnx,
        other=with_initializer(pico_onnx, d / "other.onnx", np.arange(16, dtype=np.float32)),
        big=with_initializer(pico_onnx, d / "big.onnx", rng.random(2 << 20, dtype=np.float32)),
        nan=nan_output(pico_onnx, d / "nan.onnx"),
    )


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fleet's keys (keygen is fast, but the tests share them like a real fleet)."""
    out = tmp_path_factory.mktemp("ota-keys")
    keygen(out)
    return out


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def s3_fleet(moto: MotoServer) -> Iterator[S3Fleet]:
    bucket = moto.make_bucket()
    fleet = S3Fleet(moto, bucket, Proxy(moto.port), f"s3://{bucket}")
    try:
        yield fleet
    finally:
        fleet.proxy.kill()
