"""Publish OTA targets: upload an artifact, sign new targets/snapshot/timestamp metadata.

::

    publish_target(store, PublishConfig(device_class="cpu", version="2", artifact=Path("model.onnx"),
                                        fmt="onnx", keys=Path("ota-keys"), rollout_pct=10))
    set_rollout(store, keys, "cpu", "2", rollout_pct=50)        # widen the staged rollout
    rollback_to(store, keys, "cpu", "1")                          # signed: the fleet goes back to 1

Artifacts go to ``ota/targets/<class>/<version>/<sha256>.<file>`` (the TUF consistent-snapshot
name), uploaded before any metadata names them. A release from the store
(:func:`artifact_from_release`) gives its engine for the class when it has one, else its
ONNX model (the device builds the engine itself). Its ``manifest.sig`` is checked first
(:class:`detpipe.signing.ReleaseVerifier`), before anything is downloaded, let alone signed
for the fleet: TUF would otherwise vouch for whatever the store held::

    artifact, fmt = artifact_from_release(uri, "cpu", work, verifier=ReleaseVerifier(Path("release.pub")))
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from tuf.api.metadata import TargetFile

from detpipe.edge.repository import StoreRepository
from detpipe.edge.targets import (
    FORMATS,
    Release,
    check_device_class,
    check_group,
    check_pct,
    check_version,
    target_key,
    target_path,
)
from detpipe.errors import InvalidInput, NotFound
from detpipe.export.sidecar import read_sidecar
from detpipe.io import sha256_file
from detpipe.store import Store, fetch_release, read_manifest
from detpipe.store.release import ManifestVerifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishConfig:
    """One ``detpipe edge publish``.

    Attributes:
        device_class: devices that may install it (``cpu``, ``orin-sm87-trt10.3.0``).
        version: the model version (ordered like release versions: ``1 < 2 < 10``).
        artifact: the engine or ONNX file.
        fmt: ``engine`` (a sidecar must sit beside it) or ``onnx``.
        keys: the keys directory (online keys; ``root.json`` for the first publish).
        rollout_pct: share of the class's devices that take it (staged rollout).
        groups: device groups that take it regardless of the percentage.
        expires: validity of the new targets/snapshot/timestamp metadata.
    """

    device_class: str
    version: str
    artifact: Path
    fmt: str
    keys: Path
    rollout_pct: int = 100
    groups: tuple[str, ...] = ()
    expires: timedelta = timedelta(days=7)
    sidecar: dict[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        check_device_class(self.device_class)
        check_version(self.version)
        check_pct(self.rollout_pct)
        for g in self.groups:
            check_group(g)
        if self.fmt not in FORMATS:
            raise InvalidInput(f"format {self.fmt!r}: one of {', '.join(FORMATS)}")
        if not self.artifact.is_file():
            raise InvalidInput(f"{self.artifact}: no such file")


def publish_target(store: Store, cfg: PublishConfig) -> Release:
    """Upload ``cfg.artifact`` and sign it into the repository; returns the signed description."""
    sidecar = cfg.sidecar
    if cfg.fmt == "engine" and sidecar is None:
        sidecar = read_sidecar(cfg.artifact)  # no sidecar, no engine target
    path = target_path(cfg.device_class, cfg.version, cfg.fmt)
    sha = sha256_file(cfg.artifact)
    release = Release(
        path=path,
        version=cfg.version,
        device_class=cfg.device_class,
        format=cfg.fmt,
        sha256=sha,
        length=cfg.artifact.stat().st_size,
        rollout_pct=cfg.rollout_pct,
        groups=cfg.groups,
        sidecar=sidecar,
    )
    repo = StoreRepository(store, cfg.keys, cfg.expires)
    repo.require_signers()
    repo.verify_root_signed()
    store.put_file(target_key(path, sha), cfg.artifact, sha256=sha)
    with repo.edit_targets() as targets:
        targets.targets[path] = TargetFile(
            release.length, {"sha256": sha}, path, unrecognized_fields={"custom": release.custom()}
        )
    version = repo.publish_metadata()
    log.info(
        "published %s (%d bytes, rollout %d%%), timestamp v%d", path, release.length, cfg.rollout_pct, version
    )
    return release


def _releases(repo: StoreRepository, device_class: str) -> dict[str, tuple[TargetFile, Release]]:
    out = {}
    for path, target in repo.targets().targets.items():
        r = Release.from_target(target)
        if r.device_class == device_class:
            out[path] = (target, r)
    return out


def _find(repo: StoreRepository, device_class: str, version: str) -> tuple[str, TargetFile, Release]:
    for path, (target, r) in _releases(repo, device_class).items():
        if r.version == version:
            return path, target, r
    known = sorted({r.version for _, r in _releases(repo, device_class).values()})
    raise NotFound(
        f"no published version {version} for device class {device_class} (published: {known or 'none'})"
    )


def set_rollout(
    store: Store,
    keys: Path,
    device_class: str,
    version: str,
    rollout_pct: int | None = None,
    groups: tuple[str, ...] | None = None,
    expires: timedelta = timedelta(days=7),
) -> Release:
    """Change a published target's rollout percentage and/or groups (re-signs, no upload)."""
    repo = StoreRepository(store, keys, expires)
    repo.require_signers()
    path, _, release = _find(repo, device_class, version)
    release = replace(
        release,
        rollout_pct=check_pct(rollout_pct) if rollout_pct is not None else release.rollout_pct,
        groups=tuple(check_group(g) for g in groups) if groups is not None else release.groups,
    )
    with repo.edit_targets() as targets:
        targets.targets[path].unrecognized_fields["custom"] = release.custom()
    repo.publish_metadata()
    return release


