"""Publish and fetch model releases (``models/<name>/<version>/`` in a store).

``publish`` uploads every file with its sha256 and writes ``manifest.json`` *last*, so a
reader either sees a complete release or none: a version without ``manifest.json`` does
not exist for :func:`list_releases`, :func:`latest_version` or :func:`fetch_release`.
``fetch_release`` checks every object against the manifest and refuses a release that does
not match::

    from detpipe.store import Lineage, fetch_release, latest_version, open_store, publish

    store = open_store("s3://detpipe")
    publish(store, "yolo11n-coco", "1.0.0",
            {"weights.pt": "runs/train/weights/best.pt", "model.onnx": "runs/export/model.onnx",
             "engines/orin-nano/model.engine": "runs/export/model.engine"},
            metrics={"mAP50-95": 0.372},
            lineage=Lineage.for_subset("subsets/train2017_10_p.txt", parent_weights="yolo11n.yaml"))
    version = latest_version(store, "yolo11n-coco")
    fetch_release(release_uri(store, "yolo11n-coco", version), "/opt/models/current")

Signing (OTA): ``manifest.sig`` is reserved. ``publish(..., signer=...)`` takes any object
with ``sign(manifest_bytes) -> bytes`` and stores its output as ``manifest.sig`` *before*
``manifest.json``; ``fetch_release(..., verifier=...)`` calls
``verify(manifest_bytes, signature_bytes)`` (which raises to refuse) before downloading
anything. detpipe does not sign yet: the edge step (``detpipe edge``) will plug in here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from detpipe.errors import InvalidInput, NotFound, StoreError
from detpipe.io import atomic_dir, sha256_file, write_bytes
from detpipe.store.base import Store
from detpipe.store.factory import open_store
from detpipe.store.manifest import (
    MANIFEST,
    SIGNATURE,
    Lineage,
    Manifest,
    ManifestEntry,
    check_json_values,
    check_relpath,
    code_version,
    release_prefix,
    version_key,
)
from detpipe.store.uri import check_key

logger = logging.getLogger(__name__)


class ManifestSigner(Protocol):
    """Hook for the OTA signing step: returns the detached signature of the manifest bytes."""

    def sign(self, manifest: bytes) -> bytes:
        """Sign ``manifest`` (the exact bytes of ``manifest.json``)."""
        ...


class ManifestVerifier(Protocol):
    """Checks a release's signature: raises (:class:`~detpipe.errors.SignatureError`) to refuse it."""

    def verify(self, manifest: bytes, signature: bytes | None) -> None:
        """Check ``signature`` (None: the release has no ``manifest.sig``) over ``manifest``."""
        ...


class ObjectMismatch(StoreError):
    """An object of a release is missing, or its size or sha256 is not the manifest's."""


def _as_store(store: Store | str | Path) -> Store:
    return open_store(store) if isinstance(store, str | Path) else store


def release_uri(store: Store | str, name: str, version: str) -> str:
    """The URI of a release: ``<store root>/models/<name>/<version>``."""
    return f"{_as_store(store).uri}/{release_prefix(name, version)}"


