"""The device side of TUF: refresh verified metadata with ``tuf.ngclient.Updater``.

Every cycle starts here: root (following rotations), timestamp, snapshot and targets are
downloaded through :class:`~detpipe.edge.fetcher.OtaFetcher` and verified against the
provisioned root (``--trust``): signatures and thresholds, versions never going back,
expiry, lengths and hashes. Only then are targets listed::

    repo = refresh(store_uri="s3://detpipe", trust=Path("/etc/detpipe/root.json"),
                   cache=Path("/var/lib/detpipe-edge/tuf"), fetcher=OtaFetcher())
    for release in repo.releases: ...
    info = repo.target_info(release.path)      # a TargetFile from the verified set

TUF failures become one-line :class:`~detpipe.errors.StoreError` reasons (:func:`describe_tuf`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.ngclient import Updater, UpdaterConfig

from detpipe.edge.fetcher import OtaFetcher
from detpipe.edge.layout import METADATA, target_key
from detpipe.edge.targets import Release
from detpipe.errors import InvalidInput, StoreError
from detpipe.store.uri import parse_uri

# Bounds on what the updater downloads for metadata (endless-data attack); targets are
# bounded by their signed length.
METADATA_MAX = 4 << 20

_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (
        tuf_errors.UnsignedMetadataError,
        "metadata signature check failed (tampered, or signed by an untrusted key)",
    ),
    (tuf_errors.BadVersionNumberError, "older metadata than already trusted was served (rollback attack)"),
    (tuf_errors.EqualVersionNumberError, "metadata version replayed with different content"),
    (tuf_errors.ExpiredMetadataError, "metadata has expired (stale repository or freeze attack)"),
    (tuf_errors.LengthOrHashMismatchError, "length or hash does not match the signed metadata (tampered)"),
    (tuf_errors.DownloadLengthMismatchError, "more data than the signed length (endless-data attack)"),
    (tuf_errors.RepositoryError, "repository metadata failed verification"),
    (tuf_errors.DownloadHTTPError, "missing from the store"),
    (tuf_errors.DownloadError, "store unreachable"),
)


def describe_tuf(e: BaseException) -> str:
    """A one-line reason for a python-tuf exception."""
    for cls, reason in _REASONS:
        if isinstance(e, cls):
            detail = str(e).splitlines()[0] if str(e) else type(e).__name__
            if isinstance(e, tuf_errors.DownloadError) and e.__cause__ is not None:
                detail = f"{detail}: {e.__cause__}"
            return f"{reason}: {detail}"
    return f"{type(e).__name__}: {e}"


class StoreUnreachable(StoreError):
    """The store could not be reached: the agent backs off and tries again."""


def store_error(e: tuf_errors.RepositoryError | tuf_errors.DownloadError, what: str = "") -> StoreError:
    """The one classification of python-tuf's failures: :class:`StoreUnreachable` for a transfer
    that did not get through (the next cycle tries again, a partial download is resumed), a
    plain :class:`~detpipe.errors.StoreError` for everything the store answered wrongly
    (verification failed, a file missing, more bytes than signed). ``what`` prefixes the reason.
    """
    reason = f"{what}: {describe_tuf(e)}" if what else describe_tuf(e)
    transfer = isinstance(e, tuf_errors.DownloadError) and not isinstance(
        e, tuf_errors.DownloadLengthMismatchError | tuf_errors.DownloadHTTPError
    )
    return StoreUnreachable(reason) if transfer else StoreError(reason)


def repo_urls(store_uri: str) -> tuple[str, str]:
    """``(metadata URL, store root URL)`` for a store URI (s3://, a path, file://, https://)."""
    if store_uri.startswith(("http://", "https://")):
        root = store_uri.rstrip("/")
    else:
        loc = parse_uri(store_uri)
        root = str(loc).rstrip("/")
    return f"{root}/{METADATA}/", root


@dataclass
class TrustedRepo:
    """Verified repository state for one cycle."""

    updater: Updater
    root_url: str
    releases: list[Release]

    def target_info(self, path: str) -> TargetFile:
        """The verified :class:`TargetFile` of ``path``."""
        info = self.updater.get_targetinfo(path)
        if info is None:
            raise StoreError(f"target {path} is not in the verified targets metadata")
        return info

    def target_url(self, release: Release) -> str:
        """Where the artifact is: ``<store>/ota/targets/<class>/<version>/<sha256>.<file>``."""
        return f"{self.root_url}/{target_key(release.path, release.sha256)}"


def load_trust(path: Path) -> bytes:
    """The provisioned root metadata (``--trust``), checked to be TUF root metadata.

    Raises:
        InvalidInput: the file is missing, unreadable or not root metadata.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidInput(f"{path}: cannot read the trusted root ({e.strerror})") from None
    try:
        md = Metadata.from_bytes(data)
    except Exception as e:  # DeserializationError and the like
        raise InvalidInput(f"{path}: not TUF root metadata ({e})") from None
    if md.signed.type != "root":
        raise InvalidInput(f"{path}: {md.signed.type} metadata, expected the root (root.json)")
    return data


def refresh(store_uri: str, bootstrap: bytes, cache: Path, fetcher: OtaFetcher) -> TrustedRepo:
    """Run TUF's client workflow against the store; list the verified targets.

    Args:
        store_uri: the store (s3://, a directory, file://, https://).
        bootstrap: the provisioned root metadata (:func:`load_trust`).
        cache: the device's TUF metadata directory (newer roots are kept there).
        fetcher: the transport.

    Raises:
        StoreError: verification failed (reason from :func:`describe_tuf`) or the store is
            unreachable (:class:`StoreUnreachable`).
    """
    metadata_url, root_url = repo_urls(store_uri)
    cache.mkdir(parents=True, exist_ok=True)
    config = UpdaterConfig(
        root_max_length=METADATA_MAX,
        timestamp_max_length=1 << 16,
        snapshot_max_length=METADATA_MAX,
        targets_max_length=METADATA_MAX,
    )
    try:
        updater = Updater(str(cache), metadata_url, fetcher=fetcher, config=config, bootstrap=bootstrap)
        updater.refresh()
    except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as e:
        raise store_error(e) from None
    # the updater persists targets.json only after verifying it: list what it trusts
    targets = Metadata[Targets].from_file(str(cache / "targets.json")).signed
    releases = []
    for target in targets.targets.values():
        try:
            releases.append(Release.from_target(target))
        except InvalidInput:
            continue  # not a detpipe target (another tool's file in the same repository)
    return TrustedRepo(updater, root_url, releases)
