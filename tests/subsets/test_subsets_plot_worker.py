"""Plots drawn by the worker process (big files) are the in-process ones, and a failure leaves nothing."""

from __future__ import annotations

import logging
import os
import signal
import sys

import pytest
from subsets_cases import long_tailed_coco, write_coco

from detpipe.subsets import SubsetsConfig, generate
from detpipe.subsets.plot_worker import PlotWorker

generate_module = sys.modules["detpipe.subsets.generate"]  # the module; the package exports the function


def _config(annotations, out, plot_worker=True):
    return SubsetsConfig(
        annotations=annotations,
        out=out,
        fractions=(1.25, 10, 100),
        seed=0,
        draw_seeds=(1,),
        progress=False,
        plot_worker=plot_worker,
    )


@pytest.fixture(scope="module")
def annotations(tmp_path_factory):
    coco = long_tailed_coco(images=300, classes=6, seed=2, empty=3, crowd_only=0)
    return write_coco(tmp_path_factory.mktemp("ann") / "annotations" / "instances_train2017.json", coco)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_worker_writes_the_same_files_as_the_in_process_path(annotations, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(generate_module, "_BACKGROUND_PLOTS", 0)  # every file counts as big
    caplog.set_level(logging.INFO, logger="detpipe.subsets")
    here = generate(_config(annotations, tmp_path / "here", plot_worker=False))
    assert "in a worker process" not in caplog.text
    worker = generate(_config(annotations, tmp_path / "worker"))
    assert "wrote 4 plots (in a worker process)" in caplog.text  # the worker did draw them
    assert (
        worker["plots"]
        == here["plots"]
        == [
            "images_objects.png",
            "p_per_class.png",
            "deviation.png",
            "overlap.png",
        ]
    )
    assert "plots" in worker["timings"]
    a, b = _files(tmp_path / "here"), _files(tmp_path / "worker")
    assert sorted(a) == sorted(b) and all(a[k] == b[k] for k in a)  # PNGs byte for byte too


def test_a_failed_write_waits_for_the_worker_and_leaves_nothing(annotations, tmp_path, monkeypatch):
    monkeypatch.setattr(generate_module, "_BACKGROUND_PLOTS", 0)

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(generate_module, "write_lists", broken)
    with pytest.raises(OSError, match="No space left"):
        generate(_config(annotations, tmp_path / "out"))
    assert list(tmp_path.iterdir()) == []  # neither the output nor its temp dir (the worker had finished)


class _DyingWorker(PlotWorker):
    """A worker whose child is killed (as the OOM killer would) once it is up."""

    def __init__(self) -> None:
        super().__init__()
        os.kill(self.pid(), signal.SIGKILL)


def test_a_dead_worker_costs_time_not_the_plots(annotations, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(generate_module, "_BACKGROUND_PLOTS", 0)
    monkeypatch.setattr(generate_module, "PlotWorker", _DyingWorker)
    caplog.set_level(logging.INFO, logger="detpipe.subsets")
    here = generate(_config(annotations, tmp_path / "here", plot_worker=False))
    dead = generate(_config(annotations, tmp_path / "dead"))
    assert "the plot worker process died: drawing the plots in this process" in caplog.text
    assert dead["plots"] == here["plots"]
    a, b = _files(tmp_path / "here"), _files(tmp_path / "dead")
    assert sorted(a) == sorted(b) and all(a[k] == b[k] for k in a)
