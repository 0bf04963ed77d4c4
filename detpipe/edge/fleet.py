"""``detpipe edge fleet``: one device class's state, from its signed reports.

Reads every ``devices/<id>/status.json`` through :class:`~detpipe.edge.reports.ReportReader`
(only enrolled devices' reports that verify and are newer than the last seen count; a
device whose current report is ignored keeps its last valid one) and summarizes::

    root = trusted_root(store, anchor=None)        # or load_root(Path("root.json"))
    doc = fleet_status(store, "cpu", root, version="2", stale=timedelta(hours=1))
    print(format_table(doc))

``doc`` (also ``--json FILE``): ``devices`` (enrolled, reporting, stale), ``by_version``,
``by_outcome``, ``target`` (with a version: running / failed / incompatible / pending on it,
by :func:`on_version`), ``failing``
(device, outcome, version tried, error), ``stale`` (enrolled devices without a valid report
for ``stale``, by the report's signed ``reported_at``), ``ignored`` (counts by reason and each
report), ``inventory`` (devices per TensorRT, JetPack, L4T, CUDA, compute capability) and
``reports`` (one row per counted device). Each run records what it saw in
``ota/fleet/<class>/seen.json`` (``record=False`` reads only), which is how a replayed report
is told from a new one on the next run.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Targets

from detpipe.edge.layout import metadata_key
from detpipe.edge.reports import Reading, Report, ReportReader
from detpipe.edge.targets import Release, check_device_class, check_version
from detpipe.errors import InvalidInput, NotFound, StoreError
from detpipe.store import Store

log = logging.getLogger(__name__)

SCHEMA = "detpipe.fleet-status/1"
FAILED = ("rolled-back", "refused", "error")  # the device's own check failed (health, hash, crash)
INVENTORY_KEYS = ("tensorrt", "jetpack", "l4t", "cuda", "compute_capability")
NONE = "none"  # the JSON key of a missing version


def version_sha256s(store: Store, root: Root, device_class: str, version: str) -> set[str]:
    """The sha256s of ``version``'s targets for the class, from targets metadata verified with ``root``.

    Raises:
        InvalidInput: the version is not published for the class.
        StoreError: no targets metadata, or it does not verify.
    """
    try:
        md = Metadata.from_bytes(store.get_bytes(metadata_key(Targets.type)))
        root.verify_delegate(Targets.type, md.signed_bytes, md.signatures)
    except NotFound:
        raise InvalidInput(f"{store.uri}: nothing published (no {metadata_key(Targets.type)})") from None
    except UnsignedMetadataError as e:
        raise StoreError(f"{store.uri}/{metadata_key(Targets.type)}: {e}") from None
    except Exception as e:  # DeserializationError: a broken repository
        raise StoreError(f"{store.uri}/{metadata_key(Targets.type)}: not TUF metadata ({e})") from None
    assert isinstance(md.signed, Targets)
    found = set()
    for target in md.signed.targets.values():
        try:
            release = Release.from_target(target)
        except InvalidInput:
            continue
        if (release.device_class, release.version) == (device_class, version):
            found.add(release.sha256)
    if not found:
        raise InvalidInput(f"version {version} is not published for device class {device_class}")
    return found


def fleet_status(
    store: Store,
    device_class: str,
    root: Root,
    *,
    version: str | None = None,
    stale: timedelta = timedelta(hours=1),
    now: datetime | None = None,
    record: bool = True,
) -> dict[str, Any]:
    """The class's fleet summary (module docstring); records the reports seen unless ``record`` is off.

    Raises:
        InvalidInput: a bad class or version, or a version not published for the class.
        StoreError: the store failed.
    """
    check_device_class(device_class)
    sha256s = version_sha256s(store, root, device_class, check_version(version)) if version else set()
    reader = ReportReader(store, device_class, root)
    reading = reader.read()
    if record:
        reader.save_seen()
    now = now or datetime.now(UTC)
    reports = sorted(reading.valid.values(), key=lambda r: r.device_id)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "store": store.uri,
        "device_class": device_class,
        "generated_at": now.isoformat(timespec="seconds"),
        "stale_after_s": int(stale.total_seconds()),
        "version": version,
    }
    stale_rows = _stale(reading, now - stale)
    doc["devices"] = {"enrolled": len(reading.enrolled), "reporting": len(reports), "stale": len(stale_rows)}
    doc["by_version"] = _counts(r["version"] for r in reports)
    doc["by_outcome"] = _counts(r["outcome"] for r in reports)
    failing = [r for r in reports if _failing(r, version, sha256s)]
    if version:
        says = Counter(on_version(r, version, sha256s) for r in reports)
        doc["target"] = {"version": version, "running": says["running"], "failed": says["failed"],
                         "incompatible": says["incompatible"], "pending": says[None]}  # fmt: skip
    doc["failing"] = [_failure(r, sha256s) for r in failing]
    doc["stale"] = stale_rows
    doc["ignored"] = {
        "counts": reading.ignored_counts(),
        "reports": [
            {"device_id": i.device_id, "reason": i.reason, "detail": i.detail} for i in reading.ignored
        ],
    }
    doc["inventory"] = {
        k: _counts(
            (r["inventory"] or {}).get(k) if isinstance(r["inventory"], dict) else None for r in reports
        )
        for k in INVENTORY_KEYS
    }
    doc["reports"] = [_row(r, now - stale) for r in reports]
    return doc


def _counts(values: Any) -> dict[str, int]:
    counted = Counter(NONE if v is None else str(v) for v in values)
    return dict(sorted(counted.items(), key=lambda kv: (-kv[1], kv[0])))


def _failing(r: Report, version: str | None, sha256s: set[str]) -> bool:
    """Failed on ``version`` (any version when None): its check failed, or it refused it for good."""
    if version is None:
        return r["outcome"] in FAILED or bool(r["last_error"])
    return on_version(r, version, sha256s) == "failed"


def on_version(r: Report, version: str, sha256s: set[str]) -> str | None:
    """What a device's report says about ``version`` (``sha256s``: its targets' hashes).

    ``failed``: its check failed on the version (health check, hash, crash: outcome
    rolled-back, refused or error after trying it) or it refused the version for good;
    ``running``: it runs the version; ``incompatible``: no target of the version fits it (no
    failure: a later publish may add its engine); None: the report says nothing about it yet.
    The one rule fleet status and the rollout controller count by.
    """
    refused = r["refused"] if isinstance(r["refused"], dict) else {}
    if (r["outcome"] in FAILED and r["tried_version"] == version) or sha256s & refused.keys():
        return "failed"
    if r["version"] == version:
        return "running"
    if r["outcome"] == "incompatible" and r["tried_version"] == version:
        return "incompatible"
    return None


def _failure(r: Report, sha256s: set[str]) -> dict[str, Any]:
    refused = r["refused"] if isinstance(r["refused"], dict) else {}
    reason = r["last_error"] or next((refused[s] for s in sha256s if s in refused), None)
    return {"device_id": r.device_id, "outcome": r["outcome"], "version": r["version"],
            "tried_version": r["tried_version"], "error": reason}  # fmt: skip


def _reported_at(r: Report) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(r["reported_at"]))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _stale(reading: Reading, cutoff: datetime) -> list[dict[str, Any]]:
    rows = []
    for device_id in sorted(reading.enrolled):
        r = reading.valid.get(device_id)
        when = _reported_at(r) if r is not None else None
        if when is None or when < cutoff:
            rows.append({"device_id": device_id, "last_report": when.isoformat() if when else None})
    return rows


def _row(r: Report, cutoff: datetime) -> dict[str, Any]:
    when = _reported_at(r)
    return {"device_id": r.device_id, "version": r["version"], "outcome": r["outcome"], "seq": r["seq"],
            "reported_at": r["reported_at"], "current": r.current,
            "stale": when is None or when < cutoff}  # fmt: skip


def _section(title: str, counts: dict[str, int]) -> list[str]:
    if not counts:
        return [f"{title}: none"]
    width = max(len(k) for k in counts)
    return [title, *(f"  {k:<{width}}  {n}" for k, n in counts.items())]


def format_table(doc: dict[str, Any]) -> str:
    """The human-readable form of :func:`fleet_status`'s document."""
    d = doc["devices"]
    hours = doc["stale_after_s"] / 3600
    lines = [
        f"fleet {doc['device_class']} at {doc['store']}: {d['enrolled']} enrolled, {d['reporting']} "
        f"reporting, {d['stale']} stale (no valid report for {hours:g}h)",
        *_section("devices per version", doc["by_version"]),
        *_section("devices per outcome", doc["by_outcome"]),
    ]
    if "target" in doc:
        t = doc["target"]
        lines.append(
            f"version {t['version']}: {t['running']} running, {t['failed']} failed, "
            f"{t['incompatible']} incompatible, {t['pending']} pending"
        )
    lines.append(f"failing devices: {len(doc['failing'])}")
    lines += [
        f"  {f['device_id']}  {f['outcome']}  tried {f['tried_version']}: {f['error']}"
        for f in doc["failing"]
    ]
    lines.append(f"stale devices: {len(doc['stale'])}")
    lines += [f"  {s['device_id']}  last valid report {s['last_report'] or 'never'}" for s in doc["stale"]]
    counts = doc["ignored"]["counts"]
    lines.append(
        f"ignored reports: {sum(counts.values())} (" + ", ".join(f"{k} {n}" for k, n in counts.items()) + ")"
    )
    lines += [f"  {i['device_id']}  {i['reason']}: {i['detail']}" for i in doc["ignored"]["reports"]]
    lines.append("inventory")
    for key, counts_k in doc["inventory"].items():
        lines.append(f"  {key:<18} " + (", ".join(f"{v}: {n}" for v, n in counts_k.items()) or "-"))
    return "\n".join(lines)
