"""``detpipe release keygen | sign | verify``: signed releases (OpenSSF model-signing).

Usage::

    detpipe release keygen --out keys/
    detpipe release sign   --release runs/local/store/models/yolov8n-synth/0.1.0 --key keys/release.key
    detpipe release verify --release s3://detpipe/models/yolov8n-coco/1.0.0 --key keys/release.pub
"""

from __future__ import annotations

import argparse
from pathlib import Path

_RELEASE_HELP = (
    "the release: a directory holding manifest.json, or a store URI "
    "(s3://BUCKET/models/NAME/VERSION, file://..., credentials from the environment)"
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``release`` subcommand group."""
    parser = sub.add_parser(
        "release",
        help="sign and verify model releases (OpenSSF model-signing over manifest.json)",
        description="A release's manifest.json pins every object by size and sha256; its signature "
        "manifest.sig (a Sigstore bundle written by the model-signing library) therefore covers the "
        "whole release. 'detpipe serve --release-key' and 'detpipe edge publish --release-key' refuse "
        "releases that do not verify.",
    )
    actions = parser.add_subparsers(dest="release_command", metavar="ACTION", required=True)

    p = actions.add_parser(
        "keygen",
        help="make a signing key pair",
        description="Write OUT/release.key (EC P-256 PKCS#8 PEM, mode 0600: keep it in a k8s Secret "
        "or offline) and OUT/release.pub (give it to servers and publishers). Refuses to replace an "
        "existing key unless --overwrite.",
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory for the key pair")
    p.add_argument("--overwrite", action="store_true", help="replace an existing key pair")
    p.set_defaults(func=_keygen)

    p = actions.add_parser(
        "sign",
        help="sign a published release (writes its manifest.sig)",
        description="Sign the release's manifest.json with --key (or keyless through Sigstore with "
        "--sigstore, where the pod has an ambient OIDC identity) and store the signature as "
        "manifest.sig beside it. The pipeline's publish step signs as it publishes.",
    )
    p.add_argument("--release", required=True, metavar="DIR|URI", help=_RELEASE_HELP)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--key", type=Path, metavar="KEY", help="the private key (detpipe release keygen)")
    who.add_argument("--sigstore", action="store_true", help="keyless signing (needs Sigstore's services)")
    p.set_defaults(func=_sign)

    p = actions.add_parser(
        "verify",
        help="check a release's signature and every object",
        description="Verify manifest.sig over manifest.json with --key, then every object against the "
        "manifest (a store URI is downloaded into a temporary directory). Exit 0: verified; exit 2 and "
        "one line: unsigned, signed by another key, or altered.",
    )
    p.add_argument("--release", required=True, metavar="DIR|URI", help=_RELEASE_HELP)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--key", type=Path, metavar="PUB", help="the public key (release.pub)")
    who.add_argument(
        "--sigstore-identity",
        metavar="ID",
        help="keyless: the signer's identity (e.g. the pipeline's service account e-mail)",
    )
    p.add_argument(
        "--sigstore-issuer",
        metavar="URL",
        default="https://accounts.google.com",
        help="keyless: the identity's OIDC issuer (default: %(default)s)",
    )
    p.set_defaults(func=_verify)


def _keygen(args: argparse.Namespace) -> int:
    from detpipe.signing import keygen, public_key_id

    key, pub = keygen(args.out, overwrite=args.overwrite)
    print(f"wrote {key} (private, mode 0600) and {pub}; key id {public_key_id(pub)[:16]}")
    return 0


def _sign(args: argparse.Namespace) -> int:
    from detpipe.signing import ReleaseSigner, sign_release

    manifest = sign_release(args.release, ReleaseSigner(args.key, sigstore=args.sigstore))
    print(f"signed {manifest.name} {manifest.version}: {args.release.rstrip('/')}/manifest.sig")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from detpipe.signing import ReleaseVerifier, SigstoreIdentity, verify_release

    identity = (
        SigstoreIdentity(args.sigstore_identity, args.sigstore_issuer) if args.sigstore_identity else None
    )
    verifier = ReleaseVerifier(args.key, sigstore=identity)
    manifest = verify_release(args.release, verifier)
    print(
        f"verified {manifest.name} {manifest.version}: signed by {verifier.key_id[:16]}, "
        f"{len(manifest.objects)} objects match the manifest"
    )
    return 0
