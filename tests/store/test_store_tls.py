"""The store over HTTPS with a private CA (``DETPIPE_S3_CA_BUNDLE``), against a real TLS endpoint.

moto's S3 server speaks plain HTTP, so ``tcp_proxy.py`` (a separate process) terminates TLS
in front of it with a certificate for 127.0.0.1 signed by a CA made here with
``cryptography``, as an HTTPS MinIO signed by cert-manager would look to a client. With the
CA bundle the store works; without it (certifi's public CAs) or with another CA, every call
fails with one StoreError naming the endpoint and DETPIPE_S3_CA_BUNDLE.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from store_servers import ACCESS_KEY, PROXY_SCRIPT, SECRET_KEY, MotoServer, _wait_port, free_port, s3_config

from detpipe.edge.fetcher import OtaFetcher
from detpipe.errors import InvalidInput, StoreError
from detpipe.store import RetryPolicy, S3Config, open_store


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_ca(directory: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA; returns (its PEM file, key, certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    path.write_bytes(_pem(cert))
    return path, key, cert


def make_server_cert(
    directory: Path, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate
) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by ``ca``: (cert PEM, key PEM mode 0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("minio.detpipe.svc"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("minio.detpipe.svc")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "public.crt", directory / "private.key"
    cert_path.write_bytes(_pem(cert))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@dataclass(frozen=True)
class TlsServer:
    endpoint: str  # host:port of the TLS side
    ca: Path  # the CA that signed its certificate
    other_ca: Path  # a CA that did not
    bucket: str

    def config(self, **overrides: object) -> S3Config:
        settings = {"secure": True, "retry": RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.02)}
        return s3_config(self.endpoint, **{**settings, **overrides})


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    d = tmp_path_factory.mktemp("tls")
    ca_path, ca_key, ca = make_ca(d, "detpipe-test-ca")
    other_ca, _, _ = make_ca(d, "someone-else")
    cert, key = make_server_cert(d, ca_key, ca)
    moto = MotoServer()
    port = free_port()
    proxy = subprocess.Popen(
        [sys.executable, str(PROXY_SCRIPT), str(port), str(moto.port), str(cert), str(key)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_port(port, proxy)
        yield TlsServer(f"127.0.0.1:{port}", ca_path, other_ca, moto.make_bucket())
    finally:
        proxy.kill()
        proxy.wait(timeout=10)
        moto.kill()


def test_the_store_works_over_tls_with_the_ca_bundle(tls_server: TlsServer, tmp_path: Path) -> None:
    env = {
        "DETPIPE_S3_ENDPOINT": f"https://{tls_server.endpoint}",
        "DETPIPE_S3_CA_BUNDLE": str(tls_server.ca),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "DETPIPE_S3_REGION": "us-east-1",
    }
    cfg = S3Config.from_env(env)
    assert (cfg.secure, cfg.ca_bundle) == (True, str(tls_server.ca))
    store = open_store(f"s3://{tls_server.bucket}/tls", s3=cfg)
    store.put_bytes("ota/metadata/root.json", b'{"signed": {}}')
    assert store.get_bytes("ota/metadata/root.json") == b'{"signed": {}}'
    src = tmp_path / "big.bin"
    src.write_bytes(b"x" * (6 << 20))  # a multipart upload over TLS too
    store.put_file("models/m/1/model.onnx", src)
    assert store.get_file("models/m/1/model.onnx", tmp_path / "back.bin").size == 6 << 20
    # the edge agent's transport builds its client the same way
    got = b"".join(OtaFetcher(cfg).fetch(f"s3://{tls_server.bucket}/tls/ota/metadata/root.json"))
    assert got == b'{"signed": {}}'


def test_without_the_ca_bundle_the_certificate_is_refused(
    tls_server: TlsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # certifi's public CAs only
    store = open_store(f"s3://{tls_server.bucket}", s3=tls_server.config())
    with pytest.raises(StoreError) as e:
        store.get_bytes("ota/metadata/root.json")
    (line,) = str(e.value).splitlines()
    assert f"TLS connection to {tls_server.endpoint} failed" in line
    assert "certificate not verified: unable to get local issuer certificate" in line
    assert line.endswith("for a private CA set DETPIPE_S3_CA_BUNDLE to a PEM file of it")


def test_a_bundle_of_another_ca_is_refused_and_named(tls_server: TlsServer) -> None:
    store = open_store(f"s3://{tls_server.bucket}", s3=tls_server.config(ca_bundle=str(tls_server.other_ca)))
    with pytest.raises(StoreError, match=f"DETPIPE_S3_CA_BUNDLE={tls_server.other_ca}"):
        store.put_bytes("devices/cam-17/status.json", b"{}")


def test_a_plain_http_client_gets_no_answer_it_takes_for_s3(tls_server: TlsServer) -> None:
    store = open_store(f"s3://{tls_server.bucket}", s3=tls_server.config(secure=False))
    with pytest.raises(StoreError, match=f"failed.*endpoint {tls_server.endpoint}"):
        store.get_bytes("ota/metadata/root.json")


def test_ca_bundle_setting_is_checked_when_read(tmp_path: Path, tls_server: TlsServer) -> None:
    base = {"DETPIPE_S3_ENDPOINT": "https://minio.detpipe.svc:9000"}
    # no such file (the pods' optional ConfigMap detpipe-store-ca is not there): the system's CAs
    assert S3Config.from_env({**base, "DETPIPE_S3_CA_BUNDLE": str(tmp_path / "none.pem")}).ca_bundle is None
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(InvalidInput, match="not a PEM file of CA certificates"):
        S3Config.from_env({**base, "DETPIPE_S3_CA_BUNDLE": str(junk)})
    # plain HTTP (local development) has no use for it: not read, not kept
    local = {
        "DETPIPE_S3_ENDPOINT": "http://127.0.0.1:9000",
        "DETPIPE_S3_CA_BUNDLE": str(tmp_path / "none.pem"),
    }
    assert S3Config.from_env(local).ca_bundle is None
    assert S3Config.from_env({**base, "DETPIPE_S3_CA_BUNDLE": str(tls_server.ca)}).secure is True
