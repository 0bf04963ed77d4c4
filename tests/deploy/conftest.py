"""Fixtures for the canary analysis tests: a real Prometheus, and models that pass or fail at run time.

``prometheus`` starts Debian's ``/usr/bin/prometheus`` on a loopback port with a temporary
config and storage, scraping the targets it is given every second; the tests skip with the
reason when the binary is missing (``make test`` installs it where it runs as root).

``canary_releases["failing"]`` holds the pico model with one data-dependent branch added: it
counts the input values further than 0.02 from mid-gray 114/255 (K) and adds a zero vector
of length K + 1 to the output. On the server's warm-up image (114-gray, letterboxed) K = 0
and the vector broadcasts; on a real image K is in the thousands, onnxruntime fails to
broadcast and the server answers 500.
No code of the server knows about it.

``serve`` (tests/conftest.py) starts the real ``detpipe serve`` processes.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from store_servers import free_port

PROMETHEUS = "/usr/bin/prometheus"
SCRAPE_S = 1


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[list[str]], str]]:
    """``start(["127.0.0.1:PORT", ...])`` -> the URL of a Prometheus scraping those targets."""
    binary = shutil.which("prometheus") or PROMETHEUS
    if not Path(binary).is_file():
        pytest.skip(f"{PROMETHEUS} not installed (apt-get install prometheus; `make test` does it as root)")
    procs: list[subprocess.Popen] = []

    def start(targets: list[str]) -> str:
        port = free_port()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(
            f"global:\n  scrape_interval: {SCRAPE_S}s\n  evaluation_interval: {SCRAPE_S}s\n"
            "scrape_configs:\n  - job_name: detpipe\n    static_configs:\n"
            f"      - targets: [{', '.join(repr(t) for t in targets)}]\n"
        )
        log = (tmp_path / "prometheus.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    binary,
                    f"--config.file={cfg}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if procs[-1].poll() is not None:
                raise RuntimeError((tmp_path / "prometheus.log").read_text())
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return url
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready:\n{(tmp_path / 'prometheus.log').read_text()}")

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def build_failing_onnx(src: Path, dst: Path, tolerance: float = 0.02) -> Path:
    """``src`` plus the data-dependent broadcast described above; outputs keep their names."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    image, out = graph.input[0].name, graph.output[0].name
    for node in graph.node:
        node.output[:] = [f"{o}_raw" if o == out else o for o in node.output]
    consts = {
        "fail_gray": np.array(114 / 255, dtype=np.float32),
        "fail_tolerance": np.array(tolerance, dtype=np.float32),
        "fail_one": np.array([1], dtype=np.int64),
        "fail_start": np.array([1], dtype=np.int64),
        "fail_end": np.array([2], dtype=np.int64),
    }
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    graph.node.extend(
        [
            helper.make_node("Sub", [image, "fail_gray"], ["fail_offset"]),
            helper.make_node("Abs", ["fail_offset"], ["fail_distance"]),
            helper.make_node("Greater", ["fail_distance", "fail_tolerance"], ["fail_not_gray"]),
            helper.make_node("NonZero", ["fail_not_gray"], ["fail_where"]),
            helper.make_node("Shape", ["fail_where"], ["fail_shape"]),
            helper.make_node("Slice", ["fail_shape", "fail_start", "fail_end"], ["fail_k"]),
            helper.make_node("Add", ["fail_k", "fail_one"], ["fail_len"]),
            helper.make_node(
                "ConstantOfShape",
                ["fail_len"],
                ["fail_zeros"],
                value=numpy_helper.from_array(np.zeros(1, dtype=np.float32)),
            ),
            helper.make_node("Add", [f"{out}_raw", "fail_zeros"], [out]),
        ]
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst


# Releases of model "pico" in a local store: the versions the analysis queries select on.
VERSIONS = {"stable": "1.0.0", "shadow": "1.1.0", "failing": "2.0.0"}


@pytest.fixture(scope="session")
def canary_releases(pico_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Release URIs of ``pico``: ``stable``, ``shadow`` (the same network) and ``failing``."""
    from detpipe.store import publish

    root = tmp_path_factory.mktemp("canary-releases")
    files = {
        "stable": pico_onnx,
        "shadow": pico_onnx,
        "failing": build_failing_onnx(pico_onnx, root / "failing.onnx"),
    }
    store = root / "store"
    for key, version in VERSIONS.items():
        publish(str(store), "pico", version, {"model.onnx": files[key]})
    return {key: f"{store}/models/pico/{version}" for key, version in VERSIONS.items()}
