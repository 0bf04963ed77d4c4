"""Signed device reports and device registrations: the one owner of both formats.

Every device has its own ed25519 key pair (:func:`ensure_device_key`: ``DIR/device.key``,
PKCS#8 PEM, mode 0600, and ``DIR/device.pub``, SubjectPublicKeyInfo PEM), made by the agent
on its first start. Signatures are securesystemslib's (``CryptoSigner``/``SSlibKey``, the
primitives that sign the TUF metadata) over securesystemslib's canonical JSON
(``encode_canonical``: sorted keys, no whitespace, no floats).

**Registration** (``detpipe edge enroll --pubkey FILE --keys DIR``), at
``ota/devices/<class>/<id>.json``, a TUF-style envelope signed by the fleet's *targets* key::

    {"signed": {"schema": "detpipe.device-registration/1", "device_class": "cpu",
                "device_id": "cam-17", "keyid": "<sha256 keyid>",
                "key": {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "<hex>"}},
                "enrolled_at": "2026-01-01T00:00:00+00:00"},
     "signatures": [{"keyid": "<targets keyid>", "sig": "<hex>"}]}

It counts when ``signatures`` meet the targets role's threshold of the *trusted root*
(:func:`trusted_root`): an anchor root (``--trust`` root.json, or the keys directory's
root.json for a publisher), followed through the store's ``ota/metadata/N.root.json`` chain,
each link verified (TUF spec 5.3); without an anchor the chain starts at the store's
``1.root.json`` (trust on first use of the store: say ``--trust`` to pin it).

**Report** (``devices/<id>/status.json``, written by the agent): the status fields at the
top level (readable as plain JSON), plus ``schema``, a ``seq`` that only grows (persisted in
``DIR/report-seq.json``, written atomically *before* the report leaves the device),
``reported_at`` and ``signature`` (``{"keyid", "sig"}`` by the device key) over the
canonical JSON of every other field::

    {"schema": "detpipe.device-report/1", "device_id": "cam-17", "device_class": "cpu",
     "seq": 42, "reported_at": "...", "version": "2", "outcome": "installed", ...,
     "timings_ms": {"download": 120}, "refused": {"<sha256>": "why"}, "inventory": {...},
     "signature": {"keyid": "...", "sig": "..."}}

**Reading** (:class:`ReportReader`, used by ``detpipe edge fleet`` and the rollout
controller): a report counts only when its device is enrolled in the class (a registration
that verifies), its signature verifies with the enrolled key, its ids match its path and
registration, and its ``seq`` is newer than the last one seen (the same ``seq`` with the same
content is the report seen before, still valid). Everything else is ignored with a reason
(:data:`REASONS`). Last-seen state lives in ``ota/fleet/<class>/seen.json`` (per device: the
enrolled keyid, the seq, the payload's sha256 and the last valid report), so an ignored
report changes nothing: the device keeps its last valid report. Readers that run at once
(``edge fleet``, rollout controllers) merge into it with a compare-and-swap
(:meth:`ReportReader.save_seen`), so none loses another's devices.

**Cheap passes.** A pass lists registrations and reports with their ETags
(``Store.list_tagged``: one request per 1,000 objects on S3) and GETs only what changed since
the last pass, whose outcome ``seen.json`` keeps: per device the ETag of its last valid report
(``devices.<id>.etag``), each registration's document under the ETag it was read with
(``registrations``), and the ETags of reports by another class's devices (``foreign``). An
unchanged valid report (the same ETag, its device still enrolled with the same key) is the
report seen before, still valid; a registration read before is verified against the trusted
root again on every pass (no GET, but the signature check), so a cache cannot enroll a key the
targets key never signed, and a changed root re-judges every registration. A changed ETag is
fetched and verified as on a first pass; a revoked registration (gone from the listing) drops
its device; ignored reports are fetched again on every pass (their verdict depends on the
enrollment and the last seq: few, and never cached). The cache holds no more trust than the
rest of ``seen.json``, which devices may not write (:mod:`detpipe.edge.policy`): whoever can
write it could put back a registration the targets key signed for that device, as whoever can
write ``ota/devices/`` can by putting the file back::

    root = trusted_root(store, anchor=load_root(Path("root.json")))
    reader = ReportReader(store, "cpu", root)
    reading = reader.read()          # .valid {id: Report}, .ignored [Ignored], .enrolled {id: key}
    reader.save_seen()               # persist what was seen (the fleet tool does it each run)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from securesystemslib.exceptions import FormatError, UnverifiedSignatureError
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import CryptoSigner, Signature, Signer, SSlibKey
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Targets

from detpipe.edge import layout
from detpipe.edge.keys import write_private_key
from detpipe.edge.layout import metadata_key
from detpipe.edge.policy import check_device_id
from detpipe.edge.rootchain import link_problem, version_of
from detpipe.edge.targets import check_device_class
from detpipe.errors import InvalidInput, NotFound, PreconditionFailed, StoreError
from detpipe.io import write_bytes, write_json
from detpipe.store import Store

log = logging.getLogger(__name__)

REPORT_SCHEMA = "detpipe.device-report/1"
REGISTRATION_SCHEMA = "detpipe.device-registration/1"
SEEN_SCHEMA = "detpipe.fleet-seen/1"
DEVICE_KEY, DEVICE_PUB, SEQ_FILE = "device.key", "device.pub", "report-seq.json"
REASONS = ("malformed", "unsigned", "unenrolled", "bad-registration", "forged", "replayed")
SAVE_ATTEMPTS = 10  # save_seen's compare-and-swap tries (N concurrent savers need at most N)
SUMMARY_FIELDS = (
    "seq", "reported_at", "version", "sha256", "outcome", "tried_version", "last_error",
    "rolled_back", "refused", "inventory",
)  # fmt: skip


# -- where things live -----------------------------------------------------------------------------


def report_key(device_id: str) -> str:
    """``devices/<id>/status.json`` (:mod:`detpipe.edge.layout`), the id checked."""
    return layout.report_key(check_device_id(device_id))


def registration_key(device_class: str, device_id: str) -> str:
    """``ota/devices/<class>/<id>.json``, the names checked."""
    return layout.registration_key(check_device_class(device_class), check_device_id(device_id))


def seen_key(device_class: str) -> str:
    """``ota/fleet/<class>/seen.json``: the last sequence number seen per device."""
    return layout.seen_key(check_device_class(device_class))


def canonical_bytes(doc: Mapping[str, Any]) -> bytes:
    """securesystemslib canonical JSON of ``doc`` (raises ``InvalidInput`` on floats and the like)."""
    try:
        return encode_canonical(dict(doc)).encode()
    except FormatError as e:
        raise InvalidInput(f"not canonical JSON (no floats): {e}") from None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- the device's key and sequence number ------------------------------------------------------------


def ensure_device_key(state_dir: Path) -> CryptoSigner:
    """The device's signer: ``DIR/device.key`` (made, 0600, with ``device.pub``, when missing).

    Raises:
        InvalidInput: ``device.key`` exists but is no ed25519 private key.
    """
    key_file, pub_file = state_dir / DEVICE_KEY, state_dir / DEVICE_PUB
    if not key_file.exists():
        signer = CryptoSigner.generate_ed25519()
        write_private_key(key_file, signer)
        log.info("made the device key %s (keyid %s)", key_file, signer.public_key.keyid[:8])
    else:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            signer = CryptoSigner(load_pem_private_key(key_file.read_bytes(), password=None))
        except (ValueError, TypeError) as e:
            raise InvalidInput(f"{key_file}: not an unencrypted PEM private key ({e})") from None
    pem = public_pem(signer.public_key)
    if not pub_file.exists() or pub_file.read_bytes() != pem:
        write_bytes(pub_file, pem)
    return signer


def public_pem(key: SSlibKey) -> bytes:
    """``key`` as SubjectPublicKeyInfo PEM (what ``device.pub`` holds)."""
    raw = bytes.fromhex(key.keyval["public"])
    return Ed25519PublicKey.from_public_bytes(raw).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(path: Path) -> SSlibKey:
    """An ed25519 public key from a PEM file (``device.pub``).

    Raises:
        InvalidInput: unreadable, not PEM, or not ed25519.
    """
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as e:
        raise InvalidInput(f"{path}: cannot read the public key ({e.strerror})") from None
    except ValueError:
        raise InvalidInput(f"{path}: not a PEM public key (the agent's DIR/{DEVICE_PUB})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInput(f"{path}: not an ed25519 key (the agent's DIR/{DEVICE_PUB})")
    return SSlibKey.from_crypto(key)


def next_seq(state_dir: Path) -> int:
    """The next report sequence number, persisted (atomically) before it is used."""
    path = state_dir / SEQ_FILE
    try:
        last = int(json.loads(path.read_text())["seq"])
    except FileNotFoundError:
        last = 0
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InvalidInput(f"{path}: unreadable report sequence number ({e}); it must only grow") from None
    write_json(path, {"seq": last + 1})
    return last + 1


# -- reports (agent side) ----------------------------------------------------------------------------


def sign_report(fields: Mapping[str, Any], signer: Signer, seq: int) -> dict[str, Any]:
    """The signed report: ``fields`` plus schema, ``seq``, ``reported_at`` and ``signature``.

    Raises:
        InvalidInput: ``fields`` is not canonical JSON (a float, a non-string key).
    """
    doc = {**fields, "schema": REPORT_SCHEMA, "seq": seq, "reported_at": _now()}
    doc.pop("signature", None)
    doc["signature"] = signer.sign(canonical_bytes(doc)).to_dict()
    return doc


# -- registrations (enroll side) ----------------------------------------------------------------------


def make_registration(
    device_class: str, device_id: str, key: SSlibKey, signers: list[Signer]
) -> dict[str, Any]:
    """The registration envelope of ``key`` for the device, signed by every targets signer."""
    signed = {
        "schema": REGISTRATION_SCHEMA,
        "device_class": check_device_class(device_class),
        "device_id": check_device_id(device_id),
        "keyid": key.keyid,
        "key": key.to_dict(),
        "enrolled_at": _now(),
    }
    payload = canonical_bytes(signed)
    return {"signed": signed, "signatures": [s.sign(payload).to_dict() for s in signers]}


def verify_registration(doc: Any, root: Root, device_class: str, device_id: str) -> SSlibKey:
    """The enrolled key of a registration envelope that verifies against ``root``'s targets role.

    Raises:
        InvalidInput: malformed, for another device or class, or not signed by a threshold
            of the targets keys.
    """
    try:
        signed, sigs = doc["signed"], doc["signatures"]
        if signed.get("schema") != REGISTRATION_SCHEMA:
            raise ValueError(f"schema {signed.get('schema')!r}")
        signatures = {s["keyid"]: Signature.from_dict(dict(s)) for s in sigs}
        key = SSlibKey.from_dict(signed["keyid"], dict(signed["key"]))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise InvalidInput(f"registration of {device_id}: malformed ({e})") from None
    if (signed.get("device_class"), signed.get("device_id")) != (device_class, device_id):
        raise InvalidInput(f"registration of {device_id}: names {signed.get('device_id')} in "
                           f"{signed.get('device_class')}")  # fmt: skip
    try:
        root.verify_delegate(Targets.type, canonical_bytes(signed), signatures)
    except (UnsignedMetadataError, InvalidInput) as e:
        raise InvalidInput(f"registration of {device_id}: not signed by the targets key ({e})") from None
    return key


def register(
    store: Store, device_class: str, device_id: str, key: SSlibKey, signers: list[Signer], root: Root
) -> str:
    """Sign and upload the registration; returns its key. Checked against ``root`` first.

    Raises:
        InvalidInput: the signers are not the targets keys ``root`` trusts.
    """
    doc = make_registration(device_class, device_id, key, signers)
    try:
        verify_registration(doc, root, device_class, device_id)
    except InvalidInput:
        raise InvalidInput(
            f"the targets key does not satisfy root v{root.version}'s targets role: devices' reports "
            "would not count (use the keys directory the fleet publishes with)"
        ) from None
    where = registration_key(device_class, device_id)
    store.put_bytes(where, json.dumps(doc, indent=2).encode(), content_type="application/json")
    return where


def revoke(store: Store, device_class: str, device_id: str) -> bool:
    """Remove the device's registration; returns whether there was one."""
    where = registration_key(device_class, device_id)
    existed = store.exists(where)
    store.delete(where)
    return existed


