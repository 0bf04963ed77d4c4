"""Draw a run's plots in a second process that starts before the annotations are loaded.

    worker = PlotWorker()                        # spawns; the child imports matplotlib now
    ...                                          # load, draw p (this process)
    worker.submit_per_class(summary_of_p, tmp)   # the child draws p_per_class.png
    ...                                          # draw random and topn
    worker.submit(summary, tmp, overlap)         # the other plots
    ...                                          # write the lists while the child draws
    paths = worker.result(summary, tmp, overlap)
    worker.close()

On a COCO-train-sized file, importing matplotlib (~0.4 s) and drawing the plots (~0.7 s)
would otherwise follow the draws on one core: the spawned child imports while this
process loads, draws the per-class plot while this one draws the other strategies, and
the rest while it writes the lists. Jobs run in the order given (one child). ``spawn``,
not ``fork``: the parent may hold threads (progress bars, a kfp launcher). Only worth it
for big inputs: starting a Python process costs more than small runs' plots.

A child that dies (killed for memory, or a ``__main__`` that cannot be imported again)
costs time, not the run: :meth:`PlotWorker.result` then draws the plots in this process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _warm_up() -> int:
    import detpipe.subsets.plots  # noqa: F401  (matplotlib's import is the slow part)

    return os.getpid()


def _write_per_class(summary: dict[str, Any], out: Path) -> Path | None:
    from detpipe.subsets.plots import write_per_class

    return write_per_class(summary, out)


def _write_plots(
    summary: dict[str, Any], out: Path, overlap: dict[str, Any] | None, per_class: bool
) -> list[Path]:
    from detpipe.subsets.plots import write_plots

    return write_plots(summary, out, overlap=overlap, per_class=per_class)


class PlotWorker:
    """One child process that imports the plotting code at once and draws on request."""

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        self._jobs: list[Future] = [self._pool.submit(_warm_up)]
        self._per_class = False
        self._broken = False

    def pid(self) -> int:
        """The child's process id, once it has imported the plotting code (blocks until then)."""
        return self._jobs[0].result()

    def submit_per_class(self, summary: dict[str, Any], out: Path) -> None:
        """Start ``p_per_class.png`` (:func:`~detpipe.subsets.plots.write_per_class`) from the ``p`` rows."""
        self._per_class = True
        self._submit(_write_per_class, summary, out)

    def submit(self, summary: dict[str, Any], out: Path, overlap: dict[str, Any] | None) -> None:
        """Start :func:`~detpipe.subsets.plots.write_plots`, less a per-class plot already submitted."""
        self._submit(_write_plots, summary, out, overlap, not self._per_class)

    def result(self, summary: dict[str, Any], out: Path, overlap: dict[str, Any] | None) -> list[Path]:
        """Every plot's path once drawn; drawn here (all of them) if the child died."""
        results = []
        for job in self._jobs[1:]:  # the first is the warm-up
            try:
                results.append(job.result())
            except BrokenProcessPool:
                self._broken = True
        if not self._broken:
            log.info("wrote %d plots (in a worker process)", len(results[-1]))
            return results[-1]
        log.warning("the plot worker process died: drawing the plots in this process")
        from detpipe.subsets.plots import write_plots

        return write_plots(summary, out, overlap=overlap)

    def wait(self) -> None:
        """Block until no job is running (before the directory it writes into may be removed)."""
        wait(self._jobs)

    def close(self) -> None:
        """Wait for the child to finish (a pending job is cancelled) and stop it."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self, fn: Any, *args: Any) -> None:
        if self._broken:
            return
        try:
            self._jobs.append(self._pool.submit(fn, *args))
        except BrokenProcessPool:  # result() draws in-process
            self._broken = True