def rollback_to(
    store: Store, keys: Path, device_class: str, version: str, expires: timedelta = timedelta(days=7)
) -> Release:
    """Signed rollback: drop the class's targets newer than ``version`` and mark it a rollback.

    The dropped artifacts stay in the store (a later publish may re-sign them).
    """
    from detpipe.store import version_key

    repo = StoreRepository(store, keys, expires)
    repo.require_signers()
    path, _, release = _find(repo, device_class, version)
    newer = [
        p
        for p, (_, r) in _releases(repo, device_class).items()
        if version_key(r.version) > version_key(version)
    ]
    release = replace(release, rollback=True, rollout_pct=100)
    with repo.edit_targets() as targets:
        for p in newer:
            del targets.targets[p]
        targets.targets[path].unrecognized_fields["custom"] = release.custom()
    repo.publish_metadata()
    log.info("rollback of %s to %s: withdrew %s", device_class, version, ", ".join(newer) or "nothing")
    return release


def artifact_from_release(
    release_uri: str,
    device_class: str,
    work: Path,
    *,
    verifier: ManifestVerifier | None = None,
    allow_unsigned: bool = False,
) -> tuple[Path, str]:
    """Download the file a device class needs from a signed release; returns (path, format).

    The engine ``engines/<class>/model.engine`` (with its sidecar) when the release has one,
    else ``model.onnx`` (built into an engine on the device, or served as ONNX on CPU).

    Args:
        release_uri: ``s3://bucket/models/NAME/VERSION`` or a release directory.
        device_class: the class the file is for.
        work: where the download goes.
        verifier: checks ``manifest.sig`` over ``manifest.json`` before anything is read
            from the manifest or downloaded (each object is then checked against it).
        allow_unsigned: no signature check (local development only; logged as a warning).

    Raises:
        InvalidInput: neither ``verifier`` nor ``allow_unsigned``, or no file for the class.
        SignatureError: the release is unsigned, signed by another key, or altered.
    """
    if verifier is None and not allow_unsigned:
        raise InvalidInput(
            f"{release_uri}: pass --release-key PUB (or DETPIPE_RELEASE_KEY) to check the release's "
            "signature before it is signed for the fleet, or --allow-unsigned (local development only)"
        )
    if verifier is None:
        log.warning(
            "--allow-unsigned: %s goes to the fleet WITHOUT a signature check (local development only)",
            release_uri,
        )
    manifest = read_manifest(release_uri, verifier=verifier)
    paths = {o.path for o in manifest.objects}
    engine = f"engines/{device_class}/model.engine"
    if engine in paths:
        only, fmt, rel = [engine, engine + ".json"], "engine", engine
    elif "model.onnx" in paths:
        only, fmt, rel = ["model.onnx"], "onnx", "model.onnx"
    else:
        raise InvalidInput(f"{release_uri}: neither {engine} nor model.onnx in the release")
    dest = Path(tempfile.mkdtemp(prefix="edge-release-", dir=work))
    fetch_release(release_uri, dest / "release", only=[p for p in only if p in paths], verifier=verifier)
    return dest / "release" / rel, fmt