# -- the trusted root ---------------------------------------------------------------------------------


def load_root(path: Path) -> Metadata:
    """Root metadata from a file (``root.json``).

    Raises:
        InvalidInput: unreadable or not root metadata.
    """
    try:
        md = Metadata.from_bytes(path.read_bytes())
    except OSError as e:
        raise InvalidInput(f"{path}: cannot read the root ({e.strerror})") from None
    except Exception as e:  # DeserializationError and the like
        raise InvalidInput(f"{path}: not TUF root metadata ({e})") from None
    if md.signed.type != Root.type:
        raise InvalidInput(f"{path}: {md.signed.type} metadata, expected the root (root.json)")
    return md


def trusted_root(store: Store, anchor: Metadata | None = None) -> Root:
    """The newest root reachable from ``anchor`` through the store's chain, every link verified.

    Without ``anchor`` the chain starts at the store's ``1.root.json``.

    Raises:
        InvalidInput: no anchor and no root in the store, or the store's root of the anchor's
            version is another (another fleet's store).
        StoreError: a link of the store's chain does not verify, or unreadable metadata.
    """
    md = anchor if anchor is not None else _stored_root(store, 1)
    if md is None:
        raise InvalidInput(f"{store.uri}: no {metadata_key('root', 1)} (nothing published yet): pass --trust")
    same = _stored_root(store, version_of(md)) if anchor is not None else md
    if same is not None and same.signed != md.signed:
        raise InvalidInput(
            f"{store.uri}/{metadata_key('root', version_of(md))} is not the trusted root v{version_of(md)}: "
            "the store belongs to another fleet's keys"
        )
    while (nxt := _stored_root(store, version_of(md) + 1)) is not None:
        problem = link_problem(md, nxt)
        if problem is not None:
            raise StoreError(f"{store.uri}/{metadata_key('root', version_of(nxt))}: {problem}")
        md = nxt
    assert isinstance(md.signed, Root)
    return md.signed


