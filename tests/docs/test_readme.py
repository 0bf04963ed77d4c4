"""README.md's runnable command blocks, run as written, in order, in one fresh working directory.

A fenced block is runnable when an HTML comment right before its fence names it (invisible on
GitHub)::

    <!-- runnable: training/demo -->
    ```bash
    detpipe data synth --out runs/demo/data ...
    ```

The blocks run one after another in a temp directory (later ones use what earlier ones wrote,
as a reader following the README would): ``bash`` blocks with ``set -euo pipefail``,
``python`` blocks with this venv's Python; this venv's ``bin`` first on ``PATH``, ``HOME`` and
``XDG_CACHE_HOME`` inside the temp dir, no ``DETPIPE_*``/S3/Kubeflow settings from outside,
each block under its own time limit (:data:`BLOCK_TIMEOUT_S`, or ``timeout=N`` in the marker)
and in its own process group, killed whole when it ends. The repository's ``docs/`` and
``tests/`` are linked into the directory, since the README's examples read their CSV files.
A failing block fails the test with its name, its exit status and the tail of its output.

A block that serves (``detpipe serve``) starts the server in the background, waits for
``/readyz`` and stops it with a ``trap``, as a shell script would. A Python client block
names the server it talks to in its marker, ``server="detpipe serve ..."``: the test starts
that command, waits for ``127.0.0.1:8080/readyz``, runs the block and stops the server.
Everything listens on loopback only (``detpipe serve``'s default host).

Not marked, so not run here (the README says what each needs): blocks that need a Kubernetes
cluster or Kubeflow (``kubectl``, PyTorchJob/TrainJob submission, canary apply, promote and
status, pipeline submission; their ``--dry-run`` forms are run), a GPU or TensorRT (engine
export, torchrun over 4 GPUs, ``scripts/gpu_check.sh``), two hosts (multi-node torchrun), a
Jetson, MinIO or another S3 store (``s3://`` URIs: serving and shadowing from S3, edge
publishing to S3), the network (``docker/resolve_check.py`` asks PyPI), COCO on disk
(``--coco /data/coco``), ``make`` targets (they build and use the checkout's own ``.venv``;
``make test`` is this suite; ``make run`` is run here as ``detpipe pipeline run --quick``),
runs of several minutes (the 30-epoch pico run and the sweeps), and plain output listings.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
BLOCK_TIMEOUT_S = 240.0
SERVER_URL = "http://127.0.0.1:8080"  # where the README's examples serve
LINKED = ("docs", "tests")  # repository dirs the README's examples read from
# settings from the outside that would change what the README's commands do
HERMETIC_PREFIXES = ("DETPIPE_", "AWS_", "MINIO_", "KF_PIPELINES_", "KUBECONFIG")

_MARKED = re.compile(
    r"^<!--\s*runnable:\s*(?P<name>[\w./-]+)(?P<options>[^\n]*?)\s*-->\n"
    r"```(?P<lang>\w+)\n(?P<body>.*?)^```",
    re.MULTILINE | re.DOTALL,
)
_OPTION = re.compile(r'(\w+)=(?:"([^"]*)"|(\S+))')


@dataclass(frozen=True)
class Block:
    name: str  # group/name from the marker
    lang: str  # bash or python
    body: str
    line: int  # line of the fence in the README
    timeout_s: float = BLOCK_TIMEOUT_S
    server: str | None = None  # a command to run in the background while the block runs


def runnable_blocks(text: str) -> list[Block]:
    """The marked blocks of a Markdown text, in order.

    Raises:
        ValueError: a marker with an unknown option or language, or a name used twice.
    """
    blocks = []
    for m in _MARKED.finditer(text):
        options = {k: quoted or bare for k, quoted, bare in _OPTION.findall(m["options"])}
        if set(options) - {"timeout", "server"} or _OPTION.sub("", m["options"]).strip():
            raise ValueError(f"runnable block {m['name']}: unknown options {m['options'].strip()!r}")
        if m["lang"] not in ("bash", "python"):
            raise ValueError(f"runnable block {m['name']}: cannot run a {m['lang']} block")
        line = text.count("\n", 0, m.start("lang"))  # 0-based index of the fence = 1-based line - 1
        blocks.append(
            Block(
                name=m["name"],
                lang=m["lang"],
                body=m["body"],
                line=line + 1,
                timeout_s=float(options.get("timeout", BLOCK_TIMEOUT_S)),
                server=options.get("server"),
            )
        )
    names = [b.name for b in blocks]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"runnable block names used twice: {twice}")
    return blocks


def block_env(workdir: Path) -> dict[str, str]:
    """The environment a reader's fresh shell would have: this venv first, home in ``workdir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(HERMETIC_PREFIXES)}
    home = workdir / "home"
    (home / ".cache").mkdir(parents=True, exist_ok=True)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        PYTHONUNBUFFERED="1",
        VIRTUAL_ENV=str(Path(sys.executable).parent.parent),
    )
    env.pop("PYTHONPATH", None)
    return env


def _kill_group(proc: subprocess.Popen) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.is_file() else ""


