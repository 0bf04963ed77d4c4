"""Where a run continues from: local checkpoints and a run's mirror in the artifact store.

``--resume`` takes:

* nothing (``auto``): ``OUT/weights/last.pt``;
* a local path: a checkpoint file, or a run directory holding ``weights/last.pt``;
* a store URI prefix (``s3://bucket/ckpt/run1``, ``file:///...``): the run's *mirror*. The
  run directory is uploaded there as it trains (``results.csv`` then ``weights/last.pt``
  after every epoch, ``train_summary.json`` last), so a preempted pod that starts again with
  the same command downloads ``last.pt`` and continues; a prefix without one starts fresh,
  and a prefix with a ``train_summary.json`` is a finished run.

::

    mirror = RunMirror.open("s3://detpipe/ckpt/yolo12n-5p")
    if mirror.has_checkpoint():
        mirror.download(out, [LAST])
    ...
    mirror.upload(out, [RESULTS, LAST])
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detpipe.errors import InvalidInput, NotFound
from detpipe.train.models import is_store_uri

log = logging.getLogger(__name__)

LAST = "weights/last.pt"
BEST = "weights/best.pt"
RESULTS = "results.csv"
ARGS = "args.yaml"
SUMMARY = "train_summary.json"
OUTPUTS = (RESULTS, ARGS, BEST, LAST)  # uploaded at the end, before SUMMARY


@dataclass(frozen=True)
class RunMirror:
    """A run directory's copy in the artifact store (keys as in the run directory).

    Attributes:
        uri: the store prefix.
        store: the :class:`detpipe.store.Store` rooted at it.
    """

    uri: str
    store: Any

    @classmethod
    def open(cls, uri: str) -> RunMirror:
        """Open the mirror at ``uri`` (credentials and endpoint from the environment)."""
        from detpipe.store import open_store

        uri = uri.rstrip("/")
        for suffix in ("/" + LAST, "/last.pt"):
            uri = uri.removesuffix(suffix)  # s3://.../run1/weights/last.pt names the same run
        return cls(uri=uri, store=open_store(uri))

    def has_checkpoint(self) -> bool:
        """Whether a ``weights/last.pt`` is there to continue from."""
        return self.store.exists(LAST)

    def finished(self) -> bool:
        """Whether the run finished (its ``train_summary.json`` was uploaded)."""
        return self.store.exists(SUMMARY)

    def download(self, out: Path, keys: Iterable[str], missing_ok: bool = False) -> list[str]:
        """Copy ``keys`` into the run directory ``out`` (each file atomically); returns those copied."""
        copied = []
        for key in keys:
            try:
                self.store.get_file(key, Path(out) / key)
            except NotFound:
                if not missing_ok:
                    raise
                continue
            copied.append(key)
        if copied:
            log.info("downloaded %s from %s", ", ".join(copied), self.uri)
        return copied

    def upload(self, out: Path, keys: Iterable[str]) -> list[str]:
        """Copy the files ``keys`` of ``out`` that exist to the mirror, in order; returns those copied."""
        copied = []
        for key in keys:
            path = Path(out) / key
            if path.is_file():
                self.store.put_file(key, path)
                copied.append(key)
        if copied:
            log.info("uploaded %s to %s", ", ".join(copied), self.uri)
        return copied


@dataclass(frozen=True)
class ResumePlan:
    """How a run starts.

    Attributes:
        checkpoint: local checkpoint to continue from, or ``None`` to start fresh (after any
            download from the mirror has happened).
        mirror: the store mirror to download from / upload to, if any.
    """

    checkpoint: Path | None
    mirror: RunMirror | None


def local_checkpoint(resume: str, out: Path) -> Path:
    """The checkpoint a local ``--resume`` names (``auto``, a file or a run directory).

    Raises:
        InvalidInput: nothing to resume there.
    """
    if resume == "auto":
        path = Path(out) / LAST
        if not path.is_file():
            raise InvalidInput(f"--resume: {path} does not exist (nothing to resume in {out})")
        return path
    path = Path(resume).expanduser()
    if path.is_dir():
        for candidate in (path / LAST, path / "last.pt"):
            if candidate.is_file():
                return candidate
        raise InvalidInput(f"--resume {resume}: no weights/last.pt in that directory")
    if not path.is_file():
        raise InvalidInput(f"--resume {resume}: no such checkpoint")
    return path


def plan_resume(resume: str | None, out: Path) -> ResumePlan:
    """Decide where to continue from without downloading anything yet."""
    if resume is None:
        return ResumePlan(None, None)
    if is_store_uri(resume):
        mirror = RunMirror.open(resume)
        return ResumePlan(Path(out) / LAST if mirror.has_checkpoint() else None, mirror)
    return ResumePlan(local_checkpoint(resume, out), None)


def checkpoint_epoch(path: Path) -> int:
    """Epochs completed in a training checkpoint (its 0-based ``epoch`` + 1).

    Raises:
        InvalidInput: not a checkpoint, or a finished run's stripped weights (epoch -1).
    """
    from ultralytics.utils.patches import torch_load

    try:
        ckpt = torch_load(path, map_location="cpu")
    except Exception as e:  # any unpickling failure means the same thing to the user
        raise InvalidInput(f"--resume: {path} is not a readable checkpoint ({type(e).__name__})") from None
    epoch = ckpt.get("epoch", -1) if isinstance(ckpt, dict) else -1
    if epoch < 0 or ckpt.get("optimizer") is None:
        raise InvalidInput(f"--resume: {path} is the final checkpoint of a finished run; nothing to resume")
    total = int((ckpt.get("train_args") or {}).get("epochs", 0))
    if total and epoch + 1 >= total:
        raise InvalidInput(
            f"--resume: {path} has all {total} epochs done (the run stopped while finishing); "
            "its weights and results.csv are complete, nothing is left to train"
        )
    return int(epoch) + 1
