"""Publish OTA targets: upload an artifact, sign new targets/snapshot/timestamp metadata.

::

    publish_target(store, PublishConfig(device_class="cpu", version="2", artifact=Path("model.onnx"),
                                        fmt="onnx", keys=Path("ota-keys"), rollout_pct=10))
    set_rollout(store, keys, "cpu", "2", rollout_pct=50)        # widen the staged rollout
    rollback_to(store, keys, "cpu", "1")                          # signed: the fleet goes back to 1

A version may carry several TensorRT engines, one per TensorRT version, compute capability,
DLA core and precision (each read with its sidecar), and the ONNX model devices fall back to;
each device takes the one that fits it (:func:`detpipe.edge.engine.pick_target`)::

    publish_version(store, PublishConfig("orin", "3", Path("jp6/model.fp16.engine"), "engine", keys,
                                         extra=(Artifact(Path("jp5/model.fp16.engine"), "engine"),
                                                Artifact(Path("model.onnx"), "onnx"))))

Publishing more files for a version that is out already adds them (an engine for a TensorRT
version the fleet has just moved to); a file whose target exists with other bytes is refused.
The version's rollout (percentage, groups, rollback) is the same on all of its targets.

Artifacts go to ``ota/targets/<class>/<version>/[engines/<variant>/]<sha256>.<file>`` (the TUF
consistent-snapshot name), uploaded before any metadata names them. A release from the store
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

from detpipe.edge.layout import target_key
from detpipe.edge.repository import StoreRepository
from detpipe.edge.targets import (
    FORMATS,
    Release,
    check_device_class,
    check_group,
    check_pct,
    check_version,
    engine_variant,
    target_path,
)
from detpipe.errors import InvalidInput, NotFound
from detpipe.export.sidecar import read_sidecar, sidecar_path
from detpipe.io import sha256_file
from detpipe.store import Store, fetch_release, read_manifest
from detpipe.store.release import ManifestVerifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Artifact:
    """One file of a version: an engine (with its sidecar) or the ONNX model.

    An engine's sidecar (``FILE.json`` beside it unless given) names its target,
    ``<class>/<version>/engines/<variant>/model.engine`` (:func:`engine_variant`); a sha256 in
    the sidecar must be the file's.

    Raises:
        InvalidInput: no such file, an unknown format, no or a bad sidecar.
    """

    path: Path
    fmt: str
    sidecar: dict[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise InvalidInput(f"format {self.fmt!r}: one of {', '.join(FORMATS)}")
        if not self.path.is_file():
            raise InvalidInput(f"{self.path}: no such file")
        if self.fmt != "engine":
            return
        sidecar = self.sidecar
        if sidecar is None:
            if not sidecar_path(self.path).is_file():
                raise InvalidInput(
                    f"--engine {self.path}: no sidecar {sidecar_path(self.path).name} beside it (detpipe "
                    "export writes one: TensorRT version, GPU, precision); no sidecar, no engine target"
                )
            sidecar = read_sidecar(self.path)
        if "sha256" in sidecar and sidecar["sha256"] != sha256_file(self.path):
            raise InvalidInput(
                f"--engine {self.path}: its sha256 is not its sidecar's (another engine's sidecar?)"
            )
        object.__setattr__(self, "sidecar", sidecar)
        engine_variant(sidecar)  # a bad name is refused here, before anything is uploaded

    @property
    def variant(self) -> str | None:
        """``trt10.3.0-sm87-fp16`` for an engine, None for the ONNX model."""
        return engine_variant(self.sidecar) if self.fmt == "engine" and self.sidecar is not None else None


@dataclass(frozen=True)
class PublishConfig:
    """One ``detpipe edge publish``.

    Attributes:
        device_class: devices that may install it (``cpu``, ``orin``, ``orin-sm87-trt10.3.0``).
        version: the model version (ordered like release versions: ``1 < 2 < 10``).
        artifact: the engine or ONNX file.
        fmt: ``engine`` (a sidecar must sit beside it) or ``onnx``.
        keys: the keys directory (online keys; ``root.json`` for the first publish).
        rollout_pct: share of the class's devices that take the version (staged rollout);
            None: the version's current share when it is published already, else 100.
        groups: device groups that take it regardless of the percentage (None: as published, or none).
        expires: validity of the new targets/snapshot/timestamp metadata.
        sidecar: ``artifact``'s sidecar (default: read from beside an engine).
        extra: more files of the same version signed with it: engines for other TensorRT
            versions or GPUs, the ONNX model (the fallback devices build from).
    """

    device_class: str
    version: str
    artifact: Path
    fmt: str
    keys: Path
    rollout_pct: int | None = None
    groups: tuple[str, ...] | None = None
    expires: timedelta = timedelta(days=7)
    sidecar: dict[str, Any] | None = field(default=None, compare=False)
    extra: tuple[Artifact, ...] = ()
    _primary: Artifact = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_device_class(self.device_class)
        check_version(self.version)
        if self.rollout_pct is not None:
            check_pct(self.rollout_pct)
        for g in self.groups or ():
            check_group(g)
        # the file and sidecar checks, before anything is uploaded
        object.__setattr__(self, "_primary", Artifact(self.artifact, self.fmt, self.sidecar))

    @property
    def artifacts(self) -> tuple[Artifact, ...]:
        """Every file of the version this publish signs (``artifact`` first)."""
        return (self._primary, *self.extra)


def target_paths(device_class: str, version: str, artifacts: tuple[Artifact, ...]) -> list[str]:
    """The target path of each artifact; two artifacts for one path are refused.

    Raises:
        InvalidInput: two engines with the same TensorRT version, compute capability, DLA core
            and precision, or two ONNX models.
    """
    paths: dict[str, Artifact] = {}
    for a in artifacts:
        path = target_path(device_class, version, a.fmt, a.variant)
        if path in paths:
            what = f"engines for {a.variant}" if a.variant else "ONNX models"
            raise InvalidInput(
                f"two {what} in version {version}: {paths[path].path} and {a.path} "
                "(one engine per TensorRT version, compute capability, DLA core and precision; one ONNX)"
            )
        paths[path] = a
    return list(paths)


def publish_version(store: Store, cfg: PublishConfig) -> list[Release]:
    """Upload the version's files and sign them into the repository, in one metadata version.

    Files already published for the version stay (an engine for another TensorRT version can
    be added later); the version's rollout applies to all of its targets.

    Raises:
        InvalidInput: a file's target is published already with other bytes (devices that
            installed it would never get the new ones: publish a new version), or keys problems.
    """
    artifacts = cfg.artifacts
    paths = target_paths(cfg.device_class, cfg.version, artifacts)
    repo = StoreRepository(store, cfg.keys, cfg.expires)
    repo.require_signers()
    repo.verify_root_signed()
    published = {
        path: r for path, (_, r) in _releases(repo, cfg.device_class).items() if r.version == cfg.version
    }
    first = next(iter(published.values()), None)
    rollout = cfg.rollout_pct if cfg.rollout_pct is not None else first.rollout_pct if first else 100
    groups = cfg.groups if cfg.groups is not None else first.groups if first else ()
    rollback = any(r.rollback for r in published.values())
    releases = []
    for path, a in zip(paths, artifacts, strict=True):
        sha = sha256_file(a.path)
        if path in published and published[path].sha256 != sha:
            raise InvalidInput(
                f"{path} is published already with other content (sha256 {published[path].sha256[:12]}…): "
                "publish a new version (devices that installed it would never get the new file)"
            )
        releases.append(
            Release(
                path=path,
                version=cfg.version,
                device_class=cfg.device_class,
                format=a.fmt,
                sha256=sha,
                length=a.path.stat().st_size,
                rollout_pct=rollout,
                groups=groups,
                rollback=rollback,
                sidecar=a.sidecar,
            )
        )
    for a, r in zip(artifacts, releases, strict=True):  # every file before any metadata names it
        store.put_file(target_key(r.path, r.sha256), a.path, sha256=r.sha256)
    with repo.edit_targets() as targets:
        for r in releases:
            targets.targets[r.path] = TargetFile(
                r.length, {"sha256": r.sha256}, r.path, unrecognized_fields={"custom": r.custom()}
            )
        for path, r in published.items():  # one version, one rollout
            if path not in paths:
                same = replace(r, rollout_pct=rollout, groups=groups)
                targets.targets[path].unrecognized_fields["custom"] = same.custom()
    version = repo.publish_metadata()
    log.info("published %s (rollout %d%%), timestamp v%d", ", ".join(paths), rollout, version)
    return releases


def publish_target(store: Store, cfg: PublishConfig) -> Release:
    """:func:`publish_version`; returns the signed description of ``cfg.artifact``."""
    return publish_version(store, cfg)[0]


def _releases(repo: StoreRepository, device_class: str) -> dict[str, tuple[TargetFile, Release]]:
    out = {}
    for path, target in repo.targets().targets.items():
        r = Release.from_target(target)
        if r.device_class == device_class:
            out[path] = (target, r)
    return out


def _find(repo: StoreRepository, device_class: str, version: str) -> dict[str, Release]:
    """Every target of ``version`` of the class (its engines and ONNX), by path."""
    releases = _releases(repo, device_class)
    found = {path: r for path, (_, r) in releases.items() if r.version == version}
    if found:
        return found
    known = sorted({r.version for _, r in releases.values()})
    raise NotFound(
        f"no published version {version} for device class {device_class} (published: {known or 'none'})"
    )


def version_targets(store: Store, keys: Path, device_class: str, version: str) -> dict[str, Release]:
    """Every published target of ``version`` of the class, by path (publisher side: ``keys``' root).

    Raises:
        NotFound: the version is not published for the class.
    """
    return _find(StoreRepository(store, keys), device_class, version)


def published_versions(store: Store, keys: Path, device_class: str) -> list[str]:
    """The class's published versions, oldest first (release order: ``1 < 2 < 10``)."""
    from detpipe.store import version_key

    versions = {r.version for _, r in _releases(StoreRepository(store, keys), device_class).values()}
    return sorted(versions, key=version_key)


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
    found = _find(repo, device_class, version)
    first = next(iter(found.values()))
    pct = check_pct(rollout_pct) if rollout_pct is not None else first.rollout_pct
    groups = tuple(check_group(g) for g in groups) if groups is not None else first.groups
    with repo.edit_targets() as targets:
        for path, release in found.items():  # every target of the version: one rollout
            targets.targets[path].unrecognized_fields["custom"] = replace(
                release, rollout_pct=pct, groups=groups
            ).custom()
    repo.publish_metadata()
    return replace(first, rollout_pct=pct, groups=groups)


def rollback_to(
    store: Store, keys: Path, device_class: str, version: str, expires: timedelta = timedelta(days=7)
) -> Release:
    """Signed rollback: drop the class's targets newer than ``version`` and mark it a rollback.

    The dropped artifacts stay in the store (a later publish may re-sign them).
    """
    from detpipe.store import version_key

    repo = StoreRepository(store, keys, expires)
    repo.require_signers()
    found = _find(repo, device_class, version)
    newer = [
        p
        for p, (_, r) in _releases(repo, device_class).items()
        if version_key(r.version) > version_key(version)
    ]
    with repo.edit_targets() as targets:
        for p in newer:
            del targets.targets[p]
        for path, release in found.items():  # each engine and the ONNX of the version
            targets.targets[path].unrecognized_fields["custom"] = replace(
                release, rollback=True, rollout_pct=100
            ).custom()
    repo.publish_metadata()
    log.info("rollback of %s to %s: withdrew %s", device_class, version, ", ".join(newer) or "nothing")
    return replace(next(iter(found.values())), rollback=True, rollout_pct=100)


def withdraw(
    store: Store, keys: Path, device_class: str, version: str, expires: timedelta = timedelta(days=7)
) -> list[str]:
    """Remove ``version``'s targets from the signed metadata (no device installs it any more);
    returns the withdrawn paths. Devices that installed it keep it: there is nothing signed
    to go back to (:func:`rollback_to` is the way back when an older version exists).
    """
    repo = StoreRepository(store, keys, expires)
    repo.require_signers()
    found = _find(repo, device_class, version)
    with repo.edit_targets() as targets:
        for path in found:
            del targets.targets[path]
    repo.publish_metadata()
    log.info("withdrew %s", ", ".join(found))
    return list(found)


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
