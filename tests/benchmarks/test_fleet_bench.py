"""``benchmarks/fleet.py --quick`` as a process: a smoke run of the fleet benchmark (moto server,
counting proxy, real agents, the rollout controller), checked on what does not depend on timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "fleet.py"


def bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(BENCH), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_quick_run_prints_and_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "fleet.json"
    done = bench("--quick", "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "health check: fast stand-in (benchmark only)" in done.stdout
    res = json.loads(out.read_text())
    devices = res["devices"]
    tr = res["traffic"]
    for kind, peer in (("first", 5), ("idle", 2), ("update", 5)):  # python-tuf's own requests ...
        assert tr[f"peer-{kind}"]["requests"] == peer, kind
        assert tr[f"mirror-{kind}"]["requests"] == peer, kind  # ... the agent on a mirror makes the same
        assert tr[f"ours-{kind}"]["requests"] == peer + 1, kind  # ... plus its signed report on s3://
        assert tr[f"ours-{kind}"]["by_area"]["PUT report"]["requests"] == 1, kind
    assert tr["ours-update"]["by_area"]["GET artifact"]["requests"] == 1
    assert "GET artifact" not in tr["ours-idle"]["by_area"]

    good = res["rollout_good"]
    assert [c["action"] for c in good["cycles"]] == ["start", "advance", "advance", "advance", "complete"]
    assert good["status"] == "completed" and good["running_at_end"] == devices
    assert good["to_99pct"]["rounds"] == 4  # one round per step: 1, 10, 50, 100 %

    bad = res["rollout_nan"]
    assert bad["status"] == "aborted" and bad["goal_met"], bad
    assert bad["running_at_end"] == 0 and bad["activated_split"]["after_abort"] == 0
    assert 1 <= bad["activated"] <= bad["first_failure"]["selected_at_pct"]
    assert bad["health_checks_run"] == bad["activated"]

    (cost,) = res["controller_cost"]
    start, first, unchanged, fifth_new = cost["cycles"]
    assert start["action"] == "start"
    assert [c["action"] for c in (first, unchanged, fifth_new)] == ["advance"] * 3
    assert [c["pct"] for c in (first, unchanged, fifth_new)] == [10, 50, 100]
    assert first["counts"]["reports"] >= 1 and first["requests"] >= cost["reports"]  # every report read once
    assert unchanged["requests"] < fifth_new["requests"] < first["requests"]  # only what changed is read


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--reports", "many"], "--reports 'many'"), (["--devices", "3"], "--devices at least 10")],
)
def test_bad_input_exits_2_in_one_line(args: list[str], message: str) -> None:
    done = bench(*args, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("fleet.py: error: ") and message in line, line
