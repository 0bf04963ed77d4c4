"""Staged rollout: which published target a device should run. Pure functions.

A device takes part in a target's rollout when ``bucket(device_id, version) <
rollout_pct`` or when one of its groups is listed in the target's ``groups``. The bucket
is ``sha256("<device-id>:<version>")`` read as a number in [0, 100) (4 bytes of the
digest, so buckets are uniform to within 1e-7): stable across restarts, independent
between versions, and raising the percentage only ever adds devices.

Choice (:func:`choose`): the highest admitted version of the device's class; a version
below the one installed is taken only when the target is a signed rollback
(``publish --rollback-to``); the installed one is kept otherwise. A version refused on
this device (a failed health check, ...) is skipped, and the decision says so
(:attr:`Decision.refused`) instead of calling the device "not in any rollout".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from detpipe.edge.targets import Release
from detpipe.store import version_key


def bucket(device_id: str, version: str) -> float:
    """The device's position in [0, 100) for this version's rollout."""
    digest = hashlib.sha256(f"{device_id}:{version}".encode()).digest()
    return int.from_bytes(digest[:4], "big") * 100 / 2**32


def admitted(release: Release, device_id: str, groups: Iterable[str] = ()) -> bool:
    """Whether the device takes part in ``release``'s rollout."""
    if set(groups) & set(release.groups):
        return True
    return bucket(device_id, release.version) < release.rollout_pct


@dataclass(frozen=True)
class Decision:
    """What the agent does this cycle: ``install`` ``release``, or ``keep`` (``reason`` says why)."""

    action: str  # "install" | "keep"
    release: Release | None
    reason: str
    refused: str | None = None  # the newest admitted version was refused here: which, and why


def choose(
    releases: Iterable[Release],
    device_class: str,
    device_id: str,
    groups: Iterable[str] = (),
    installed: str | None = None,
    installed_sha256: str | None = None,
    refused: Mapping[str, str] | Iterable[str] = (),
) -> Decision:
    """Pick the target to run.

    Args:
        releases: every verified target of the repository.
        device_class: this device's class.
        device_id: this device's id (rollout bucket).
        groups: this device's groups.
        installed: the installed version (None: nothing installed yet).
        installed_sha256: its hash (an identical target means nothing to do).
        refused: sha256s that failed here before (health check, compatibility): not retried;
            a mapping gives the reason of each.
    """
    groups = tuple(groups)
    reasons = dict(refused) if isinstance(refused, Mapping) else dict.fromkeys(refused, "")
    mine = [r for r in releases if r.device_class == device_class]
    if not mine:
        return Decision("keep", None, f"no target for device class {device_class}")
    taking_part = sorted((r for r in mine if admitted(r, device_id, groups)), key=lambda r: r.sort_key)
    if not taking_part:
        return Decision("keep", None, "this device is not in any rollout (percentage/groups) yet")
    candidates = [r for r in taking_part if r.sha256 not in reasons]
    note = _refused_note(taking_part, candidates, reasons)
    if not candidates:
        return Decision("keep", None, f"nothing to install: {note}", note)
    best = candidates[-1]
    if best.sha256 == installed_sha256:
        return Decision("keep", best, f"up to date ({best.version})" + (f"; {note}" if note else ""), note)
    if installed is not None and version_key(best.version) <= version_key(installed) and not best.rollback:
        return Decision(
            "keep",
            best,
            f"newest admitted target {best.version} is not newer than {installed} (no signed rollback)"
            + (f"; {note}" if note else ""),
            note,
        )
    return Decision("install", best, "rollback" if best.rollback else "update", note)


def _refused_note(
    taking_part: list[Release], candidates: list[Release], reasons: dict[str, str]
) -> str | None:
    """``version 3 was refused on this device: <why>`` when the newest admitted one was refused."""
    newest = taking_part[-1]
    if newest.sha256 not in reasons or (candidates and candidates[-1].sort_key >= newest.sort_key):
        return None
    why = reasons[newest.sha256]
    return f"version {newest.version} was refused on this device" + (f": {why}" if why else "")
