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

The root comes from both sides (:meth:`StoreRepository.root_chain`): the keys directory's
chain (:mod:`detpipe.edge.rootchain`) and the store's. A fresh store gets the whole local
chain ``1..N``; a store behind the keys directory (published before a rotation) gets the
versions it lacks; a store ahead of it is followed link by link, each version verified.
Where both hold a version they must agree (else: another fleet's store). Before anything is
signed, :meth:`StoreRepository.require_signers` checks that the newest root trusts each
signing key: a key the shipped root does not name would cut every device off.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from copy import deepcopy
from datetime import UTC, datetime, timedelta
from pathlib import Path

from securesystemslib.signer import Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, MetaFile, Root, Signed, Snapshot, Targets, Timestamp
from tuf.repository import Repository

from detpipe.edge.keys import (
    ONLINE_ROLES,
    ROLES,
    ROOT_EXPIRY,
    SPEC_VERSION,
    key_path,
    load_signer,
    load_signers,
    serialize,
)
from detpipe.edge.layout import METADATA, metadata_key
from detpipe.edge.rootchain import link_problem, local_chain, version_of
from detpipe.errors import InvalidInput, NotFound, StoreError
from detpipe.store import Store

log = logging.getLogger(__name__)

VERSIONED = ("root", "targets", "snapshot")  # timestamp.json is always fetched unversioned


class StoreRepository(Repository):
    """The fleet's TUF repository in ``store``, signed with the keys in ``keys_dir``.

    Args:
        store: the detpipe store (S3/MinIO or a directory).
        keys_dir: ``detpipe edge keygen`` output: ``<role>.pem`` files and the root chain
            (``N.root.json``, ``root.json``). Missing role keys simply cannot sign: a CI
            runner holds the online keys, not ``root.pem``.
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
        self._chain: list[Metadata] | None = None  # every root version, oldest first
        self._unshipped: list[Metadata] = []  # root versions the store lacks

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
        """The newest metadata of ``role``: from the store, else a fresh, unsigned version 1.

        The root is the newest of :meth:`root_chain`; opening it ships the versions the store lacks.
        """
        if role in self._cache:
            return deepcopy(self._cache[role])
        if role == Root.type:
            md = self.root_chain()[-1]
            for missing in self._unshipped:
                self._write(Root.type, missing)
            if self._unshipped:
                log.info("root v%d..v%d shipped to %s", version_of(self._unshipped[0]),
                         version_of(md), self.store.uri)  # fmt: skip
            self._unshipped = []
        else:
            md = self._read(role) or self._initial(role)
        self._cache[role] = md
        return deepcopy(md)

    # -- the root chain ----------------------------------------------------------------------------

    def root_chain(self) -> list[Metadata]:
        """Every root version known here (keys directory and store), oldest first, verified.

        Reads, never writes (:meth:`open` ships what the store lacks).

        Raises:
            InvalidInput: no root anywhere, a fresh store and a chain that does not start at
                v1, or a store whose root is not this keys directory's (another fleet).
            StoreError: a store root version that does not follow from the one before it.
        """
        if self._chain is None:
            self._chain, self._unshipped = self._merge_chains(local_chain(self.keys_dir), self._read("root"))
        return self._chain

    def _merge_chains(
        self, local: list[Metadata], stored: Metadata | None
    ) -> tuple[list[Metadata], list[Metadata]]:
        """(the whole chain, the versions the store lacks)."""
        where = f"{self.store.uri}/{METADATA}"
        if stored is None:
            if not local:
                raise InvalidInput(f"{self.keys_dir / 'root.json'}: no root.json and none in {where}")
            if version_of(local[0]) != 1:
                raise InvalidInput(
                    f"{self.keys_dir}: the root chain starts at v{version_of(local[0])}, a new store needs "
                    f"1.root.json onwards (devices provisioned with v1 walk it): copy the N.root.json "
                    f"files of a store this fleet publishes to into {self.keys_dir}"
                )
            return local, list(local)
        if not local:
            return self._store_chain(version_of(stored), stored), []
        newest_local, newest_stored = version_of(local[-1]), version_of(stored)
        common = min(newest_local, newest_stored)
        mine = next((md for md in local if version_of(md) == common), None)
        theirs = stored if common == newest_stored else self._read_version(common)
        if mine is not None and mine.signed != theirs.signed:
            raise InvalidInput(
                f"{where}/{common}.root.json is not root v{common} of {self.keys_dir}: the store belongs "
                "to another fleet's keys"
            )
        if newest_local >= newest_stored:
            if version_of(local[0]) > newest_stored + 1:
                raise InvalidInput(
                    f"{self.keys_dir}: root v{newest_stored + 1} missing ({where} is at v{newest_stored})"
                )
            unshipped = [md for md in local if version_of(md) > newest_stored]
            problem = link_problem(stored, unshipped[0]) if unshipped else None
            if problem is not None:
                raise InvalidInput(f"{self.keys_dir}: root chain does not follow {where}: {problem}")
            return local, unshipped
        log.warning(
            "%s is at root v%d, %s at v%d: following the store (update root.json in the keys directory)",
            where, newest_stored, self.keys_dir, newest_local,
        )  # fmt: skip
        return [*local, *self._store_chain(newest_stored, stored, after=local[-1])], []

    def _store_chain(self, newest: int, stored: Metadata, after: Metadata | None = None) -> list[Metadata]:
        """The store's root versions after ``after`` (all of them when None), each link verified."""
        chain: list[Metadata] = []
        prev = after
        for version in range(version_of(after) + 1 if after else 1, newest + 1):
            md = stored if version == newest else self._read_version(version)
            problem = link_problem(prev, md) if prev is not None else None
            if problem is not None:
                raise StoreError(f"{self.store.uri}/{metadata_key('root', version)}: {problem}")
            chain.append(md)
            prev = md
        return chain

    def _read_version(self, version: int) -> Metadata:
        key = metadata_key(Root.type, version)
        try:
            return Metadata.from_bytes(self.store.get_bytes(key))
        except NotFound:
            raise StoreError(f"{self.store.uri}/{key}: missing (the root chain has a gap)") from None
        except Exception as e:  # DeserializationError: a broken repository
            raise StoreError(f"{self.store.uri}/{key}: not TUF metadata ({e})") from None

    def _initial(self, role: str) -> Metadata:
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
        if role == Root.type:
            self._chain = [*self.root_chain(), md]

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

    def do_snapshot(self, force: bool = False) -> tuple[bool, dict[str, MetaFile]]:
        """python-tuf's, without its INFO line about the old, still unsigned version."""
        with _quiet_payload():
            return super().do_snapshot(force)

    def do_timestamp(self, force: bool = False) -> tuple[bool, MetaFile | None]:
        """python-tuf's, without its INFO line about the old, still unsigned version."""
        with _quiet_payload():
            return super().do_timestamp(force)

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
        """Fail early (before any upload) when a key a publish needs is missing or not trusted.

        Raises:
            InvalidInput: no key file for a role, or the newest root (the one devices will
                hold) does not name the key: metadata signed with it would be refused.
        """
        root_md = self.root_chain()[-1]
        root = root_md.signed
        assert isinstance(root, Root)
        for role in roles:
            if role not in self.signers:
                load_signer(self.keys_dir, role)  # raises with the path and how to make keys
            trusted = root.roles[role].keyids
            for signer in self.signers[role]:
                keyid = signer.public_key.keyid
                if keyid not in trusted:
                    raise InvalidInput(
                        f"{key_path(self.keys_dir, role)}: key {keyid[:8]} is not trusted for {role} by "
                        f"root v{root.version} (it trusts {', '.join(k[:8] for k in trusted)}); devices "
                        "would refuse every update (after 'edge rotate', use the keys directory it updated)"
                    )

    def verify_root_signed(self) -> None:
        """Raise unless the store's root verifies with itself (a sanity check before publishing)."""
        md = self.open(Root.type)
        root = md.signed
        assert isinstance(root, Root)
        try:
            root.verify_delegate(Root.type, md.signed_bytes, md.signatures)
        except UnsignedMetadataError as e:
            raise StoreError(f"{self.store.uri}/{metadata_key('root')}: {e}") from None


@contextlib.contextmanager
def _quiet_payload() -> Iterator[None]:
    """``tuf.api._payload`` at WARNING: its "No signature for keyid" INFO reads like an error."""
    logger = logging.getLogger("tuf.api._payload")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