def _stored_root(store: Store, version: int) -> Metadata | None:
    try:
        data = store.get_bytes(metadata_key("root", version))
    except NotFound:
        return None
    try:
        return Metadata.from_bytes(data)
    except Exception as e:  # DeserializationError: a broken repository
        raise StoreError(f"{store.uri}/{metadata_key('root', version)}: not TUF metadata ({e})") from None


# -- reading reports (fleet side) ------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """A report that counts: its fields (:data:`SUMMARY_FIELDS`), and whether it is this run's."""

    device_id: str
    fields: dict[str, Any]
    current: bool = True  # False: the store's report was ignored, this is the last valid one

    def __getitem__(self, name: str) -> Any:
        return self.fields.get(name)


@dataclass(frozen=True)
class Ignored:
    """A report that does not count, and why (one of :data:`REASONS`)."""

    device_id: str
    reason: str
    detail: str


@dataclass
class Reading:
    """One pass over a class's reports."""

    enrolled: dict[str, SSlibKey] = field(default_factory=dict)
    valid: dict[str, Report] = field(default_factory=dict)
    ignored: list[Ignored] = field(default_factory=list)

    def ignored_counts(self) -> dict[str, int]:
        counts = {r: 0 for r in REASONS}
        for i in self.ignored:
            counts[i.reason] += 1
        return counts


