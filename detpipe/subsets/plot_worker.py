"""Draw a run's plots in a second process that starts before the annotations are loaded.

    worker = PlotWorker()                      # spawns; the child imports matplotlib now
    ...                                        # load, draw (this process)
    pending = worker.submit(summary, tmp, overlap)
    ...                                        # write the lists while the child draws
    paths = pending.result()
    worker.close()

On a COCO-train-sized file, importing matplotlib (~0.4 s) and drawing the plots (~0.7 s)
would otherwise follow the draws on one core: the spawned child imports while this
process loads, and draws while it writes the lists. ``spawn``, not ``fork``: the parent
may hold threads (progress bars, a kfp launcher). Only worth it for big inputs: starting
a Python process costs more than small runs' plots.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any


def _warm_up() -> None:
    import detpipe.subsets.plots  # noqa: F401  (matplotlib's import is the slow part)


def _write_plots(summary: dict[str, Any], out: Path, overlap: dict[str, Any] | None) -> list[Path]:
    from detpipe.subsets.plots import write_plots

    return write_plots(summary, out, overlap=overlap)


class PlotWorker:
    """One child process that imports the plotting code at once and draws on request."""

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        self._pool.submit(_warm_up)

    def submit(self, summary: dict[str, Any], out: Path, overlap: dict[str, Any] | None) -> Future:
        """Start :func:`detpipe.subsets.plots.write_plots` in the child; the future holds its paths."""
        return self._pool.submit(_write_plots, summary, out, overlap)

    def close(self) -> None:
        """Wait for the child to finish (a pending job is cancelled) and stop it."""
        self._pool.shutdown(wait=True, cancel_futures=True)
