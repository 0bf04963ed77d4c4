"""Helpers of the edge tests (a module name of its own, so ``conftest`` never clashes):
test model files derived from the session's pico ONNX model, an S3 bucket behind a killable
proxy, and the agent CLI as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from store_servers import MotoServer, Proxy, s3_config

from detpipe.store import Store, open_store


@dataclass(frozen=True)
class Models:
    good: Path
    other: Path
    big: Path
    nan: Path


def with_initializer(src: Path, dest: Path, values: np.ndarray) -> Path:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    model.graph.initializer.append(numpy_helper.from_array(values, name="detpipe_test_padding"))
    onnx.save(model, str(dest))
    return dest


def nan_output(src: Path, dest: Path) -> Path:
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


def run_agent(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """``detpipe edge agent ARGS`` as a real process (in ``cwd``: relative paths are the device's)."""
    checkout = str(Path(__file__).parents[2])  # this checkout's detpipe, whatever the cwd
    pythonpath = os.pathsep.join(p for p in (checkout, os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "edge", "agent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": pythonpath, **(env or {})},
        cwd=cwd,
    )


def run_edge(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """``detpipe edge ARGS`` as a real process (any subcommand: publish, enroll, rollout, fleet ...)."""
    checkout = str(Path(__file__).parents[2])
    pythonpath = os.pathsep.join(p for p in (checkout, os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "detpipe.cli.main", "edge", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": pythonpath, **(env or {})},
    )


# Runs ``detpipe.cli.main.main(argv)`` (what the console script runs) for each argv in turn, each
# call's stdout captured, one JSON line per call; after its imports it waits until the start time,
# or (start time "gate") prints a "ready" line and waits for a line on stdin.
_BATCH_DRIVER = """\
import contextlib, io, json, sys, time
from detpipe.cli.main import main
calls, start_at = json.loads(sys.argv[1]), sys.argv[2]
if start_at == "gate":
    print("ready", flush=True)
    sys.stdin.readline()
else:
    time.sleep(max(0.0, float(start_at) - time.time()))
codes = []
for argv in calls:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 2
    codes.append(rc)
    print(json.dumps({"rc": rc, "stdout": out.getvalue()}), flush=True)
sys.exit(next((c for c in codes if c), 0))
"""


@dataclass(frozen=True)
class BatchRun:
    """One process of :func:`run_cli_batch`: its exit status and each call's (exit code, stdout)."""

    returncode: int
    calls: list[tuple[int, str]]
    stderr: str


def batch_driver(calls: list[list[str]], start_at: float | str = 0.0) -> list[str]:
    """The command line of one :func:`run_cli_batch` process (for ``Popen`` when tests start several).

    ``start_at="gate"``: the process prints ``ready`` once it has imported the CLI and starts its
    calls when it reads a line on stdin (:func:`start_together`).
    """
    import json

    return [sys.executable, "-c", _BATCH_DRIVER, json.dumps(calls), str(start_at)]


def batch_env(env: dict[str, str] | None = None) -> dict[str, str]:
    checkout = str(Path(__file__).parents[2])
    pythonpath = os.pathsep.join(p for p in (checkout, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": pythonpath, **(env or {})}


def start_together(argvs: list[list[str]], env: dict[str, str]) -> list[subprocess.Popen]:
    """One :func:`batch_driver` process per call list, let go at the same moment once all are ready."""
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    procs = [subprocess.Popen(batch_driver(calls, "gate"), env=env, **pipes) for calls in argvs]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline() == "ready\n", p.stderr and p.stderr.read()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    return procs


def parse_batch(returncode: int, stdout: str, stderr: str) -> BatchRun:
    import json

    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith('{"rc": ')]
    return BatchRun(returncode, [(d["rc"], d["stdout"]) for d in lines], stderr)


def run_cli_batch(
    calls: list[list[str]], env: dict[str, str] | None = None, timeout: float = 180
) -> BatchRun:
    """Several ``detpipe ARGV`` runs of the real CLI, one after another in one process.

    Each call is ``detpipe.cli.main.main(argv)``, the console script's entry point, so a
    fleet of agents (``edge agent --once``) costs one interpreter start per batch instead of
    one per device. Exit status: the first non-zero call's code, else 0.
    """
    done = subprocess.run(
        batch_driver(calls), capture_output=True, text=True, timeout=timeout, env=batch_env(env)
    )
    return parse_batch(done.returncode, done.stdout, done.stderr)
