"""Signing keys and the initial root metadata of a fleet's TUF repository.

``keygen`` makes one ed25519 key per top-level TUF role and the signed ``root.json`` v1
that devices are provisioned with (their trust anchor)::

    keys = keygen(Path("ota-keys"))  # {root,targets,snapshot,timestamp}.pem, 1.root.json, root.json
    signers = load_signers(Path("ota-keys"), ["targets", "snapshot", "timestamp"])

Key roles (TUF spec, "roles"): ``root`` signs which keys may sign each role and should be
kept offline (needed only for rotations); ``targets`` (what to install), ``snapshot`` and
``timestamp`` (freshness) are online keys used by every publish. Private keys are PEM
(PKCS#8, unencrypted) files of mode 0600; the public halves live in root.json only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import Metadata, Root
from tuf.api.serialization.json import JSONSerializer

from detpipe.errors import InvalidInput
from detpipe.io import write_bytes

ROLES = ("root", "targets", "snapshot", "timestamp")
ONLINE_ROLES = ("targets", "snapshot", "timestamp")
ROOT_EXPIRY = timedelta(days=365)  # root changes rarely and is signed offline
SPEC_VERSION = "1.0.31"


def key_path(keys_dir: Path, role: str) -> Path:
    """``DIR/<role>.pem``."""
    return keys_dir / f"{role}.pem"


def write_private_key(path: Path, signer: CryptoSigner) -> None:
    """Write ``signer``'s private key as PEM, mode 0600 from the first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = os.umask(0o077)
    try:
        write_bytes(path, signer.private_bytes)
    finally:
        os.umask(old)
    path.chmod(0o600)


def load_signer(keys_dir: Path, role: str) -> CryptoSigner:
    """The signer of ``role`` from ``DIR/<role>.pem``.

    Raises:
        InvalidInput: the file is missing, unreadable or not a private key.
    """
    path = key_path(keys_dir, role)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(
            f"{path}: no such key file (make keys with: detpipe edge keygen --out DIR)"
        ) from None
    except OSError as e:
        raise InvalidInput(f"{path}: cannot read key: {e.strerror}") from None
    try:
        return CryptoSigner(load_pem_private_key(data, password=None))
    except (ValueError, TypeError) as e:
        raise InvalidInput(f"{path}: not an unencrypted PEM private key ({e})") from None


def load_signers(keys_dir: Path, roles: Iterable[str]) -> dict[str, list[Signer]]:
    """Signers for each of ``roles`` that has a key file in ``keys_dir``."""
    return {role: [load_signer(keys_dir, role)] for role in roles if key_path(keys_dir, role).is_file()}


def serialize(md: Metadata) -> bytes:
    """Canonical-ish, human-readable JSON bytes of signed metadata."""
    return md.to_bytes(JSONSerializer(compact=False))


def keygen(out: Path, *, expires: timedelta = ROOT_EXPIRY, overwrite: bool = False) -> Path:
    """Create the four role keys and root v1 (consistent snapshots on).

    Root v1 is written as ``out/1.root.json`` (the first link of the chain that rotations
    extend, :mod:`detpipe.edge.rootchain`) and as ``out/root.json`` (the newest root).

    Args:
        out: the keys directory (created; it should live on an encrypted volume or a
            Secret, the root key offline).
        expires: validity of root v1.
        overwrite: replace existing keys (a new fleet: devices must be re-provisioned).

    Returns:
        The path of ``root.json``.

    Raises:
        InvalidInput: keys already exist and ``overwrite`` is false.
    """
    existing = [key_path(out, r) for r in ROLES if key_path(out, r).exists()]
    if existing and not overwrite:
        raise InvalidInput(
            f"{existing[0]}: keys already exist; a new root would orphan every provisioned device "
            "(rotate keys with 'detpipe edge rotate', or pass --overwrite for a new fleet)"
        )
    signers = {role: CryptoSigner.generate_ed25519() for role in ROLES}
    root = Root(
        version=1,
        spec_version=SPEC_VERSION,
        expires=datetime.now(UTC).replace(microsecond=0) + expires,
        consistent_snapshot=True,
    )
    for role, signer in signers.items():
        root.add_key(signer.public_key, role)
    md = Metadata(root)
    md.sign(signers["root"])
    for role, signer in signers.items():
        write_private_key(key_path(out, role), signer)
    for stale in out.glob("*.root.json"):  # another fleet's chain (--overwrite)
        stale.unlink()
    write_bytes(out / "1.root.json", serialize(md))
    return write_bytes(out / "root.json", serialize(md))
