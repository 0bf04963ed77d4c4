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
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from store_servers import MotoServer, Proxy, s3_config

from detpipe.edge.keys import keygen
from detpipe.store import Store, open_store


def _serving_fixtures():
    """tests/serving/conftest.py's ``serve`` and ``val_jpegs`` (real ``detpipe serve`` processes)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "serving" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_detpipe_tests_serving_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.serve, module.val_jpegs


serve, val_jpegs = _serving_fixtures()

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


@dataclass(frozen=True)
class Models:
    good: Path
    other: Path
    big: Path
    nan: Path


def _with_initializer(src: Path, dest: Path, values: np.ndarray) -> Path:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    model.graph.initializer.append(numpy_helper.from_array(values, name="detpipe_test_padding"))
    onnx.save(model, str(dest))
    return dest


def _nan_output(src: Path, dest: Path) -> Path:
    """The model with its output multiplied by NaN: loads and runs, fails the finite check."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    out = model.graph.output[0]
    raw = out.name + "_raw"
    for node in model.graph.node:
        node.output[:] = [raw if o == out.name else o for o in node.output]
    model.graph.initializer.append(numpy_helper.from_array(np.array(np.nan, dtype=np.float32), "nan_c"))
    model.graph.node.append(helper.make_node("Mul", [raw, "nan_c"], [out.name]))
    onnx.save(model, str(dest))
    return dest


@pytest.fixture(scope="session")
def models(pico_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Models:
    d = tmp_path_factory.mktemp("edge-models")
    rng = np.random.default_rng(0)
    return Models(
        good=pico_onnx,
        other=_with_initializer(pico_onnx, d / "other.onnx", np.arange(16, dtype=np.float32)),
        big=_with_initializer(pico_onnx, d / "big.onnx", rng.random(2 << 20, dtype=np.float32)),
        nan=_nan_output(pico_onnx, d / "nan.onnx"),
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


@dataclass
class S3Fleet:
    """A bucket on the moto server, reached through a killable proxy."""

    server: MotoServer
    bucket: str
    proxy: Proxy
    uri: str

    def env(self) -> dict[str, str]:
        from store_servers import ACCESS_KEY, SECRET_KEY

        return {
            "DETPIPE_S3_ENDPOINT": f"http://{self.proxy.endpoint}",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "DETPIPE_S3_REGION": "us-east-1",
            "DETPIPE_S3_RETRIES": "2",
        }

    def config(self, **overrides):
        return s3_config(self.proxy.endpoint, **overrides)

    def store(self) -> Store:
        """The store as the publisher sees it (straight to the server, not through the proxy)."""
        return open_store(self.uri, s3=s3_config(self.server.endpoint))

    def restart_proxy(self) -> None:
        self.proxy.kill()
        self.proxy = Proxy(self.server.port, self.proxy.port)


@pytest.fixture
def s3_fleet(moto: MotoServer) -> Iterator[S3Fleet]:
    bucket = moto.make_bucket()
    fleet = S3Fleet(moto, bucket, Proxy(moto.port), f"s3://{bucket}")
    try:
        yield fleet
    finally:
        fleet.proxy.kill()


def run_agent(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """``detpipe edge agent ARGS`` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "edge", "agent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
