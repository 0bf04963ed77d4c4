"""The closing summary holds the lines tests asked for, when they ran in pytest-xdist workers too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_lines_from_xdist_workers_reach_the_closing_summary(tmp_path: Path) -> None:
    case = HERE / "summary_lines_case.py"
    cmd = [sys.executable, "-m", "pytest", "-n", "2", "--dist", "load", "-p", "no:cacheprovider",
           f"--basetemp={tmp_path / 'base'}", str(case)]  # fmt: skip
    run = subprocess.run(cmd, cwd=HERE.parent, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "2 passed" in run.stdout
    summary = run.stdout.split("fault and load summaries", 1)[1]  # the section, after the results
    assert "summary-lines-case: from one test" in summary
    assert "summary-lines-case: from another" in summary
