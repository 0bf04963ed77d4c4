"""Release signing keys: EC P-256, PEM, the private half 0600 from its first byte."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from detpipe.errors import InvalidInput
from detpipe.io import write_bytes

log = logging.getLogger(__name__)

PRIVATE_KEY = "release.key"
PUBLIC_KEY = "release.pub"


def keygen(out: Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``out/release.key`` (mode 0600) and ``out/release.pub``; returns both paths.

    Raises:
        InvalidInput: a key already exists there and ``overwrite`` is false (a new key would
            orphan every server and publisher that trusts the old one).
    """
    key_file, pub_file = out / PRIVATE_KEY, out / PUBLIC_KEY
    if not overwrite and (key_file.exists() or pub_file.exists()):
        raise InvalidInput(
            f"{key_file if key_file.exists() else pub_file}: a release key exists already; servers "
            "trust its public half (pass --overwrite to replace it)"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    out.mkdir(parents=True, exist_ok=True)
    old = os.umask(0o077)
    try:
        write_bytes(key_file, private)
    finally:
        os.umask(old)
    key_file.chmod(0o600)
    write_bytes(pub_file, public)
    return key_file, pub_file


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """The EC public key in ``path`` (PEM).

    Raises:
        InvalidInput: no such file, not a PEM public key, or not an elliptic-curve key.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise InvalidInput(f"{path}: cannot read the release public key: {e.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise InvalidInput(f"{path}: not a PEM public key (make one with: detpipe release keygen)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InvalidInput(f"{path}: not an elliptic-curve public key (detpipe release keygen makes P-256)")
    return key


def check_private_key(path: Path) -> Path:
    """``path`` if it holds an unencrypted EC private key (a warning when others may read it).

    Raises:
        InvalidInput: missing, unreadable, or not an EC private key.
    """
    try:
        mode = Path(path).stat().st_mode
        data = Path(path).read_bytes()
    except OSError as e:
        raise InvalidInput(f"{path}: cannot read the release signing key: {e.strerror}") from None
    if mode & 0o077:  # a warning, not a refusal: a mounted k8s Secret is often 0644 inside its pod
        log.warning("%s: the signing key is readable by others (mode %o); chmod 600 it", path, mode & 0o777)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise InvalidInput(f"{path}: not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidInput(f"{path}: not an elliptic-curve key (detpipe release keygen makes P-256)")
    return Path(path)


def public_key_id(path: Path) -> str:
    """The key's id as model-signing's bundles name it (``publicKey.hint``): sha256 of the PEM key, hex."""
    pem = load_public_key(path).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(pem).hexdigest()
