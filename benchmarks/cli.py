"""Benchmark the CLI's start: ``detpipe --help`` and every ``detpipe CMD --help`` vs a bare Python.

Each measurement is a fresh process, as users start it: the ``detpipe`` console script beside
this Python (``python -m detpipe.cli.main`` where there is none) with ``--help``, which builds
the whole parser (every subcommand registers its flags) and exits. The peers start the same
interpreter with the same site-packages (the editable install's finder included):

- ``python -c pass``: the floor, an interpreter that imports nothing;
- ``python -c "import argparse"``: the floor of any argparse CLI.

Rounds are interleaved (round 1 runs every target once, then round 2 ...), so the machine's
load hits all targets alike; the figures are medians over the rounds. Wall time is measured
around the process; CPU time is the child's user + sys from ``wait4`` (less sensitive to a
loaded machine than wall time, which waits for a core). The load average is recorded at the
start and the end. Bytecode caches are on in every target (``PYTHONDONTWRITEBYTECODE`` is
dropped from their environment): the untimed warm-up round writes them, as an install has them.

    .venv/bin/python benchmarks/cli.py                      # table, ratios; exit 1 over budget
    .venv/bin/python benchmarks/cli.py --rounds 9 --json runs/bench/cli.json
    # committed code only, and an older tree in the same rounds: source trees from git archive
    # (serving/ is installed as detpipe.serving, so it goes under detpipe/)
    git archive HEAD detpipe serving | tar -x -C /tmp/head && mv /tmp/head/serving /tmp/head/detpipe/
    git archive REV detpipe serving | tar -x -C /tmp/base && mv /tmp/base/serving /tmp/base/detpipe/
    .venv/bin/python benchmarks/cli.py --src /tmp/head --baseline-src /tmp/base

Budget (issue 19 §1): every median wall time <= 0.3 s; exit status 1 when one is over.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from detpipe.cli.main import SUBCOMMANDS

BUDGET_S = 0.3
PEERS = {"python -c pass": ["-c", "pass"], 'python -c "import argparse"': ["-c", "import argparse"]}


def detpipe_command() -> list[str]:
    """How users start detpipe here: the console script beside this Python, else ``-m``."""
    script = Path(sys.executable).parent / "detpipe"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "detpipe.cli.main"]


def _env(src: Path | None) -> dict[str, str]:
    """A target's environment: bytecode caches on, detpipe from ``src`` (None: the installed one)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return env if src is None else {**env, "PYTHONPATH": str(src.resolve())}


def targets(
    src: Path | None = None, baseline_src: Path | None = None
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Name -> (argv, env): the peers, ``detpipe --help`` and each ``detpipe CMD --help``.

    ``src``: detpipe imported from that source tree; ``baseline_src``: the detpipe targets
    again, with detpipe imported from that tree.
    """
    out: dict[str, tuple[list[str], dict[str, str]]] = {
        name: ([sys.executable, *args], _env(None)) for name, args in PEERS.items()
    }
    base = detpipe_command()
    commands = {"detpipe --help": [*base, "--help"]}
    commands.update({f"detpipe {c} --help": [*base, c, "--help"] for c in SUBCOMMANDS})
    out.update({name: (argv, _env(src)) for name, argv in commands.items()})
    if baseline_src is not None:
        env = _env(baseline_src)
        out.update({f"{name} [baseline]": (argv, env) for name, argv in commands.items()})
    return out


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s: user + sys) of one process; it must exit 0."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}\n{err.decode(errors='replace')}")
    return wall, usage.ru_utime + usage.ru_stime


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure(rounds: int, src: Path | None, baseline_src: Path | None, warmup: int = 1) -> dict:
    """Interleaved rounds over every target; medians, ratios to the peers, load and machine."""
    todo = targets(src, baseline_src)
    for _ in range(warmup):  # bytecode caches and the page cache, for every target alike
        for argv, env in todo.values():
            run_once(argv, env)
    load_start = os.getloadavg()
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in todo}
    for i in range(rounds):
        for name, (argv, env) in todo.items():
            runs[name].append(run_once(argv, env))
        print(f"round {i + 1}/{rounds} done", file=sys.stderr)
    load_end = os.getloadavg()
    med = {
        name: {
            "wall_s": statistics.median(w for w, _ in r),
            "cpu_s": statistics.median(c for _, c in r),
        }
        for name, r in runs.items()
    }
    floor, argparse_floor = (med[p] for p in PEERS)
    rows = {
        name: {
            **{k: round(v, 4) for k, v in m.items()},
            "wall_ratio_pass": round(m["wall_s"] / floor["wall_s"], 2),
            "wall_ratio_argparse": round(m["wall_s"] / argparse_floor["wall_s"], 2),
            "cpu_ratio_pass": round(m["cpu_s"] / floor["cpu_s"], 2),
            "over_budget": name.startswith("detpipe") and m["wall_s"] > BUDGET_S,
        }
        for name, m in med.items()
    }
    return {
        "rounds": rounds,
        "command": " ".join(detpipe_command()),
        "src": None if src is None else str(src),
        "baseline_src": None if baseline_src is None else str(baseline_src),
        "budget_s": BUDGET_S,
        "targets": rows,
        "runs": {name: [[round(w, 4), round(c, 4)] for w, c in r] for name, r in runs.items()},
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in load_end],
        "machine": f"{_cpu_model()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def print_table(result: dict) -> None:
    print(f"{'target':44s} {'wall s':>7s} {'CPU s':>7s} {'/pass':>6s} {'/argparse':>9s} {'CPU/pass':>8s}")
    for name, r in result["targets"].items():
        flag = "  OVER BUDGET" if r["over_budget"] else ""
        print(
            f"{name:44s} {r['wall_s']:7.3f} {r['cpu_s']:7.3f} {r['wall_ratio_pass']:6.2f} "
            f"{r['wall_ratio_argparse']:9.2f} {r['cpu_ratio_pass']:8.2f}{flag}"
        )
    ours = {n: r for n, r in result["targets"].items() if n.startswith("detpipe") and "[baseline]" not in n}
    worst = max(ours, key=lambda n: ours[n]["wall_s"])
    print(
        f"\nslowest: {worst} {ours[worst]['wall_s']:.3f} s (budget {result['budget_s']} s), "
        f"ratio to python -c pass {ours[worst]['wall_ratio_pass']:.2f}, "
        f"to import argparse {ours[worst]['wall_ratio_argparse']:.2f}"
    )
    src = f", detpipe from {result['src']}" if result["src"] else ""
    print(f"median of rounds, {result['rounds']} interleaved rounds; {result['command']}{src}")
    print(f"load average start {result['loadavg_start']}, end {result['loadavg_end']}")
    print(f"machine: {result['machine']}, Python {result['python']}, {result['date']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default: 1)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="also time the detpipe targets with detpipe imported from this source tree (e.g. "
        "`git archive HEAD~1 detpipe serving | tar -x -C DIR && mv DIR/serving DIR/detpipe/`), "
        "interleaved with the others",
    )
    ap.add_argument(
        "--src",
        type=Path,
        default=None,
        help="import detpipe from this source tree in the detpipe targets (default: the installed one)",
    )
    args = ap.parse_args(argv)
    result = measure(args.rounds, args.src, args.baseline_src, args.warmup)
    print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    over = [n for n, r in result["targets"].items() if r["over_budget"] and "[baseline]" not in n]
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
