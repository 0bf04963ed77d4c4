"""Sign and verify releases: ``manifest.sig`` over ``manifest.json``, through model-signing.

:class:`ReleaseSigner` and :class:`ReleaseVerifier` are the ``signer``/``verifier`` hooks of
:func:`detpipe.store.publish`, :func:`~detpipe.store.read_manifest` and
:func:`~detpipe.store.fetch_release`; :func:`sign_release` / :func:`verify_release` act on a
release that exists already (a directory or a store URI)::

    publish(store, "yolov8n-coco", "1.0.0", files, signer=ReleaseSigner(Path("keys/release.key")))
    manifest = read_manifest(uri, verifier=ReleaseVerifier(Path("keys/release.pub")))
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from detpipe.errors import SignatureError
from detpipe.io import sha256_file
from detpipe.signing.keys import check_private_key, load_public_key, public_key_id
from detpipe.store.base import Store
from detpipe.store.manifest import MANIFEST, SIGNATURE, Manifest
from detpipe.store.release import ObjectMismatch, _as_store, _manifest_bytes, fetch_release

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SigstoreIdentity:
    """Who must have signed a keyless (Sigstore) signature: the certificate's identity and issuer."""

    identity: str
    oidc_issuer: str


def _staged(manifest: bytes, tmp: str) -> Path:
    """``manifest`` as ``TMP/manifest.json``: model-signing signs and checks files, not bytes."""
    path = Path(tmp) / MANIFEST
    path.write_bytes(manifest)
    return path


class ReleaseSigner:
    """Signs manifest bytes with an EC private key, or keyless through Sigstore (``key=None``).

    Raises (at construction):
        InvalidInput: the key is missing, not an EC private key, or readable by others.
    """

    def __init__(self, key: Path | None, *, sigstore: bool = False) -> None:
        if key is None and not sigstore:
            raise ValueError("a release signer needs a key or sigstore=True")
        self.key = check_private_key(key) if key is not None else None

    def sign(self, manifest: bytes) -> bytes:
        """The model-signing bundle (``manifest.sig``'s bytes) over ``manifest``."""
        from model_signing import signing

        config = signing.Config()
        if self.key is not None:
            config.use_elliptic_key_signer(private_key=self.key)
        else:  # keyless: the pod's ambient OIDC token (a cluster with workload identity)
            config.use_sigstore_signer(use_ambient_credentials=True)
        with tempfile.TemporaryDirectory(prefix="detpipe-sign-") as tmp:
            signature = Path(tmp) / SIGNATURE
            config.sign(_staged(manifest, tmp), signature)
            return signature.read_bytes()


class ReleaseVerifier:
    """Checks ``manifest.sig`` over ``manifest.json`` against a public key (or a Sigstore identity).

    Raises (at construction):
        InvalidInput: the public key file is missing or not an EC public key.
    """

    def __init__(self, public_key: Path | None, *, sigstore: SigstoreIdentity | None = None) -> None:
        if public_key is None and sigstore is None:
            raise ValueError("a release verifier needs a public key or a Sigstore identity")
        if public_key is not None:
            load_public_key(public_key)
        self.public_key = public_key
        self.sigstore = sigstore

    @property
    def key_id(self) -> str:
        """The public key's id (its bundles' ``publicKey.hint``), or the Sigstore identity."""
        if self.public_key is None:
            assert self.sigstore is not None
            return f"{self.sigstore.identity} ({self.sigstore.oidc_issuer})"
        return public_key_id(self.public_key)

    def verify(self, manifest: bytes, signature: bytes | None) -> None:
        """Refuse unless ``signature`` is a valid signature of exactly ``manifest``.

        Raises:
            SignatureError: no signature, a signature by another key, or over other bytes.
        """
        if signature is None:
            raise SignatureError("the release is not signed (no manifest.sig)")
        from model_signing import verifying

        config = verifying.Config()
        if self.public_key is not None:
            config.use_elliptic_key_verifier(public_key=self.public_key)
        else:
            assert self.sigstore is not None
            config.use_sigstore_verifier(
                identity=self.sigstore.identity, oidc_issuer=self.sigstore.oidc_issuer
            )
        with tempfile.TemporaryDirectory(prefix="detpipe-verify-") as tmp:
            sig_path = Path(tmp) / SIGNATURE
            sig_path.write_bytes(signature)
            try:
                config.verify(_staged(manifest, tmp), sig_path)
            except Exception as e:  # model-signing raises ValueError, JSON, protobuf and crypto errors
                raise SignatureError(f"the release signature does not verify: {_reason(e)}") from None


def _reason(e: Exception) -> str:
    text = str(e)
    if "Key mismatch" in text:
        return "signed by another key"
    if "Signature mismatch" in text or "Hash mismatch" in text:
        return "manifest.json was altered after signing"
    if type(e).__name__ == "InvalidSignature":
        return "the signature is not valid for this key"
    return f"malformed manifest.sig ({type(e).__name__})"


def sign_release(release: Store | str | Path, signer: ReleaseSigner) -> Manifest:
    """Sign the release at ``release`` (a directory or store URI): writes its ``manifest.sig``.

    Raises:
        NotFound: no ``manifest.json`` there.
        StoreError: the manifest is malformed, or the store failed.
    """
    rel = _as_store(release)
    blob = _manifest_bytes(rel)
    manifest = Manifest.from_json(blob, f"{rel.uri}/{MANIFEST}")
    rel.put_bytes(SIGNATURE, signer.sign(blob), content_type="application/json")
    log.info("signed %s %s at %s", manifest.name, manifest.version, rel.uri)
    return manifest


def verify_release(release: Store | str | Path, verifier: ReleaseVerifier) -> Manifest:
    """Check the signature of the release at ``release`` and every object against its manifest.

    A local directory is checked in place (every object the manifest lists must be there);
    a store URI is downloaded into a temporary directory through :func:`fetch_release`.

    Raises:
        SignatureError: unsigned, signed by another key, the manifest altered, or an object
            missing or not the one the signed manifest pins (altered).
        NotFound: no release there.
        StoreError: the store failed.
    """
    if isinstance(release, str | Path) and Path(release).is_dir():
        root = Path(release)
        blob = _manifest_bytes(_as_store(root))
        sig = root / SIGNATURE
        verifier.verify(blob, sig.read_bytes() if sig.is_file() else None)
        manifest = Manifest.from_json(blob, f"{root}/{MANIFEST}")
        for entry in manifest.objects:
            path = root / entry.path
            if not path.is_file():
                raise SignatureError(f"{entry.path}: listed in the signed manifest but missing")
            if path.stat().st_size != entry.size or sha256_file(path) != entry.sha256:
                raise SignatureError(f"{entry.path}: does not match the signed manifest (altered)")
        return manifest
    with tempfile.TemporaryDirectory(prefix="detpipe-verify-") as tmp:
        try:
            return fetch_release(_as_store(release), Path(tmp) / "release", verifier=verifier)
        except ObjectMismatch as e:
            raise SignatureError(f"{e} (the signed manifest pins another object)") from None
