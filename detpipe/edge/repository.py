"""A python-tuf repository whose metadata lives in a detpipe store (``ota/`` prefix).

The shape is python-tuf's ``examples/repository/_simplerepo.py``: a
:class:`tuf.repository.Repository` subclass that only says where metadata and signers live
(:meth:`open`, :meth:`close`); roles are edited through the base class's context managers
and snapshot/timestamp follow mechanically (``do_snapshot``, ``do_timestamp``)::

    repo = StoreRepository(open_store("s3://detpipe"), Path("ota-keys"), expires=timedelta(days=7))
    with repo.edit_targets() as targets:
        targets.targets["cpu/1.0.0/model.onnx"] = target_file
    repo.do_snapshot(); repo.do_timestamp()

Store layout (consistent snapshots, TUF spec 5.5): ``ota/metadata/N.root.json`` for every
root version, ``ota/metadata/N.{targets,snapshot}.json`` and the unversioned
``{root,targets,snapshot,timestamp}.json`` copies; ``timestamp.json`` is written last, so a
device sees either the previous repository state or the new one, never a mix.
"""

from __future__ import annotations

import logging
from copy import deepcopy
from datetime import UTC, datetime, timedelta
from pathlib import Path

from securesystemslib.signer import Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, MetaFile, Root, Signed, Snapshot, Targets, Timestamp
from tuf.repository import Repository

from detpipe.edge.keys import ONLINE_ROLES, ROLES, SPEC_VERSION, load_signer, load_signers, serialize
from detpipe.errors import InvalidInput, NotFound, StoreError
from detpipe.store import Store

log = logging.getLogger(__name__)

OTA = "ota"
METADATA = f"{OTA}/metadata"
TARGETS = f"{OTA}/targets"
VERSIONED = ("root", "targets", "snapshot")  # timestamp.json is always fetched unversioned
ROOT_EXPIRY = timedelta(days=365)


def metadata_key(role: str, version: int | None = None) -> str:
    """``ota/metadata/[N.]<role>.json``."""
    return f"{METADATA}/{version}.{role}.json" if version is not None else f"{METADATA}/{role}.json"


class StoreRepository(Repository):
    """The fleet's TUF repository in ``store``, signed with the keys in ``keys_dir``.

    Args:
        store: the detpipe store (S3/MinIO or a directory).
        keys_dir: ``detpipe edge keygen`` output: ``<role>.pem`` files and ``root.json``
            (read only until the store holds a root). Missing role keys simply cannot sign:
            a CI runner holds the online keys, not ``root.pem``.
        expires: validity of each new targets/snapshot/timestamp version.
    """

    def __init__(self, store: Store, keys_dir: Path, expires: timedelta = timedelta(days=7)) -> None:
        self.store = store
        self.keys_dir = keys_dir
        self.expires = expires
        self.signers: dict[str, list[Signer]] = load_signers(keys_dir, ROLES)
        self.extra_root_signers: list[Signer] = []  # the old root key during a root rotation
        self._cache: dict[str, Metadata] = {}
        self._fresh: set[str] = set()

    # -- persistence ----------------------------------------------------------------------------

    def _read(self, role: str) -> Metadata | None:
        try:
            data = self.store.get_bytes(metadata_key(role))
        except NotFound:
            return None
        try:
            return Metadata.from_bytes(data)
        except Exception as e:  # DeserializationError and friends: a broken repository
            raise StoreError(f"{self.store.uri}/{metadata_key(role)}: not TUF metadata ({e})") from None

    def open(self, role: str) -> Metadata:
        """The newest metadata of ``role``: from the store, else a fresh, unsigned version 1."""
        if role in self._cache:
            return deepcopy(self._cache[role])
        md = self._read(role)
        if md is None:
            md = self._initial(role)
        self._cache[role] = md
        return deepcopy(md)

    def _initial(self, role: str) -> Metadata:
        if role == Root.type:
            path = self.keys_dir / "root.json"
            if not path.is_file():
                raise InvalidInput(f"{path}: no root.json and none in {self.store.uri}/{METADATA}")
            md = Metadata.from_file(str(path))
            self._write(Root.type, md)  # the trust anchor is published as is (1.root.json)
            return md
        signed: Signed
        if role == Targets.type:
            signed = Targets(version=1, spec_version=SPEC_VERSION, expires=_now())
        elif role == Snapshot.type:
            signed = Snapshot(version=1, spec_version=SPEC_VERSION, expires=_now(), meta={})
        elif role == Timestamp.type:
            signed = Timestamp(
                version=1, spec_version=SPEC_VERSION, expires=_now(), snapshot_meta=MetaFile(version=1)
            )
        else:
            raise InvalidInput(f"unknown TUF role {role!r}")
        self._fresh.add(role)  # its first close keeps version 1
        return Metadata(signed)

    def close(self, role: str, md: Metadata) -> None:
        """Bump version and expiry, sign with every key of ``role`` here, store."""
        signers = self.signers.get(role, [])
        if not signers:
            raise InvalidInput(
                f"{self.keys_dir}: no {role}.pem; the {role} role cannot be signed without its key"
            )
        if role in self._fresh:
            self._fresh.discard(role)
        else:
            md.signed.version += 1
        md.signed.expires = _now() + (ROOT_EXPIRY if role == Root.type else self.expires)
        md.signatures.clear()
        for signer in [*signers, *(self.extra_root_signers if role == Root.type else [])]:
            md.sign(signer, append=True)
        self._write(role, md)
        self._cache[role] = md

    def _write(self, role: str, md: Metadata) -> None:
        data = serialize(md)
        if role in VERSIONED:
            self.store.put_bytes(metadata_key(role, md.signed.version), data, content_type="application/json")
        self.store.put_bytes(metadata_key(role), data, content_type="application/json")
        log.debug("signed %s v%d", role, md.signed.version)

    # -- what snapshot/timestamp describe ------------------------------------------------------------

    @property
    def targets_infos(self) -> dict[str, MetaFile]:
        """Top-level targets only (no delegations): ``{"targets.json": MetaFile(version)}``."""
        return {"targets.json": MetaFile(version=self.open(Targets.type).signed.version)}

    @property
    def snapshot_info(self) -> MetaFile:
        """The current snapshot version."""
        return MetaFile(version=self.open(Snapshot.type).signed.version)

    def publish_metadata(self) -> int:
        """After a targets edit: new snapshot and timestamp; returns the timestamp version."""
        self.do_snapshot()
        self.do_timestamp()
        return self.open(Timestamp.type).signed.version

    def refresh_timestamp(self) -> int:
        """Re-sign the timestamp (and snapshot) with fresh expiry: run it more often than ``expires``."""
        self.do_snapshot(force=True)
        self.do_timestamp(force=True)
        return self.open(Timestamp.type).signed.version

    def require_signers(self, roles: tuple[str, ...] = ONLINE_ROLES) -> None:
        """Fail early (before any upload) when a key a publish needs is missing."""
        for role in roles:
            if role not in self.signers:
                load_signer(self.keys_dir, role)  # raises with the path and how to make keys

    def verify_root_signed(self) -> None:
        """Raise unless the store's root verifies with itself (a sanity check before publishing)."""
        md = self.open(Root.type)
        root = md.signed
        assert isinstance(root, Root)
        try:
            root.verify_delegate(Root.type, md.signed_bytes, md.signatures)
        except UnsignedMetadataError as e:
            raise StoreError(f"{self.store.uri}/{metadata_key('root')}: {e}") from None


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
