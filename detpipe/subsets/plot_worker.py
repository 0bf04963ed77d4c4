"""Draw a run's plots in a second process that starts before the annotations are loaded.

    worker = PlotWorker()                      # spawns; the child imports matplotlib now
    ...                                        # load, draw p (this process)
    early = worker.submit_per_class(summary_of_p, tmp)   # the child draws p_per_class.png
    ...                                        # draw random and topn
    pending = worker.submit(summary, tmp, overlap)       # the other plots
    ...                                        # write the lists while the child draws
    paths = pending.result()
    worker.close()

On a COCO-train-sized file, importing matplotlib (~0.4 s) and drawing the plots (~0.7 s)
would otherwise follow the draws on one core: the spawned child imports while this
process loads, draws the per-class plot while this one draws the other strategies, and
the rest while it writes the lists. Jobs run in the order given (one child). ``spawn``,
not ``fork``: the parent may hold threads (progress bars, a kfp launcher). Only worth it
for big inputs: starting a Python process costs more than small runs' plots.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any


def _warm_up() -> None:
    import detpipe.subsets.plots  # noqa: F401  (matplotlib's import is the slow part)


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
        self._pool.submit(_warm_up)
        self._per_class = False

    def submit_per_class(self, summary: dict[str, Any], out: Path) -> Future:
        """Start ``p_per_class.png`` (:func:`~detpipe.subsets.plots.write_per_class`) from the ``p`` rows."""
        self._per_class = True
        return self._pool.submit(_write_per_class, summary, out)

    def submit(self, summary: dict[str, Any], out: Path, overlap: dict[str, Any] | None) -> Future:
        """Start :func:`~detpipe.subsets.plots.write_plots`, less a per-class plot already submitted.

        The future holds every plot's path.
        """
        return self._pool.submit(_write_plots, summary, out, overlap, not self._per_class)

    def close(self) -> None:
        """Wait for the child to finish (a pending job is cancelled) and stop it."""
        self._pool.shutdown(wait=True, cancel_futures=True)
