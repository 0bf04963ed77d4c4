"""``detpipe deploy canary --strategy kserve --auto`` end to end: real servers, Prometheus, the CLI.

Real ``detpipe serve`` processes stand in for the pods of KServe's revisions, each serving a
release directory under the InferenceService's name (as the ServingRuntime runs them), and a
real Prometheus scrapes them with the target labels its Kubernetes pod discovery would give
them (``namespace``, ``pod`` = ``<revision>-deployment-<hash>-<hash>``). The loopback API with
KServe's reconcile (test_kserve_cluster.KServeFake) names the revisions; a traffic thread sends
requests to each revision's server in the shares KServe's status reports, as Knative would.

* release 2.0.0 (its model fails on real images, tests/deploy/conftest.py) is rolled back: exit 4;
* release 1.1.0 (the stable network) is promoted: exit 0, although another pod outside the
  canary revision (namespace ``staging``) serves a failing model as the same model and version:
  the checks read the canary revision's pods only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import config
from store_servers import free_port

from detpipe.deploy import kserve_actions as ka
from detpipe.deploy.cluster import Kube
from detpipe.deploy.config import CanaryConfig
from detpipe.deploy.kserve_auto import kserve_checks
from detpipe.deploy.prometheus import evaluate, query
from detpipe.deploy.queries import checks
from detpipe.store import publish

from .conftest import PROMETHEUS, VERSIONS, build_failing_onnx
from .fake_kube import serve as serve_kube
from .test_kserve_cluster import KServeFake

pytestmark = pytest.mark.slow

NAME, NS = "detpipe-serve", "detpipe"
REV = {n: f"{NAME}-predictor-{n:05d}" for n in (1, 2, 3)}
WINDOW = "30s"
PACE_S = 0.05
MAX_REQUESTS = 6000  # the traffic thread stops by itself


def _start_prometheus(tmp_path: Path, targets: dict[str, dict[str, str]]) -> tuple[str, subprocess.Popen]:
    """A Prometheus scraping each ``host:port`` every second with its target labels."""
    binary = shutil.which("prometheus") or PROMETHEUS
    if not Path(binary).is_file():
        pytest.skip(f"{PROMETHEUS} not installed (apt-get install prometheus; `make test` does it as root)")
    port = free_port()
    lines = ["global: {scrape_interval: 1s, evaluation_interval: 1s}", "scrape_configs:",
             "  - job_name: detpipe", "    static_configs:"]  # fmt: skip
    for target, labels in targets.items():
        shown = ", ".join(f"{k}: {v!r}" for k, v in labels.items())
        lines += [f"      - targets: [{target!r}]", f"        labels: {{{shown}}}"]
    (tmp_path / "prometheus.yml").write_text("\n".join(lines) + "\n")
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
                if resp.status == 200:
                    return url, proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError((tmp_path / "prometheus.log").read_text())


class Traffic(threading.Thread):
    """Requests to each revision's server in the shares KServe reports (smooth weighted round robin)."""

    def __init__(
        self, kube: KServeFake, servers: dict[str, object], extra: object, jpegs: list[bytes]
    ) -> None:
        super().__init__(daemon=True)
        self.kube, self.servers, self.extra, self.jpegs = kube, servers, extra, jpegs
        self.stop = threading.Event()
        self.sent: dict[str, dict[int, int]] = {}
        self._credit: dict[str, float] = {}

    def _pick(self) -> str:
        targets = self.kube.isvc()["status"]["components"]["predictor"].get("traffic") or []
        shares = {t["revisionName"]: t["percent"] for t in targets if t["percent"]} or {REV[1]: 100}
        for rev, pct in shares.items():
            self._credit[rev] = self._credit.get(rev, 0.0) + pct
        pick = max(shares, key=lambda r: self._credit[r])
        self._credit[pick] -= 100
        return pick

    def run(self) -> None:
        for i in range(MAX_REQUESTS):
            if self.stop.wait(PACE_S):
                return
            rev = self._pick()
            jpeg = self.jpegs[i % len(self.jpegs)]
            status = self.servers[rev].post(f"/v1/models/{NAME}:detect", jpeg, "image/jpeg").status
            self.sent.setdefault(rev, {}).setdefault(status, 0)
            self.sent[rev][status] += 1
            if i % 4 == 0:  # the stranger: same model and version as release 1.1.0, failing, elsewhere
                self.extra.post(f"/v1/models/{NAME}:detect", jpeg, "image/jpeg")


@pytest.fixture
def dirs(canary_releases: dict[str, str], pico_onnx: Path, tmp_path: Path) -> dict[str, str]:
    """Release directories (the storage initializer's layout): the fixture's, and a failing 1.1.0."""
    other = tmp_path / "other-store"
    publish(
        str(other),
        "pico",
        VERSIONS["shadow"],
        {"model.onnx": build_failing_onnx(pico_onnx, tmp_path / "f.onnx")},
    )
    return {**canary_releases, "stranger": f"{other}/models/pico/{VERSIONS['shadow']}"}


