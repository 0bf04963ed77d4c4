"""Signed releases: OpenSSF model-signing signatures over a release's ``manifest.json``.

A release (``models/<name>/<version>/``, :mod:`detpipe.store.manifest`) pins every object by
size and sha256 in ``manifest.json``; signing that one file therefore vouches for the whole
release, and a reader that fetches only ``model.onnx`` can still check what it got. The
signature is ``manifest.sig``: a Sigstore bundle (v0.3, DSSE envelope over an in-toto
statement whose subject is ``manifest.json``), as the ``model-signing`` library and CLI write
it, so the upstream tool verifies a detpipe release as well::

    detpipe release keygen --out keys/                       # release.key (0600), release.pub
    detpipe release sign   --release s3://detpipe/models/yolov8n-coco/1.0.0 --key keys/release.key
    detpipe release verify --release s3://detpipe/models/yolov8n-coco/1.0.0 --key keys/release.pub
    model_signing verify key --signature manifest.sig --public_key release.pub manifest.json

Keys are EC P-256 (what model-signing's key signer takes), PEM: PKCS#8 private key of mode
0600, SubjectPublicKeyInfo public key. Sigstore keyless signing (OIDC identity, Fulcio,
Rekor) is available where a cluster has ambient credentials (``--sigstore``).

Who checks: ``detpipe serve --release-key`` and its reloads, ``detpipe edge publish
--release --release-key`` before it TUF-signs a release for the fleet; both before anything
is downloaded or loaded.
"""

from detpipe.signing.keys import keygen, public_key_id
from detpipe.signing.release import (
    ReleaseSigner,
    ReleaseVerifier,
    SigstoreIdentity,
    sign_release,
    verify_release,
)

__all__ = [
    "ReleaseSigner",
    "ReleaseVerifier",
    "SigstoreIdentity",
    "keygen",
    "public_key_id",
    "sign_release",
    "verify_release",
]