def publish(
    store: Store | str,
    name: str,
    version: str,
    files: Mapping[str, str | Path],
    *,
    metrics: Mapping[str, Any] | None = None,
    lineage: Lineage | None = None,
    force: bool = False,
    signer: ManifestSigner | None = None,
) -> Manifest:
    """Upload a release; ``manifest.json`` goes last, so readers never see half of one.

    Args:
        store: the store (or its URI).
        name: model name (``[A-Za-z0-9._-]``).
        version: version (``[A-Za-z0-9._+-]``), e.g. ``1.0.0``.
        files: release-relative path -> local file, following the layout in
            :mod:`detpipe.store.manifest`.
        metrics: evaluation metrics (JSON values); also stored as ``metrics.json`` unless
            ``files`` has one.
        lineage: dataset subset hash, training config, parent weights; ``code_version`` is
            filled in when missing.
        force: replace an existing release of this version. Its manifest is removed first,
            so readers see no release (rather than a mix) until the new one is complete.
        signer: optional OTA signing hook (see the module docstring).

    Returns:
        The manifest that was written.

    Raises:
        InvalidInput: bad name/version/paths, a missing local file, non-JSON metrics, or the
            version already exists and ``force`` is false.
        StoreError: the upload failed (after retries); no manifest is written then.
    """
    store = _as_store(store)
    prefix = release_prefix(name, version)
    metrics = dict(metrics or {})
    check_json_values("metrics", metrics)
    lineage = lineage or Lineage()
    if lineage.code_version is None:
        lineage = replace(lineage, code_version=code_version())
    lineage_doc = lineage.to_dict()
    check_json_values("lineage", lineage_doc)

    # Check and hash everything locally before the store is touched.
    entries: dict[str, tuple[Path, ManifestEntry]] = {}
    for relpath, local in sorted(files.items()):
        check_relpath(relpath)
        path = Path(local)
        if not path.is_file():
            raise InvalidInput(f"{relpath}: {path} is not a file")
        entries[relpath] = (path, ManifestEntry(relpath, path.stat().st_size, sha256_file(path)))
    metrics_blob = None
    if metrics and "metrics.json" not in entries:
        metrics_blob = (json.dumps(metrics, indent=2, allow_nan=False) + "\n").encode("utf-8")
    if not entries and metrics_blob is None:
        raise InvalidInput(f"release {name} {version}: nothing to publish (no files, no metrics)")

    rel = store.child(prefix)
    if rel.exists(MANIFEST):
        if not force:
            raise InvalidInput(
                f"release {name} {version} already exists at {rel.uri}; pass force=True to replace it"
            )
        logger.warning("replacing release %s %s at %s", name, version, rel.uri)
        rel.delete(MANIFEST)  # the old release disappears for readers before anything changes
    rel.delete(SIGNATURE)

    objects = []
    for relpath, (path, entry) in entries.items():
        logger.info("uploading %s (%d bytes) -> %s/%s", path, entry.size, rel.uri, relpath)
        rel.put_file(relpath, path, sha256=entry.sha256)
        objects.append(entry)
    if metrics_blob is not None:
        info = rel.put_bytes("metrics.json", metrics_blob, content_type="application/json")
        objects.append(ManifestEntry("metrics.json", info.size, info.sha256 or ""))
    objects.sort(key=lambda e: e.path)

    # Objects of a replaced release, or left by an earlier publish that failed, that this one lacks.
    keep = {e.path for e in objects}
    for stale in rel.list(""):
        if stale not in keep and stale != MANIFEST:
            rel.delete(stale)

    manifest = Manifest(
        name=name,
        version=version,
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        objects=tuple(objects),
        metrics=metrics,
        lineage=lineage_doc,
    )
    blob = manifest.to_json()
    if signer is not None:
        rel.put_bytes(SIGNATURE, signer.sign(blob), content_type="application/octet-stream")
    rel.put_bytes(MANIFEST, blob, content_type="application/json")
    logger.info("published %s %s: %d objects at %s", name, version, len(objects), rel.uri)
    return manifest


def read_manifest(release: Store | str, *, verifier: ManifestVerifier | None = None) -> Manifest:
    """The manifest of the release rooted at ``release`` (a store or a release URI).

    With ``verifier``, ``manifest.sig`` is checked over the manifest's bytes before the
    manifest is parsed (a missing signature is passed as ``None``: the verifier refuses it).

    Raises:
        NotFound: no ``manifest.json``: the release does not exist or its publish did not finish.
        StoreError: the manifest is malformed.
        SignatureError: from ``verifier``: unsigned, or signed by another key, or altered.
    """
    rel = _as_store(release)
    blob = _manifest_bytes(rel)
    if verifier is not None:
        verifier.verify(blob, _signature_bytes(rel))
    return Manifest.from_json(blob, f"{rel.uri}/{MANIFEST}")


def _signature_bytes(rel: Store) -> bytes | None:
    try:
        return rel.get_bytes(SIGNATURE)
    except NotFound:
        return None


def _manifest_bytes(rel: Store) -> bytes:
    try:
        return rel.get_bytes(MANIFEST)
    except NotFound:
        raise NotFound(
            f"no release at {rel.uri}: manifest.json is missing "
            "(not published, or its publish did not finish)"
        ) from None