class ReportReader:
    """Reads and verifies one class's reports; keeps the last-seen state (module docstring).

    Args:
        store: the fleet's store.
        device_class: the class whose devices are read.
        root: the trusted root (:func:`trusted_root`).
        seen: last-seen state to start from (no cache); read from :func:`seen_key` when None.
    """

    def __init__(
        self, store: Store, device_class: str, root: Root, seen: dict[str, Any] | None = None
    ) -> None:
        self.store = store
        self.device_class = check_device_class(device_class)
        self.root = root
        self._cache = _Cache()  # what the stored seen.json held; this pass's after read()
        self._listed = False  # whether read() ran: its cache replaces the stored one
        self._stored: tuple[dict[str, Any], str | None] | None = None  # seen.json as last read/written
        if seen is None:
            self._stored = self._load_seen_tagged()
            seen, self._cache = _devices(self._stored[0]), _Cache.from_doc(self._stored[0])
        self.seen: dict[str, dict[str, Any]] = seen

    def _load_seen_tagged(self) -> tuple[dict[str, Any], str | None]:
        """The stored ``seen.json`` document and its ETag (``None``: there is none yet)."""
        try:
            data, etag = self.store.get_tagged(seen_key(self.device_class))
        except NotFound:
            return {}, None
        try:
            doc = json.loads(data)
        except ValueError:
            log.warning("%s: unreadable, starting over", seen_key(self.device_class))
            return {}, etag
        return (doc if isinstance(doc, dict) else {}), etag

    def save_seen(self) -> None:
        """Write the last-seen state, merged with what other readers wrote meanwhile.

        A compare-and-swap: read ``seen.json`` with its ETag, keep the newer seq per device
        (ours unless the stored entry, for the same key, has a newer one), write with
        ``If-Match`` (``If-None-Match`` when there is none yet); when another reader wrote in
        between, read and merge again, up to :data:`SAVE_ATTEMPTS` times, after a short
        jittered sleep. The first attempt merges into the ``seen.json`` this reader loaded (no
        GET: its ETag says whether it is still the stored one). The cache (module docstring)
        is this reader's last pass, whole.

        Raises:
            StoreError: every attempt lost the race (or the store failed).
        """
        key = seen_key(self.device_class)
        for attempt in range(SAVE_ATTEMPTS):
            stored, etag = self._stored if attempt == 0 and self._stored else self._load_seen_tagged()
            merged = _devices(stored)
            for device, entry in self.seen.items():
                old = merged.get(device)
                if old is None or old.get("keyid") != entry.get("keyid") or old.get("seq", 0) <= entry["seq"]:
                    merged[device] = entry
            cache = self._cache if self._listed else _Cache.from_doc(stored)
            doc = {
                "schema": SEEN_SCHEMA,
                "device_class": self.device_class,
                "devices": merged,
                **cache.to_doc(),
            }
            data = json.dumps(doc).encode()
            try:
                json_type = "application/json"
                if etag is None:
                    info = self.store.put_bytes(key, data, content_type=json_type, if_none_match=True)
                else:
                    info = self.store.put_bytes(key, data, content_type=json_type, if_match=etag)
                self._stored = (doc, info.etag) if info.etag else None
                return
            except (PreconditionFailed, NotFound):  # S3 answers If-Match on a deleted object with 404
                log.debug("%s changed while it was merged (attempt %d), merging again", key, attempt + 1)
                time.sleep(random.uniform(0, min(0.2, 0.01 * 2**attempt)))
        raise StoreError(
            f"{self.store.uri}/{key}: other readers kept writing it while it was merged "
            f"({SAVE_ATTEMPTS} attempts); the seen state was not saved, run again"
        )

    def read(self) -> Reading:
        """Registrations of the class, then every ``devices/<id>/status.json``: two listings,
        and a GET only of what changed since the last pass (module docstring)."""
        reading, cache = Reading(), _Cache()
        bad_registrations: dict[str, str] = {}
        prefix = f"{layout.REGISTRATIONS}/{self.device_class}/"
        for key, etag in self.store.list_tagged(prefix):
            device_id = key[len(prefix) :].removesuffix(".json")
            try:
                reading.enrolled[device_id] = self._enrolled_key(key, device_id, etag, cache)
            except NotFound:
                continue
            except (ValueError, InvalidInput) as e:  # json's ValueError: a broken registration
                bad_registrations[device_id] = str(e)
        for key, etag in self.store.list_tagged(f"{layout.DEVICES}/"):
            parts = key.split("/")
            if len(parts) != 3 or parts[2] != layout.REPORT_FILE:
                continue
            device_id = parts[1]
            enrolled = reading.enrolled.get(device_id)
            if (verdict := self._unchanged(device_id, etag, enrolled)) is not None:
                reading.valid[device_id] = verdict
                continue
            if (
                enrolled is None
                and device_id not in bad_registrations
                and self._cache.foreign.get(device_id) == etag
            ):
                cache.foreign[device_id] = etag  # still another class's device
                continue
            try:
                data, etag = self.store.get_tagged(key)
            except NotFound:
                continue  # deleted since the listing
            if self._judge(device_id, data, etag, reading, bad_registrations) and etag:
                cache.foreign[device_id] = etag
        for device_id in reading.enrolled.keys() - reading.valid.keys():
            last = self.seen.get(device_id)
            if last and last.get("keyid") == reading.enrolled[device_id].keyid and last.get("report"):
                reading.valid[device_id] = Report(device_id, last["report"], current=False)
        self._cache, self._listed = cache, True
        return reading

    def _enrolled_key(self, key: str, device_id: str, etag: str, cache: _Cache) -> SSlibKey:
        """The key the registration at ``key`` enrolls, verified against the root on every pass:
        the document read before when the listed ``etag`` is its (and it still verifies), else
        the store's (kept in ``cache`` for the next pass)."""
        doc = self._cache.registration(device_id, etag)
        if doc is not None:
            with contextlib.suppress(InvalidInput):
                enrolled = verify_registration(doc, self.root, self.device_class, device_id)
                cache.keep_registration(device_id, etag, doc)
                return enrolled
        data, etag = self.store.get_tagged(key)
        doc = json.loads(data)
        enrolled = verify_registration(doc, self.root, self.device_class, device_id)
        cache.keep_registration(device_id, etag, doc)
        return enrolled

    def _unchanged(self, device_id: str, etag: str, enrolled: SSlibKey | None) -> Report | None:
        """The report seen valid before when the store still holds it (the same ETag) and the
        device is still enrolled with the same key; None: fetch and verify it."""
        last = self.seen.get(device_id)
        if enrolled is None or not etag or not last or last.get("etag") != etag:
            return None
        if (last.get("keyid"), last.get("pub")) != (enrolled.keyid, enrolled.keyval.get("public")):
            return None
        report = last.get("report")
        return Report(device_id, report) if isinstance(report, dict) else None

    def _judge(
        self, device_id: str, data: bytes, etag: str, reading: Reading, bad_registrations: dict[str, str]
    ) -> bool:
        """Count the report of ``device_id`` as valid, or ignore it with a reason; True when it
        is another class's device."""
        try:
            verdict = self._verify(device_id, data, reading.enrolled.get(device_id), bad_registrations)
        except _Ignore as e:
            reading.ignored.append(Ignored(device_id, e.reason, e.detail))
            log.info("report of %s ignored (%s): %s", device_id, e.reason, e.detail)
            return False
        if verdict is None:
            return True
        reading.valid[device_id] = verdict
        self.seen[device_id]["etag"] = etag
        return False

    def _verify(
        self, device_id: str, data: bytes, enrolled: SSlibKey | None, bad_registrations: dict[str, str]
    ) -> Report | None:
        """The report if it counts, None for another class's device; raises :class:`_Ignore`."""
        try:
            check_device_id(device_id)
            doc = json.loads(data)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
        except (InvalidInput, ValueError) as e:
            raise _Ignore("malformed", str(e)[:200]) from None
        foreign = doc.get("device_class") != self.device_class
        if enrolled is None and device_id not in bad_registrations and foreign:
            return None  # another class's device
        if doc.get("schema") != REPORT_SCHEMA or not isinstance(doc.get("signature"), dict):
            raise _Ignore("unsigned", f"no signature (not a {REPORT_SCHEMA})")
        if enrolled is None:
            if device_id in bad_registrations:
                raise _Ignore("bad-registration", bad_registrations[device_id])
            raise _Ignore("unenrolled", f"no {registration_key(self.device_class, device_id)}")
        payload = _check_signature(doc, enrolled)
        if (doc.get("device_id"), doc.get("device_class")) != (device_id, self.device_class):
            raise _Ignore("forged", f"signed for {doc.get('device_id')} in {doc.get('device_class')}")
        seq, digest = doc.get("seq"), hashlib.sha256(payload).hexdigest()
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise _Ignore("malformed", f"seq {seq!r} is not an integer")
        last = self.seen.get(device_id)
        if (
            last
            and last.get("keyid") == enrolled.keyid
            and (seq < last["seq"] or (seq == last["seq"] and digest != last.get("sha256")))
        ):
            raise _Ignore("replayed", f"seq {seq}, last seen {last['seq']}")
        summary = {k: doc.get(k) for k in SUMMARY_FIELDS}
        self.seen[device_id] = {"keyid": enrolled.keyid, "pub": enrolled.keyval.get("public"), "seq": seq,
                                "sha256": digest, "report": summary}  # fmt: skip
        return Report(device_id, summary)


