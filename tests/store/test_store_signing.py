"""Signed releases (detpipe.signing, OpenSSF model-signing) on both store backends, for real.

Each attack of the security review's "unsigned releases" item is reproduced and refused: a
release replaced in the store together with its manifest (re-signed by nobody), an object
swapped under a signed manifest, a signature by another key, no signature at all.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from detpipe.cli.main import main
from detpipe.errors import InvalidInput, SignatureError
from detpipe.signing import ReleaseSigner, ReleaseVerifier, keygen, sign_release, verify_release
from detpipe.store import Lineage, fetch_release, publish, read_manifest


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    return keygen(d)


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory):
    return keygen(tmp_path_factory.mktemp("other"))


@pytest.fixture
def files(tmp_path):
    out = {}
    for rel, size in {"weights.pt": 3000, "model.onnx": 2000}.items():
        path = tmp_path / rel
        path.write_bytes(os.urandom(size))
        out[rel] = path
    return out


def _publish(store, files, keys=None, version="1.0.0"):
    signer = ReleaseSigner(keys[0]) if keys else None
    publish(store, "m", version, files, lineage=Lineage(code_version="t"), signer=signer)
    return store.child(f"models/m/{version}")


def test_keygen_writes_a_0600_private_key_and_refuses_to_overwrite(tmp_path):
    key, pub = keygen(tmp_path / "k")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    with pytest.raises(InvalidInput, match="a release key exists already"):
        keygen(tmp_path / "k")
    assert keygen(tmp_path / "k", overwrite=True)[0].read_bytes() != b""


def test_a_signed_release_verifies_when_read_and_fetched(store, files, keys, tmp_path):
    rel = _publish(store, files, keys)
    verifier = ReleaseVerifier(keys[1])
    assert read_manifest(rel, verifier=verifier).version == "1.0.0"
    fetch_release(
        rel, tmp_path / "one", verifier=verifier, only=["model.onnx"]
    )  # a partial fetch verifies too
    assert verify_release(rel, verifier).name == "m"
    assert (tmp_path / "one" / "manifest.sig").is_file()


def test_partial_local_copy_is_not_a_whole_release(store, files, keys, tmp_path):
    rel = _publish(store, files, keys)
    fetch_release(rel, tmp_path / "one", verifier=ReleaseVerifier(keys[1]), only=["model.onnx"])
    with pytest.raises(SignatureError, match=r"weights\.pt: listed in the signed manifest but missing"):
        verify_release(tmp_path / "one", ReleaseVerifier(keys[1]))


def test_unsigned_release_is_refused(store, files, keys, tmp_path):
    rel = _publish(store, files)
    with pytest.raises(SignatureError, match=r"not signed \(no manifest.sig\)"):
        read_manifest(rel, verifier=ReleaseVerifier(keys[1]))
    with pytest.raises(SignatureError, match="not signed"):
        fetch_release(rel, tmp_path / "out", verifier=ReleaseVerifier(keys[1]))
    assert not (tmp_path / "out").exists()


def test_release_replaced_with_its_manifest_is_refused(store, files, keys, tmp_path):
    """The review's attack: whoever holds store credentials rewrites a release and its manifest."""
    rel = _publish(store, files, keys)
    evil = tmp_path / "evil.onnx"
    evil.write_bytes(os.urandom(2000))
    signature = rel.get_bytes("manifest.sig")
    publish(store, "m", "1.0.0", {"model.onnx": evil}, lineage=Lineage(code_version="t"), force=True)
    rel.put_bytes("manifest.sig", signature)  # the old, genuine signature beside the new manifest
    with pytest.raises(SignatureError, match=r"manifest\.json was altered after signing"):
        read_manifest(rel, verifier=ReleaseVerifier(keys[1]))