def fetch_release(
    release: Store | str,
    dest: str | Path,
    *,
    overwrite: bool = False,
    verifier: ManifestVerifier | None = None,
    only: Collection[str] | None = None,
) -> Manifest:
    """Download a verified release into ``dest`` (all or nothing).

    Every object listed in the manifest (or only those named in ``only``) is downloaded and
    its size and sha256 compared with the manifest; ``manifest.json`` (and ``manifest.sig``
    when present) are copied too. ``dest`` appears only when everything matched.

    Args:
        release: the release URI (``s3://bucket/models/<name>/<version>``, a path) or a store
            rooted at the release.
        dest: the directory to create.
        overwrite: replace an existing ``dest`` (atomically, after the download succeeded).
        verifier: optional OTA signature check (see the module docstring).
        only: release paths to fetch (a server needs its model file, not the training
            weights); None fetches every object.

    Returns:
        The verified manifest.

    Raises:
        NotFound: no manifest at ``release``, or a path in ``only`` that it does not list.
        StoreError: an object is missing, has the wrong size or sha256, or the manifest does
            not belong to this location.
        InvalidInput: ``dest`` exists and ``overwrite`` is false.
    """
    rel = _as_store(release)
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise InvalidInput(f"{dest}: already exists (pass overwrite=True to replace it)")
    blob = _manifest_bytes(rel)
    signature = _signature_bytes(rel)
    if verifier is not None:  # before the manifest is even parsed, let alone anything downloaded
        verifier.verify(blob, signature)
    manifest = Manifest.from_json(blob, f"{rel.uri}/{MANIFEST}")
    tail = rel.uri.rstrip("/").rsplit("/", 3)
    if len(tail) == 4 and tail[1] == "models" and (tail[2], tail[3]) != (manifest.name, manifest.version):
        raise StoreError(
            f"{rel.uri}: manifest is for {manifest.name} {manifest.version}, "
            f"not {tail[2]} {tail[3]}; refusing"
        )

    entries = manifest.objects
    if only is not None:
        wanted, listed = set(only), {e.path for e in entries}
        if missing := sorted(wanted - listed):
            raise NotFound(
                f"{rel.uri}: the release has no {', '.join(missing)} (it has: {', '.join(sorted(listed))})"
            )
        entries = [e for e in entries if e.path in wanted]
    with atomic_dir(dest, overwrite=overwrite) as tmp:
        for entry in entries:
            try:
                got = rel.get_file(check_key(entry.path), tmp / entry.path)
            except NotFound:
                raise ObjectMismatch(
                    f"{rel.uri}/{entry.path}: listed in the manifest but missing; refusing"
                ) from None
            if got.sha256 != entry.sha256 or got.size != entry.size:
                raise ObjectMismatch(
                    f"{rel.uri}/{entry.path}: sha256 {got.sha256} ({got.size} bytes) does not match the "
                    f"manifest ({entry.sha256}, {entry.size} bytes): corrupt or tampered; refusing"
                )
        write_bytes(tmp / MANIFEST, blob)
        if signature is not None:
            write_bytes(tmp / SIGNATURE, signature)
    logger.info("fetched %s %s (%d objects) into %s", manifest.name, manifest.version, len(entries), dest)
    return manifest


def list_releases(store: Store | str, name: str) -> list[str]:
    """Versions of ``name`` that have a manifest, oldest first (see :func:`version_key`)."""
    store = _as_store(store)
    prefix = release_prefix(name, "0").rsplit("/", 1)[0] + "/"
    versions = set()
    for key in store.list(prefix):
        rest = key[len(prefix) :].split("/")
        if len(rest) == 2 and rest[1] == MANIFEST:
            versions.add(rest[0])
    return sorted(versions, key=version_key)


def latest_version(store: Store | str, name: str) -> str:
    """The highest published version of ``name``.

    Raises:
        NotFound: ``name`` has no complete release.
    """
    store = _as_store(store)
    versions = list_releases(store, name)
    if not versions:
        raise NotFound(f"no releases of {name!r} in {store.uri}")
    return versions[-1]
