"""The CLI starts light (issue 19 §1): ``detpipe --help`` and every ``detpipe CMD --help`` import
only the standard library and detpipe's own small modules, never a stage's heavy dependencies.

Checked on what a real process imports (``python -X importtime``), not on a timing, so it holds
on a loaded machine; ``benchmarks/cli.py`` measures the time. A subcommand that needs a stage's
value for its flags takes it from a small import-free module the stage owns (e.g.
:mod:`detpipe.logs.defaults`) and imports the stage itself inside the function that runs it.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from detpipe.cli.main import SUBCOMMANDS, get_args_parser

# Third-party packages are refused altogether (only the standard library and detpipe may load);
# these are the ones a stage module would drag in, named in the failure for the reader.
HEAVY = (
    "numpy", "torch", "torchvision", "ultralytics", "minio", "urllib3", "yaml", "onnxruntime",
    "onnx", "tensorrt", "fastapi", "starlette", "uvicorn", "pydantic", "kfp", "kubernetes",
    "matplotlib", "cv2", "PIL", "scipy", "pandas", "boto3", "botocore", "Crypto", "cryptography",
)  # fmt: skip
# Standard-library packages that cost as much as a third-party one and have no place in `--help`.
HEAVY_STDLIB = ("ssl", "asyncio", "multiprocessing", "concurrent", "http", "email", "sqlite3", "ctypes")

_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$")


def _imported(args: list[str]) -> tuple[set[str], str]:
    """Every module a fresh ``python -X importtime ARGS`` imports, and its stdout."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {m.group(1) for line in done.stderr.splitlines() if (m := _LINE.match(line))}, done.stdout


def _offenders(modules: set[str]) -> list[str]:
    """The packages that have no place at ``--help`` time: third-party or a heavy stdlib one."""
    bad = set()
    for name in modules:
        top = name.split(".")[0]
        if top == "detpipe" or top.startswith("_") or top == "org":  # org.python: copy's Jython probe
            continue
        if top not in sys.stdlib_module_names or top in HEAVY_STDLIB:
            bad.add(top)
    return sorted(bad)


def _stages(modules: set[str]) -> list[str]:
    """The detpipe modules outside the CLI that were imported: where to look for the culprit."""
    return sorted(m for m in modules if m.startswith("detpipe.") and not m.startswith("detpipe.cli"))


@pytest.fixture(scope="module")
def floor() -> set[str]:
    """What a bare interpreter of this venv imports (site, the editable install's finder ...)."""
    return _imported(["-c", "import argparse"])[0]


def test_the_check_sees_heavy_imports(floor: set[str]) -> None:
    """The checker itself: a process that does import a stage is caught, naming what it loaded."""
    found = _imported(["-c", "import argparse, detpipe.logs.analysis"])[0] - floor
    assert "numpy" in _offenders(found)
    assert "numpy" in HEAVY


@pytest.mark.parametrize("command", ["", *SUBCOMMANDS])
def test_help_imports_nothing_heavy(command: str, floor: set[str]) -> None:
    """``detpipe [CMD] --help`` as a real process: exit 0, only stdlib and detpipe modules."""
    args = ["-m", "detpipe.cli.main", *([command] if command else []), "--help"]
    found, out = _imported(args)
    assert out.startswith(f"usage: detpipe {command}".rstrip()), out[:300]
    found -= floor
    assert _offenders(found) == [], f"detpipe {command} --help imports {_stages(found)}"


def test_every_nested_help_imports_nothing_heavy() -> None:
    """Every parser's help (``logs analyze``, ``edge rollout start`` ...) formatted in one process."""
    script = (
        "import argparse, sys\n"
        "from detpipe.cli.main import get_args_parser\n"
        "def walk(p):\n"
        "    yield p\n"
        "    for a in p._actions:\n"
        "        if isinstance(a, argparse._SubParsersAction):\n"
        "            for sub in a.choices.values():\n"
        "                yield from walk(sub)\n"
        "helps = [p.format_help() for p in walk(get_args_parser())]\n"
        "print(len(helps))\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    count, *modules = done.stdout.split()
    assert int(count) > len(SUBCOMMANDS)  # the nested parsers were reached
    assert _offenders(set(modules)) == [], _stages(set(modules))


def test_serve_flags_default_to_the_servers_nms() -> None:
    """``detpipe serve``'s --conf/--iou/--max-det come from detpipe.serving.defaults, and so does
    the server's SERVE_NMS; its IoU and max_det are still the runtime's (ultralytics') defaults."""
    from detpipe.serving import config

    ns = get_args_parser().parse_args(["serve", "--model", "m.onnx"])
    assert (ns.conf, ns.iou, ns.max_det) == (0.25, config.SERVE_NMS.iou, config.SERVE_NMS.max_det)
    assert config.PostprocessConfig(conf=0.25) == config.SERVE_NMS
