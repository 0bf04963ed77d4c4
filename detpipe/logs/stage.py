"""``detpipe logs analyze``: analyze one or more run directories and write the outputs.

Usage::

    from detpipe.logs.stage import LogsConfig, write_analysis

    analysis = write_analysis(LogsConfig(runs=(Path("runs/a"), Path("runs/b")), out=Path("runs/logs")))
    analysis["runs"]["a"]["stable_epoch"]

The output directory (replaced atomically; nothing written on bad input) holds
``analysis.json``, ``analysis.md`` and the PNGs of :mod:`detpipe.logs.plots`.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detpipe.errors import InvalidInput
from detpipe.io import atomic_dir, write_json, write_text
from detpipe.logs.analysis import AnalysisSettings, analyze_run
from detpipe.logs.compare import compare_runs
from detpipe.logs.plots import slug
from detpipe.logs.runlog import RunLog, load_run, run_names

log = logging.getLogger(__name__)

SCHEMA = "detpipe.logs/v1"


def parse_ranges(text: str) -> tuple[tuple[int, int], ...]:
    """``"1-10,11-30"`` -> ``((1, 10), (11, 30))``: 1-based, inclusive, increasing, disjoint.

    Raises:
        InvalidInput: A malformed, empty, reversed or overlapping range.
    """
    out: list[tuple[int, int]] = []
    for part in (p.strip() for p in text.split(",")):
        bounds = part.split("-")
        try:
            a, b = (int(bounds[0]), int(bounds[1])) if len(bounds) == 2 else (None, None)
        except ValueError:
            a = b = None
        if a is None or b is None:
            raise InvalidInput(f"--ranges: {part!r} is not FROM-TO (e.g. 1-10,11-30)")
        if a < 1 or b < a:
            raise InvalidInput(f"--ranges: {part!r} must have 1 <= FROM <= TO")
        if out and a <= out[-1][1]:
            raise InvalidInput(f"--ranges: {part!r} overlaps or precedes {out[-1][0]}-{out[-1][1]}")
        out.append((a, b))
    return tuple(out)


def parse_milestones(text: str) -> tuple[int, ...]:
    """``"1,10,50"`` -> ``(1, 10, 50)`` (positive, increasing).

    Raises:
        InvalidInput: A non-integer, non-positive or non-increasing value.
    """
    try:
        values = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise InvalidInput(f"--milestones: {text!r} is not a comma list of epochs (e.g. 10,50,100)") from None
    if any(v < 1 for v in values) or any(b <= a for a, b in itertools.pairwise(values)):
        raise InvalidInput(f"--milestones: {text!r} must be increasing epochs >= 1")
    return values


@dataclass(frozen=True)
class LogsConfig:
    """What to analyze and where to write it.

    Attributes:
        runs: Run directories (or their results.csv files).
        out: Output directory (replaced atomically).
        settings: The analysis knobs (ranges, milestones, stability window/threshold, spikes).
        params: Count parameters from the runs' weights (imports torch).
    """

    runs: tuple[Path, ...]
    out: Path
    settings: AnalysisSettings = field(default_factory=AnalysisSettings)
    params: bool = True

    def __post_init__(self) -> None:
        if not self.runs:
            raise InvalidInput("give at least one run directory")
        if len({Path(p).resolve() for p in self.runs}) != len(self.runs):
            raise InvalidInput("a run directory is given twice")
        s = self.settings
        if s.stable_window < 2:
            raise InvalidInput(f"--stable-window must be >= 2 epochs, got {s.stable_window}")
        if not (math.isfinite(s.stable_cov_pct) and s.stable_cov_pct > 0):
            raise InvalidInput(f"--stable-cov must be a percentage > 0, got {s.stable_cov_pct:g}")
        if not (math.isfinite(s.spike_factor) and s.spike_factor > 1):
            raise InvalidInput(f"--spike-factor must be > 1, got {s.spike_factor:g}")


def load_runs(config: LogsConfig) -> list[RunLog]:
    """Read every run (all validation happens here, before anything is written)."""
    names = run_names(list(config.runs))
    slugs = [slug(n) for n in names]
    if len(set(slugs)) != len(slugs):
        raise InvalidInput(
            f"run names {', '.join(names)} map to the same plot file names; rename a directory"
        )
    return [load_run(p, name, params=config.params) for p, name in zip(config.runs, names, strict=True)]


def analyze(runs: list[RunLog], settings: AnalysisSettings) -> dict[str, Any]:
    """analysis.json's content for ``runs``."""
    entries = {run.name: analyze_run(run, settings) for run in runs}
    return {
        "schema": SCHEMA,
        "settings": {
            "ranges": [list(r) for r in settings.ranges],
            "milestones": list(settings.milestones),
            "stable_window": settings.stable_window,
            "stable_cov_pct": settings.stable_cov_pct,
            "spike_factor": settings.spike_factor,
        },
        "runs": entries,
        "comparison": compare_runs(entries) if len(entries) > 1 else None,
    }


def write_analysis(config: LogsConfig) -> dict[str, Any]:
    """Analyze ``config.runs`` and write ``config.out`` atomically; returns analysis.json's content.

    Raises:
        InvalidInput: A run directory is unusable; nothing is written then.
    """
    runs = load_runs(config)
    analysis = analyze(runs, config.settings)
    from detpipe.logs.plots import write_plots  # matplotlib only once the input is good
    from detpipe.logs.render import render_markdown

    with atomic_dir(config.out) as tmp:
        plots = write_plots(runs, analysis, tmp)
        write_json(tmp / "analysis.json", analysis)
        write_text(tmp / "analysis.md", render_markdown(analysis, plots))
    log.info("training-log analysis written to %s", config.out)
    return analysis