def test_object_swapped_under_a_signed_manifest_is_refused(store, files, keys, tmp_path):
    rel = _publish(store, files, keys)
    rel.put_bytes("model.onnx", os.urandom(2000))
    with pytest.raises(SignatureError, match=r"model\.onnx.*the signed manifest pins another object"):
        verify_release(rel, ReleaseVerifier(keys[1]))
    local = tmp_path / "copy"
    fetch_release(rel, local, only=["weights.pt"])
    (local / "model.onnx").write_bytes(os.urandom(2000))
    with pytest.raises(SignatureError, match=r"model\.onnx: does not match the signed manifest"):
        verify_release(local, ReleaseVerifier(keys[1]))


def test_signature_by_another_key_or_garbage_is_refused(store, files, keys, other_keys):
    rel = _publish(store, files, other_keys)
    with pytest.raises(SignatureError, match="signed by another key"):
        read_manifest(rel, verifier=ReleaseVerifier(keys[1]))
    rel.put_bytes("manifest.sig", b'{"mediaType": "nonsense"}')
    with pytest.raises(SignatureError, match=r"malformed manifest\.sig"):
        read_manifest(rel, verifier=ReleaseVerifier(keys[1]))
    rel.put_bytes("manifest.sig", b"\xff\x00")
    with pytest.raises(SignatureError, match=r"malformed manifest\.sig"):
        read_manifest(rel, verifier=ReleaseVerifier(keys[1]))


def test_sign_an_existing_release(store, files, keys):
    rel = _publish(store, files)
    sign_release(rel, ReleaseSigner(keys[0]))
    assert verify_release(rel, ReleaseVerifier(keys[1])).version == "1.0.0"


def test_the_signature_is_a_model_signing_bundle_the_upstream_cli_verifies(tmp_path, files, keys):
    from detpipe.store import LocalStore

    rel = _publish(LocalStore(tmp_path / "store"), files, keys)
    root = tmp_path / "store" / "models" / "m" / "1.0.0"
    bundle = json.loads((root / "manifest.sig").read_text())
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert "dsseEnvelope" in bundle
    cmd = [sys.executable, "-m", "model_signing", "verify", "key", "--signature", str(root / "manifest.sig"),
           "--public_key", str(keys[1]), str(root / "manifest.json")]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    (root / "manifest.json").write_bytes(rel.get_bytes("manifest.json").replace(b"1.0.0", b"1.0.1"))
    assert subprocess.run(cmd, capture_output=True, text=True, timeout=120).returncode != 0


def test_bad_keys_are_bad_input(tmp_path, keys):
    (tmp_path / "not-a-key").write_text("hello")
    with pytest.raises(InvalidInput, match="not a PEM public key"):
        ReleaseVerifier(tmp_path / "not-a-key")
    with pytest.raises(InvalidInput, match="cannot read the release public key"):
        ReleaseVerifier(tmp_path / "missing.pub")
    with pytest.raises(InvalidInput, match="not an unencrypted PEM private key"):
        ReleaseSigner(keys[1])  # the public half


def test_cli_keygen_sign_verify_and_exit_codes(tmp_path, files, capsys):
    from detpipe.store import LocalStore

    _publish(LocalStore(tmp_path / "store"), files)
    release = str(tmp_path / "store" / "models" / "m" / "1.0.0")
    keys_dir = tmp_path / "k"
    assert main(["release", "keygen", "--out", str(keys_dir)]) == 0
    pub, key = str(keys_dir / "release.pub"), str(keys_dir / "release.key")
    assert main(["release", "verify", "--release", release, "--key", pub]) == 2
    assert "error: the release is not signed (no manifest.sig)" in capsys.readouterr().err
    assert main(["release", "sign", "--release", release, "--key", key]) == 0
    assert main(["release", "verify", "--release", release, "--key", pub]) == 0
    assert "verified m 1.0.0: signed by" in capsys.readouterr().out
    assert main(["release", "verify", "--release", f"file://{release}", "--key", pub]) == 0
    (tmp_path / "store" / "models" / "m" / "1.0.0" / "weights.pt").write_bytes(b"x")
    capsys.readouterr()
    assert main(["release", "verify", "--release", release, "--key", pub]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["detpipe release: error: weights.pt: does not match the signed manifest (altered)"]
    assert main(["release", "verify", "--release", str(tmp_path / "nowhere"), "--key", pub]) == 2
