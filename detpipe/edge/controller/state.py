"""Where a rollout's state lives in the store, and how controllers take turns writing it.

One document per rollout, ``ota/rollouts/<class>/<version>.json`` (:data:`SCHEMA`)::

    {"schema": "detpipe.edge-rollout/1", "device_class": "cpu", "version": "2", "previous": "1",
     "steps": [5, 25, 100], "max_failure_pct": 5.0, "min_reports": 1, "bake_s": 1800,
     "status": "progressing", "step": 0, "pct": 5, "step_started_at": "...",
     "decisions": [{"n": 1, "at": "...", "action": "start", "step": 0, "pct": 5,
                    "reason": "...", "counts": {...}, "by": "host:pid"}],
     "last_check": {"at": "...", "action": "hold", "reason": "...", "counts": {...}}}

``decisions`` holds the transitions (start, advance, complete, abort, pause, resume), never a
hold. Every write is conditional (:meth:`detpipe.store.Store.put_bytes` with the ETag the
writer read, or create-only for the first): of two controllers that read the same state,
one writes its decision, the other gets :class:`~detpipe.errors.PreconditionFailed` and
changes nothing. That is what makes each step's decision happen once, whatever runs at once.

A :class:`Lease` (``<version>.lock``, create-only, with an expiry) keeps a second controller
from re-signing the TUF metadata while the first does; a lease left by a killed controller
is taken over once it has expired.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from detpipe.edge.layout import rollout_key
from detpipe.edge.targets import check_device_class, check_version
from detpipe.errors import NotFound, PreconditionFailed, StoreError
from detpipe.store import Store

log = logging.getLogger(__name__)

SCHEMA = "detpipe.edge-rollout/1"
STATUSES = ("progressing", "paused", "completed", "aborted")
ACTIVE = ("progressing", "paused")


def state_key(device_class: str, version: str) -> str:
    """``ota/rollouts/<class>/<version>.json``."""
    return rollout_key(check_device_class(device_class), check_version(version))


def lock_key(device_class: str, version: str) -> str:
    """``ota/rollouts/<class>/<version>.lock``: the controllers' lease."""
    return rollout_key(check_device_class(device_class), check_version(version), ".lock")


def default_owner() -> str:
    """``host:pid``: who made a decision, in the state's log."""
    return f"{socket.gethostname()}:{os.getpid()}"


def now_iso(now: datetime) -> str:
    return now.astimezone(UTC).isoformat(timespec="seconds")


def parse_time(text: Any) -> datetime | None:
    """An ISO time from a state document (None when missing or malformed)."""
    try:
        when = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Versioned:
    """A state document and the ETag it was read with (None: there is none yet)."""

    doc: dict[str, Any] | None
    etag: str | None


def read_versioned(store: Store, device_class: str, version: str) -> Versioned:
    """The rollout's state and its ETag, for a conditional write of the next decision.

    Raises:
        StoreError: the document is not a rollout state (the store was written by hand?).
    """
    key = state_key(device_class, version)
    try:
        data, etag = store.get_tagged(key)
    except NotFound:
        return Versioned(None, None)
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or doc.get("status") not in STATUSES:
            raise ValueError(f"schema {doc.get('schema') if isinstance(doc, dict) else None!r}")
    except ValueError as e:
        raise StoreError(f"{store.uri}/{key}: not a rollout state ({e})") from None
    return Versioned(doc, etag)


def read_state(store: Store, device_class: str, version: str) -> dict[str, Any] | None:
    """The rollout's state document (None: no rollout of that version)."""
    return read_versioned(store, device_class, version).doc


def write_state(store: Store, doc: dict[str, Any], etag: str | None) -> str:
    """Write ``doc`` only if the state is still the one read with ``etag``; returns the new ETag.

    Raises:
        PreconditionFailed: another controller wrote a decision meanwhile.
    """
    key = state_key(doc["device_class"], doc["version"])
    data = json.dumps(doc, indent=2).encode()
    info = store.put_bytes(
        key, data, content_type="application/json", if_match=etag, if_none_match=etag is None
    )
    return info.etag or ""


class Lease:
    """The controllers' lock on one rollout: ``<version>.lock`` with an owner and an expiry.

    ``acquire`` creates it (create-only); a lock that has expired (its holder was killed) is
    replaced with a conditional write on its ETag, so two controllers cannot both take it over.
    """

    def __init__(self, store: Store, device_class: str, version: str, owner: str, ttl: timedelta) -> None:
        self.store, self.key, self.owner, self.ttl = store, lock_key(device_class, version), owner, ttl
        self.holder: str | None = None  # who holds it when acquire() failed
        self.expires: datetime | None = None

    def acquire(self, now: datetime) -> bool:
        """Take the lease; False when another controller holds a lease that has not expired."""
        body = json.dumps({"owner": self.owner, "expires_at": now_iso(now + self.ttl)}).encode()
        try:
            self.store.put_bytes(self.key, body, content_type="application/json", if_none_match=True)
            return True
        except PreconditionFailed:
            pass
        try:
            data, etag = self.store.get_tagged(self.key)
        except NotFound:  # released between the two calls: one more try
            return self._create(body)
        try:
            held = json.loads(data)
            holder, expires = str(held["owner"]), parse_time(held["expires_at"])
        except (ValueError, KeyError, TypeError):
            holder, expires = "unknown", None
        if expires is not None and expires > now:
            self.holder, self.expires = holder, expires
            return False
        log.warning("lease %s of %s expired (%s): taking it over", self.key, holder, expires)
        try:
            self.store.put_bytes(self.key, body, content_type="application/json", if_match=etag)
        except (PreconditionFailed, NotFound):
            self.holder, self.expires = "another controller (took the expired lease first)", None
            return False
        return True

    def _create(self, body: bytes) -> bool:
        try:
            self.store.put_bytes(self.key, body, content_type="application/json", if_none_match=True)
        except PreconditionFailed:
            self.holder = "another controller"
            return False
        return True

    def release(self) -> None:
        """Remove the lease if it is still this controller's."""
        try:
            data, _ = self.store.get_tagged(self.key)
            if json.loads(data).get("owner") == self.owner:
                self.store.delete(self.key)
        except (NotFound, ValueError, AttributeError):
            pass
