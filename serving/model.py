"""Resolve what ``--model`` names to a local, verified file; load and warm up a predictor for it.

``--model`` is one of:

- a model file: ``model.onnx``, ``model.int8.onnx``, ``model.engine`` (with its sidecar);
  name = the file stem, version = ``sha-`` + the first 12 hex digits of its sha256;
- a release: ``s3://bucket/models/<name>/<version>``, ``file://...``, or a directory with a
  ``manifest.json``; the file to serve (and an engine's sidecar, and the release's
  ``MODEL_CARD.md``) is downloaded into the cache and checked against the manifest
  (:func:`detpipe.store.fetch_release`); a cached copy is reused while its sha256 still
  matches the manifest;
- ``<store>/models/<name>``: the newest published version of ``name``.

A release is served only with a key to check its ``manifest.sig`` (``release_key``, before
anything is downloaded) or, for local development, ``allow_unsigned``. Releases are cached
in ``cache/<name>/<version>`` (each destination checked to stay inside the cache);
:func:`evict_cache` keeps the most recently used versions.

::

    model = load_model(ServerConfig(model="s3://detpipe/models/yolov8n-coco/3", format="onnx-int8"))
    model.predictor([image])
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detpipe.errors import InvalidInput, NotFound
from detpipe.io import inside, sha256_file
from detpipe.serving.config import ServerConfig

log = logging.getLogger(__name__)

_RELEASE_FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}


@dataclass(frozen=True)
class ServingModel:
    """A loaded model and where it came from.

    Attributes:
        name, version: what routes, response headers and metrics call it.
        format: the file's format label (``onnx``, ``onnx-int8``, ``engine-fp16``, ...).
        backend: the runtime running it (``onnxruntime``, ``tensorrt``, ...).
        path: the local file.
        sha256: the file's sha256.
        source: the ``--model`` value it was resolved from (for the log, never in answers).
        predictor: a :class:`detpipe.runtime.predictors.Predictor`.
        card: the release's model card (markdown, checked against its manifest); None for a
            model file or a release published without one.
    """

    name: str
    version: str
    format: str
    backend: str
    path: Path
    sha256: str
    source: str
    predictor: Any
    card: str | None = None

    @property
    def max_batch(self) -> int | None:
        """The most images one model call takes (None: any)."""
        return getattr(self.predictor, "max_batch", None) or self.predictor.batch

    def metadata(self) -> dict[str, Any]:
        """JSON-able description (the model metadata endpoint)."""
        h, w = self.predictor.imgsz
        return {
            "name": self.name,
            "version": self.version,
            "format": self.format,
            "backend": self.backend,
            "sha256": self.sha256,
            "imgsz": [h, w],
            "max_batch": self.max_batch,
            "classes": {str(k): v for k, v in sorted(self.predictor.names.items())},
        }


@dataclass(frozen=True)
class _Resolved:
    path: Path
    name: str
    version: str
    sha256: str  # checked: hashed here, or verified against the release manifest
    card: Path | None = None  # the release's MODEL_CARD.md, verified like the model


def _is_store_uri(model: str) -> bool:
    return "://" in model


def resolve(cfg: ServerConfig) -> _Resolved:
    """The local file ``cfg.model`` refers to, downloading and verifying a release if needed.

    Raises:
        NotFound: no such file, release or file in the release.
        StoreError: the store failed, or a downloaded object does not match its manifest.
        InvalidInput: a directory that is no release.
    """
    model = str(cfg.model)
    if not _is_store_uri(model):
        path = Path(model)
        if path.is_file():
            digest = sha256_file(path)
            return _Resolved(path, path.name.split(".")[0], _file_version(path, digest), digest)
        in_models = "models" in (path.parent.name, path.parent.parent.name)  # .../models/<name>[/<version>]
        if not path.exists() and not in_models:
            raise NotFound(f"{model}: no such file, directory or release URI")
        if path.is_dir() and not (path / "manifest.json").is_file() and path.parent.name != "models":
            raise InvalidInput(
                f"{model}: not a release (no manifest.json) nor a <store>/models/<name> directory"
            )
    return _resolve_release(model, cfg)


def _file_version(path: Path, digest: str) -> str:
    """A model file's version: its OTA version when it is an edge slot's model, else ``sha-<12 hex>``."""
    from detpipe.edge.slots import installed_version
    from detpipe.store.manifest import check_version

    version = installed_version(path, digest)
    if version is not None:
        try:
            return check_version(version)  # it becomes a header and a metrics label
        except InvalidInput:
            log.warning("%s: slot version %r is not a valid version label; using the hash", path, version)
    return f"sha-{digest[:12]}"


def release_version_uri(uri: str, version: str) -> str:
    """``<store>/models/<name>[/<version>]`` with ``version`` as its version.

    Raises:
        InvalidInput: ``uri`` is no release path, or ``version`` is not a version.
    """
    from detpipe.store.manifest import NotARelease, check_version, parse_release_uri

    check_version(version)
    try:
        _, _, pinned = parse_release_uri(uri)
    except NotARelease:
        raise InvalidInput(
            "a version applies to a release (<store>/models/<name>[/<version>]), not to a file"
        ) from None
    uri = uri.rstrip("/")
    return f"{uri.rpartition('/')[0] if pinned else uri}/{version}"


def _resolve_release(uri: str, cfg: ServerConfig) -> _Resolved:
    from detpipe.store import fetch_release, latest_version, read_manifest
    from detpipe.store.manifest import MODEL_CARD, NotARelease, parse_release_uri

    verifier = _verifier(cfg, uri)
    uri = uri.rstrip("/")
    try:
        store_root, name, pinned = parse_release_uri(uri)
    except NotARelease:  # a release directory outside a store's models/ layout
        pinned = ""
    if pinned is None:  # <store>/models/<name>: newest version
        version = latest_version(store_root, name)
        uri = f"{uri}/{version}"
        log.info("newest release of %s: %s", name, version)
    manifest = read_manifest(uri, verifier=verifier)
    relpath = _release_relpath(cfg, [e.path for e in manifest.objects])
    dest = inside(cfg.cache, manifest.name, manifest.version)
    local = dest / relpath
    entry = next(e for e in manifest.objects if e.path == relpath)
    card = next((e for e in manifest.objects if e.path == MODEL_CARD), None)
    cached = [(local, entry.sha256)] + ([(dest / MODEL_CARD, card.sha256)] if card else [])
    if all(path.is_file() and sha256_file(path) == digest for path, digest in cached):
        log.info("using cached %s %s from %s", manifest.name, manifest.version, dest)
        os.utime(dest)  # recently used: evict_cache keeps it
    else:
        log.info("fetching %s from %s into %s", relpath, uri, dest)
        wanted = [e.path for e in manifest.objects if e.path in (relpath, f"{relpath}.json", MODEL_CARD)]
        fetched = fetch_release(uri, dest, overwrite=True, only=wanted, verifier=verifier)
        if (fetched.name, fetched.version) != (manifest.name, manifest.version):
            raise InvalidInput(f"{uri}: the release changed while it was fetched; try again")
        entry = next(e for e in fetched.objects if e.path == relpath)  # what was checked on download
    return _Resolved(
        local, manifest.name, manifest.version, entry.sha256, dest / MODEL_CARD if card else None
    )


def _verifier(cfg: ServerConfig, uri: str) -> Any:
    """The signature check a release needs: ``release_key``'s, none with ``allow_unsigned``.

    Raises:
        InvalidInput: neither is set, or the key is no EC public key.
    """
    if cfg.release_key is not None:
        from detpipe.signing import ReleaseVerifier

        return ReleaseVerifier(Path(cfg.release_key))
    if cfg.allow_unsigned:
        log.warning("serving %s WITHOUT checking its signature (--allow-unsigned)", uri)
        return None
    raise InvalidInput(
        f"{uri} is a release: pass --release-key PUB (or DETPIPE_RELEASE_KEY) to check its signature, "
        "or --allow-unsigned (local development only)"
    )


def evict_cache(cache: Path, keep: int, protect: Iterable[Path] = ()) -> list[Path]:
    """Remove all but the ``keep`` most recently used versions of each release in ``cache``.

    A version holding a path of ``protect`` (the models being served) is never removed, nor
    anything that is a symlink or leads outside ``cache``. Returns what was removed.
    """
    if not cache.is_dir():
        return []
    held = [Path(p).resolve() for p in protect]
    removed = []
    for name in sorted(p for p in cache.iterdir() if _plain_dir(p)):
        versions = sorted((v for v in name.iterdir() if _plain_dir(v)), key=_mtime, reverse=True)
        for version in versions[keep:]:
            try:
                victim = inside(cache, name.name, version.name)
            except InvalidInput:  # a name no release has (CR/LF, ...): not ours to remove
                continue
            if any(h.is_relative_to(victim) for h in held):
                continue
            try:
                shutil.rmtree(victim)
            except OSError as e:
                log.warning("could not evict %s from the release cache: %s", victim, e)
                continue
            log.info("evicted %s %s from the release cache", name.name, version.name)
            removed.append(victim)
    return removed


def _plain_dir(path: Path) -> bool:
    return not path.name.startswith(".") and not path.is_symlink() and path.is_dir()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _release_relpath(cfg: ServerConfig, paths: list[str]) -> str:
    if cfg.format in _RELEASE_FILES:
        relpath = _RELEASE_FILES[cfg.format]
    else:
        relpath = f"engines/{cfg.device_class or _this_device_class()}/model.engine"
    if relpath not in paths:
        have = ", ".join(p for p in paths if p.endswith((".onnx", ".engine"))) or "no model files"
        raise NotFound(f"the release has no {relpath} (it has: {have}); pick another --format")
    return relpath


def _this_device_class() -> str:
    from detpipe.export.sidecar import current_device_info, device_class

    return device_class(current_device_info())


def load_model(cfg: ServerConfig) -> ServingModel:
    """Resolve ``cfg.model``, load it on ``cfg.backend`` and warm it up.

    The warm-up is :func:`detpipe.runtime.warmup.warm_up` on the grey padding image: the
    output must be finite, ``(batch, 4 + classes, anchors)``.

    Raises:
        NotFound, StoreError, InvalidInput: see :func:`resolve`; also a backend that cannot
            run the file, or a failed warm-up (``<file>: warm-up <reason>``).
        Unavailable: the backend's runtime or device is missing here.
    """
    from detpipe.runtime.backends import backends_for, model_file
    from detpipe.runtime.warmup import WarmUpFailed, load_warm

    resolved = resolve(cfg)
    file = model_file(resolved.path)
    if file.kind == "pytorch":
        raise InvalidInput(
            f"{resolved.path}: serve an exported model (.onnx or .engine), not PyTorch weights"
        )
    backends = backends_for(file, [cfg.backend])
    if not backends:
        raise InvalidInput(f"backend {cfg.backend} cannot run {resolved.path.name} ({file.kind} file)")
    try:
        predictor, _ = load_warm(file, backends[0], threads=cfg.threads)
    except WarmUpFailed as e:
        raise InvalidInput(f"{resolved.path.name}: warm-up {e}") from None
    model = ServingModel(
        name=cfg.name or resolved.name,
        version=resolved.version,
        format=file.label,
        backend=backends[0],
        path=resolved.path,
        sha256=resolved.sha256,
        source=str(cfg.model),
        predictor=predictor,
        card=None if resolved.card is None else resolved.card.read_text(encoding="utf-8", errors="replace"),
    )
    log.info(
        "loaded %s %s (%s on %s) from %s", model.name, model.version, model.format, model.backend, model.path
    )
    return model