class _Ignore(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _check_signature(doc: dict[str, Any], key: SSlibKey) -> bytes:
    """The signed payload of ``doc`` when its signature verifies with ``key``; else :class:`_Ignore`."""
    try:
        payload = canonical_bytes({k: v for k, v in doc.items() if k != "signature"})
    except InvalidInput as e:
        raise _Ignore("malformed", str(e)[:200]) from None
    try:
        key.verify_signature(Signature.from_dict(dict(doc["signature"])), payload)
    except (KeyError, TypeError, ValueError, UnverifiedSignatureError) as e:
        detail = f"signature does not verify with the enrolled key {key.keyid[:8]} ({e})"
        raise _Ignore("forged", detail[:300]) from None
    return payload


def _devices(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-device entries of a ``seen.json`` document."""
    devices = doc.get("devices")
    return dict(devices) if isinstance(devices, dict) else {}


@dataclass
class _Cache:
    """What a pass keeps so that the next one skips GETs (module docstring): per device, its
    registration (the document, verified again on every pass) under the ETag it was read with,
    and the ETag of a report that is another class's device's."""

    registrations: dict[str, dict[str, Any]] = field(default_factory=dict)
    foreign: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> _Cache:
        regs, foreign = doc.get("registrations"), doc.get("foreign")
        return cls(
            {k: v for k, v in regs.items() if isinstance(v, dict) and isinstance(v.get("doc"), dict)}
            if isinstance(regs, dict) else {},
            {k: v for k, v in foreign.items() if isinstance(v, str)} if isinstance(foreign, dict) else {},
        )  # fmt: skip

    def to_doc(self) -> dict[str, dict[str, Any]]:
        return {"registrations": self.registrations, "foreign": self.foreign}

    def registration(self, device_id: str, etag: str) -> dict[str, Any] | None:
        """The registration document read before, when the listed object (``etag``) is that one."""
        kept = self.registrations.get(device_id)
        return kept["doc"] if etag and kept is not None and kept.get("etag") == etag else None

    def keep_registration(self, device_id: str, etag: str, doc: dict[str, Any]) -> None:
        if etag:
            self.registrations[device_id] = {"etag": etag, "doc": doc}
