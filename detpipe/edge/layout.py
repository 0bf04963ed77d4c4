"""The OTA store layout: every key below a fleet's store root, in one place.

::

    ota/metadata/[N.]{root,targets,snapshot,timestamp}.json    TUF metadata (publisher writes)
    ota/targets/<class>/<version>/[engines/<variant>/]<sha256>.<file>   artifacts (TUF consistent names)
    ota/devices/<class>/<device-id>.json                       device registrations (enroll)
    ota/fleet/<class>/seen.json                                last report seen per device (fleet status)
    ota/rollouts/<class>/<version>.json, .lock                 rollout state and the controllers' lease
    devices/<device-id>/status.json                            signed device reports (agents write)

Publishers write ``ota/``; devices read ``ota/`` and write only ``devices/<own id>/``
(:mod:`detpipe.edge.policy`). Names are checked by their owners' validators before they
become keys.
"""

from __future__ import annotations

OTA = "ota"
METADATA = f"{OTA}/metadata"
TARGETS = f"{OTA}/targets"
REGISTRATIONS = f"{OTA}/devices"
FLEET = f"{OTA}/fleet"
ROLLOUTS = f"{OTA}/rollouts"
DEVICES = "devices"
REPORT_FILE = "status.json"


def metadata_key(role: str, version: int | None = None) -> str:
    """``ota/metadata/[N.]<role>.json``."""
    return f"{METADATA}/{version}.{role}.json" if version is not None else f"{METADATA}/{role}.json"


def target_key(path: str, sha256: str) -> str:
    """The object key of a target: ``ota/targets/<dir>/<sha256>.<file>``.

    The hash-prefixed name is TUF's consistent-snapshot target name (spec 5.7.3), so a new
    artifact never overwrites one a device may be downloading.
    """
    directory, _, name = path.rpartition("/")
    return f"{TARGETS}/{directory}/{sha256}.{name}"


def registration_key(device_class: str, device_id: str) -> str:
    """``ota/devices/<class>/<id>.json``."""
    return f"{REGISTRATIONS}/{device_class}/{device_id}.json"


def seen_key(device_class: str) -> str:
    """``ota/fleet/<class>/seen.json``."""
    return f"{FLEET}/{device_class}/seen.json"


def rollout_key(device_class: str, version: str, suffix: str = ".json") -> str:
    """``ota/rollouts/<class>/<version>.json`` (``.lock``: the lease)."""
    return f"{ROLLOUTS}/{device_class}/{version}{suffix}"


def report_key(device_id: str) -> str:
    """``devices/<id>/status.json``."""
    return f"{DEVICES}/{device_id}/{REPORT_FILE}"