@contextmanager
def _server(block: Block, workdir: Path, env: dict[str, str], log: Path) -> Iterator[None]:
    """``block.server`` running in the background, ready (``/readyz`` 200) within 120 s."""
    if block.server is None:
        yield
        return
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-c", f"set -euo pipefail\nexec {block.server}"],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"README block {block.name}: its server exited {proc.returncode}:\n{_tail(log)}")
            try:
                with urllib.request.urlopen(f"{SERVER_URL}/readyz", timeout=2) as res:
                    if res.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"README block {block.name}: its server was not ready in 120 s:\n{_tail(log)}")
            time.sleep(0.5)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        _kill_group(proc)


def run_block(block: Block, workdir: Path, env: dict[str, str], logs: Path) -> float:
    """Run one block in ``workdir``; returns its wall time. Fails the test with its name."""
    stem = re.sub(r"\W+", "-", block.name)
    log = logs / f"{stem}.log"
    if block.lang == "bash":
        script = logs / f"{stem}.sh"
        script.write_text("set -euo pipefail\n" + block.body)
        cmd = ["bash", str(script)]
    else:
        script = logs / f"{stem}.py"
        script.write_text(block.body)
        cmd = [sys.executable, str(script)]
    where = f"README block {block.name} (README.md line {block.line})"
    start = time.monotonic()
    with _server(block, workdir, env, logs / f"{stem}.server.log"), log.open("w") as out:
        proc = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=block.timeout_s)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            _kill_group(proc)  # whatever it left running in the background
            proc.wait()
    elapsed = time.monotonic() - start
    if rc is None:
        pytest.fail(f"{where}: still running after {block.timeout_s:.0f} s; output ends:\n{_tail(log)}")
    if rc != 0:
        pytest.fail(f"{where}: exit {rc} after {elapsed:.1f} s; output ends:\n{_tail(log)}")
    return elapsed


def _port_in_use(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) == 0


def test_readme_markers_parse_and_name_the_kinds_of_blocks():
    blocks = runnable_blocks(README.read_text())
    assert len(blocks) >= 20, [b.name for b in blocks]
    groups = {b.name.split("/")[0] for b in blocks}
    assert {"pipelines", "subsets", "training", "evaluation", "export", "serving"} <= groups
    for b in blocks:
        assert b.body.strip(), b.name
        if b.lang == "bash":
            # runnable blocks use the venv's detpipe through PATH, never a checkout's .venv or make
            assert not re.search(r"^\s*make\b|\.venv/", b.body, re.MULTILINE), b.name
    assert any(b.server for b in blocks if b.lang == "python")


def test_a_failing_block_fails_with_its_name_and_output(tmp_path):
    text = (
        "intro\n\n<!-- runnable: demo/ok -->\n```bash\necho hello > hello.txt\n```\n\n"
        "<!-- runnable: demo/broken timeout=30 -->\n```bash\ncat hello.txt\necho about to fail\nfalse\n"
        "echo never\n```\n\n```bash\nnot marked: not run\n```\n"
    )
    blocks = runnable_blocks(text)
    assert [(b.name, b.line, b.timeout_s) for b in blocks] == [
        ("demo/ok", 4, BLOCK_TIMEOUT_S),
        ("demo/broken", 9, 30.0),
    ]
    env = block_env(tmp_path)
    run_block(blocks[0], tmp_path, env, tmp_path)
    with pytest.raises(pytest.fail.Exception) as failed:
        run_block(blocks[1], tmp_path, env, tmp_path)
    message = str(failed.value)
    assert "README block demo/broken (README.md line 9): exit 1" in message
    assert "hello\nabout to fail" in message and "never" not in message


def test_a_hanging_block_is_stopped_with_what_it_started(tmp_path):
    (block,) = runnable_blocks(
        "<!-- runnable: demo/hang timeout=2 -->\n```bash\nsleep 300 &\necho $! > bg.pid\nsleep 300\n```\n"
    )
    with pytest.raises(pytest.fail.Exception, match=r"demo/hang .*still running after 2 s"):
        run_block(block, tmp_path, block_env(tmp_path), tmp_path)
    pid = int((tmp_path / "bg.pid").read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_unknown_marker_options_are_refused():
    with pytest.raises(ValueError, match="unknown options"):
        runnable_blocks("<!-- runnable: a/b tiemout=3 -->\n```bash\ntrue\n```\n")
    with pytest.raises(ValueError, match="used twice"):
        runnable_blocks(2 * "<!-- runnable: a/b -->\n```bash\ntrue\n```\n")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_readme_blocks_run_as_written(tmp_path, summary_line):
    if _port_in_use(SERVER_URL):
        pytest.skip(f"{SERVER_URL} is in use: the README's serving examples listen there")
    workdir = tmp_path / "work"
    logs = tmp_path / "logs"
    workdir.mkdir()
    logs.mkdir()
    for name in LINKED:
        (workdir / name).symlink_to(REPO / name, target_is_directory=True)
    env = block_env(workdir)
    blocks = runnable_blocks(README.read_text())
    times = {}
    start = time.monotonic()
    for block in blocks:
        times[block.name] = run_block(block, workdir, env, logs)
    total = time.monotonic() - start
    slowest = ", ".join(f"{n} {t:.0f} s" for n, t in sorted(times.items(), key=lambda kv: -kv[1])[:6])
    summary_line(f"README: {len(blocks)} runnable blocks ran as written in {total:.0f} s ({slowest} ...)")