def _cli(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess:
    """``detpipe deploy ARGS`` as a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "deploy", *args, "--kubeconfig", str(kubeconfig)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def _auto(kubeconfig: Path, prometheus: str, version: str, *flags: str) -> subprocess.CompletedProcess:
    return _cli(
        kubeconfig, "canary", "--model-uri", f"s3://detpipe/models/pico/{version}", "--strategy", "kserve",
        "--auto", "--steps", "25,100", "--pause", "5s", "--analysis-interval", "2s", "--analysis-count", "3",
        "--analysis-window", WINDOW, "--ready-timeout", "60s", "--prometheus-url", prometheus, *flags,
    )  # fmt: skip


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KServeFake, Path]]:
    kube = KServeFake()
    with serve_kube(kube, tmp_path / "kubeconfig"):
        yield kube, tmp_path / "kubeconfig"


def test_auto_rolls_back_a_failing_canary_and_promotes_a_good_one(
    serve, dirs, val_jpegs, cluster, tmp_path: Path
) -> None:
    kube, kubeconfig = cluster

    def pod(release: str) -> object:  # a pod of its own: its own cache (two releases here are pico 1.1.0)
        cache = ("--cache-dir", str(tmp_path / f"cache-{release}"))
        return serve("--model", dirs[release], "--name", NAME, "--max-batch", "1", "--allow-unsigned", *cache,
                     wait=False)  # fmt: skip

    servers = {REV[1]: pod("stable"), REV[2]: pod("failing"), REV[3]: pod("shadow")}
    stranger = pod("stranger")
    for server in (*servers.values(), stranger):
        server.wait_ready()
    labels = {rev: {"namespace": NS, "pod": f"{rev}-deployment-7d4f8c9b6-x{n}"} for n, rev in REV.items()}
    targets = {s.url.removeprefix("http://"): labels[rev] for rev, s in servers.items()}
    targets[stranger.url.removeprefix("http://")] = {
        "namespace": "staging",
        "pod": f"{REV[3]}-deployment-1-z",
    }
    prometheus, proc = _start_prometheus(tmp_path, targets)
    client = Kube(config.new_client_from_config(config_file=str(kubeconfig)))
    traffic = Traffic(kube, servers, stranger, val_jpegs)
    try:
        deadline = time.monotonic() + 30
        while query(prometheus, "sum(up)") != 4:
            assert time.monotonic() < deadline, "Prometheus did not scrape every server"
            time.sleep(0.5)
        # the stable release, rolled out (a first revision takes all traffic)
        ka.apply_canary(
            client, CanaryConfig(f"s3://detpipe/models/pico/{VERSIONS['stable']}", strategy="kserve")
        )
        traffic.start()

        failing = _auto(kubeconfig, prometheus, VERSIONS["failing"])
        (tmp_path / "auto-failing.out").write_text(failing.stdout + failing.stderr)  # kept for a look
        assert failing.returncode == 4, failing.stdout + failing.stderr
        out = failing.stdout.splitlines()
        assert f"step 25%: canary {REV[2]} has 25% (stable {REV[1]}); holding 5s" in out
        assert "  measurement 1/3: error-rate 1 fail, latency-p95-ratio" in failing.stdout
        rolled_back = "rolled back: canaryTrafficPercent 0 (KServe sends all traffic to the last rolled-out "
        assert out[-2].startswith(rolled_back + "revision): step 25% fail: error-rate 1, 1 (limit 0.01)")
        assert out[-1].startswith(f"canary pico {VERSIONS['failing']}: kserve, rolled back (step 25% fail")
        assert "  measurement 3/3" not in failing.stdout  # failed past its limit after 2: no third
        isvc = kube.isvc()
        assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 0
        assert ka.revisions(isvc).canary_percent == 0 and ka.revisions(isvc).stable == REV[1]
        assert traffic.sent[REV[2]].keys() == {500}
        # `deploy status --prometheus`: the checks of the canary revision the InferenceService names
        argv = ["status", "--strategy", "kserve", "--prometheus", prometheus, "--analysis-window", WINDOW]
        status = json.loads(_cli(kubeconfig, *argv, "--json").stdout)
        assert (status["phase"], status["canary_version"], status["details"]["canary_revision"]) == (
            "Aborted", VERSIONS["failing"], REV[2])  # fmt: skip
        by_name = {c["name"]: c for c in status["checks"]}
        assert by_name["error-rate"] == {"name": "error-rate", "value": 1.0, "limit": 0.01, "verdict": "fail"}

        good = _auto(kubeconfig, prometheus, VERSIONS["shadow"], "--max-latency-ratio", "100")
        (tmp_path / "auto-good.out").write_text(good.stdout + good.stderr)
        assert good.returncode == 0, good.stdout + good.stderr
        out = good.stdout.splitlines()
        assert f"step 25%: canary {REV[3]} has 25% (stable {REV[1]}); holding 5s" in out
        assert sum(line.startswith("  measurement ") for line in out) == 3
        assert "step 25%: every check passed" in out
        assert out[-1] == f"canary pico {VERSIONS['shadow']}: kserve, promoted (every step passed)"
        isvc = kube.isvc()
        assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
        comp = isvc["status"]["components"]["predictor"]
        assert comp["latestRolledoutRevision"] == REV[3] and comp["traffic"][0]["percent"] == 100

        # what the scope kept out: unscoped, the stranger's 5xx make the same release's error rate fail
        (unscoped,) = evaluate(prometheus, checks(NAME, VERSIONS["shadow"], window=WINDOW)[:1])
        assert unscoped["verdict"] == "fail" and 0 < unscoped["value"] < 1
        scoped = kserve_checks(NAME, NS, VERSIONS["shadow"], REV[3], REV[1], window=WINDOW)
        assert evaluate(prometheus, scoped[:1])[0] == {
            "name": "error-rate", "value": 0.0, "limit": 0.01, "verdict": "pass"}  # fmt: skip
    finally:
        traffic.stop.set()
        traffic.join(timeout=30)
        proc.terminate()
        proc.wait(timeout=20)
