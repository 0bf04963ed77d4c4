"""A/B slots on the device and the atomic ``current`` symlink.

::

    DIR/slots/a/{model.onnx, manifest.json}     one complete model per slot
    DIR/slots/b/...
    DIR/current -> slots/a                       what the server loads (DIR/current/model.onnx)
    DIR/state.json                               {"committed": "a", "refused": {sha256: reason}}

A slot is built in ``slots/.b.tmp`` (files fsynced) and renamed into place; ``current`` is
switched by renaming a new symlink over it (``rename(2)`` is atomic), then the directory is
fsynced. ``state.json`` names the slot the agent *committed* to after its health check; on
start-up :meth:`Slots.recover` drops unfinished slot builds and, when ``current`` points at
an uncommitted slot (a crash between switch and commit), switches back: a reader of
``current`` only ever sees a complete, committed model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from detpipe.io import fsync_path, read_json, write_json

log = logging.getLogger(__name__)

SLOTS = ("a", "b")
MANIFEST = "manifest.json"


def installed_version(model_file: Path, sha256: str) -> str | None:
    """The OTA version of ``model_file`` when it is the model of a slot (what ``detpipe serve`` reports).

    ``model_file`` (e.g. ``DIR/current/model.onnx``) counts as installed when the
    ``manifest.json`` beside it names it as its ``file`` with this ``sha256``, or as the
    ``engine`` built on the device from that file. None otherwise (not a slot, or another file).
    """
    try:
        doc = json.loads((model_file.parent / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("version"), str):
        return None
    is_file = model_file.name == doc.get("file") and sha256 == doc.get("sha256")
    return doc["version"] if is_file or model_file.name == doc.get("engine") else None


class Slots:
    """The slot layout under ``root`` (the agent's ``--dir``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.slots = root / "slots"
        self.current = root / "current"
        self.state_path = root / "state.json"

    # -- reading -------------------------------------------------------------------------------------

    def active(self) -> str | None:
        """The slot ``current`` points at (None when there is none yet)."""
        try:
            target = self.current.readlink()
        except (FileNotFoundError, OSError):
            return None
        name = Path(target).name
        return name if name in SLOTS else None

    def inactive(self) -> str:
        """The slot an update goes to."""
        return "b" if self.active() == "a" else "a"

    def manifest(self, slot: str | None) -> dict[str, Any] | None:
        """The slot's ``manifest.json`` (None when absent or unreadable)."""
        if slot is None:
            return None
        try:
            doc = json.loads((self.slots / slot / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def state(self) -> dict[str, Any]:
        """``state.json`` (empty when missing or broken)."""
        try:
            doc = read_json(self.state_path)
        except Exception:
            return {}
        return doc if isinstance(doc, dict) else {}

    def save_state(self, state: dict[str, Any]) -> None:
        write_json(self.state_path, state)

    # -- writing -------------------------------------------------------------------------------------

    def install(self, slot: str, files: dict[str, Path], manifest: dict[str, Any]) -> Path:
        """Fill ``slot`` with ``files`` (moved, same filesystem) and ``manifest.json``, atomically."""
        self.slots.mkdir(parents=True, exist_ok=True)
        tmp = self.slots / f".{slot}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name, src in files.items():
            os.replace(src, tmp / name)
            fsync_path(tmp / name)
        write_json(tmp / MANIFEST, manifest)
        fsync_path(tmp)
        final = self.slots / slot
        if final.exists():
            old = self.slots / f".{slot}.old.tmp"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_path(self.slots)
        return final

    def switch(self, slot: str) -> None:
        """Point ``current`` at ``slot`` atomically."""
        tmp = self.root / ".current.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(f"slots/{slot}")
        os.replace(tmp, self.current)
        fsync_path(self.root)
        log.info("current -> slots/%s", slot)

    def recover(self) -> list[str]:
        """Finish or discard what a killed agent left; returns what was done (for the log)."""
        done = []
        self.root.mkdir(parents=True, exist_ok=True)
        leftovers = [*self.slots.glob(".*.tmp"), self.root / ".current.tmp"]
        for leftover in [p for p in leftovers if p.is_symlink() or p.exists()]:
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
            done.append(f"removed unfinished {leftover.name}")
        committed = self.state().get("committed")
        active = self.active()
        if active != committed:
            if committed in SLOTS and self.manifest(committed) is not None:
                self.switch(committed)
                done.append(f"current -> slots/{committed} (slot {active} was never committed)")
            elif active is not None:
                self.current.unlink()
                done.append(f"removed current -> slots/{active} (never committed, no committed slot)")
        return done
