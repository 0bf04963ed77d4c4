"""S3 settings from the environment and a mounted Secret; secrets never shown."""

from __future__ import annotations

import pytest

from detpipe.errors import InvalidInput
from detpipe.store import RetryPolicy, S3Config
from detpipe.store.config import ANONYMOUS, DEFAULT_PART_SIZE


def _secret_dir(tmp_path, access="dir-access", secret="dir-secret"):
    d = tmp_path / "detpipe-minio"
    d.mkdir()
    (d / "accesskey").write_text(access + "\n")
    (d / "secretkey").write_text(secret + "\n")
    return d


def test_defaults_are_aws_https_anonymous():
    cfg = S3Config.from_env({})
    assert (cfg.endpoint, cfg.secure, cfg.region, cfg.access_key, cfg.credential_source) == (
        "s3.amazonaws.com",
        True,
        None,
        None,
        ANONYMOUS,
    )
    assert (cfg.part_size, cfg.retry, cfg.create_bucket) == (DEFAULT_PART_SIZE, RetryPolicy(), False)


def test_endpoint_scheme_sets_secure():
    cfg = S3Config.from_env({"DETPIPE_S3_ENDPOINT": "http://minio.detpipe.svc:9000/"})
    assert (cfg.endpoint, cfg.secure) == ("minio.detpipe.svc:9000", False)
    cfg = S3Config.from_env({"DETPIPE_S3_ENDPOINT": "minio:9000", "DETPIPE_S3_SECURE": "false"})
    assert (cfg.endpoint, cfg.secure) == ("minio:9000", False)
    with pytest.raises(
        InvalidInput, match="DETPIPE_S3_ENDPOINT is http:// but DETPIPE_S3_SECURE says otherwise"
    ):
        S3Config.from_env({"DETPIPE_S3_ENDPOINT": "http://minio:9000", "DETPIPE_S3_SECURE": "true"})
    with pytest.raises(InvalidInput, match="DETPIPE_S3_SECURE='maybe': expected true or false"):
        S3Config.from_env({"DETPIPE_S3_SECURE": "maybe"})


def test_credential_precedence(tmp_path):
    aws = {"AWS_ACCESS_KEY_ID": "aws-access", "AWS_SECRET_ACCESS_KEY": "aws-secret"}
    minio = {"MINIO_ACCESS_KEY": "minio-access", "MINIO_SECRET_KEY": "minio-secret"}
    d = _secret_dir(tmp_path)

    cfg = S3Config.from_env({**aws, **minio, "DETPIPE_S3_SECRET_DIR": str(d)})
    assert (cfg.access_key, cfg.secret_key) == ("dir-access", "dir-secret")  # newline stripped
    assert cfg.credential_source == f"DETPIPE_S3_SECRET_DIR={d} (files accesskey, secretkey)"

    cfg = S3Config.from_env({**aws, **minio, "AWS_SESSION_TOKEN": "tok"})
    assert (cfg.access_key, cfg.secret_key, cfg.session_token) == ("aws-access", "aws-secret", "tok")
    assert cfg.credential_source == "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"

    cfg = S3Config.from_env(minio)
    assert (cfg.access_key, cfg.secret_key, cfg.session_token) == ("minio-access", "minio-secret", None)
    assert cfg.credential_source == "MINIO_ACCESS_KEY/MINIO_SECRET_KEY"


def test_half_a_credential_pair_is_refused_without_showing_it():
    with pytest.raises(InvalidInput) as e:
        S3Config.from_env({"AWS_SECRET_ACCESS_KEY": "s3cr3t-value"})
    assert (
        str(e.value)
        == "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY: AWS_ACCESS_KEY_ID is not set (both are needed)"
    )
    with pytest.raises(InvalidInput, match="MINIO_SECRET_KEY is not set"):
        S3Config.from_env({"MINIO_ACCESS_KEY": "a"})


def test_secret_dir_problems(tmp_path):
    with pytest.raises(InvalidInput, match=r"DETPIPE_S3_SECRET_DIR: .*/missing/accesskey does not exist"):
        S3Config.from_env({"DETPIPE_S3_SECRET_DIR": str(tmp_path / "missing")})
    d = _secret_dir(tmp_path, secret="")
    with pytest.raises(InvalidInput, match=r"secretkey is empty"):
        S3Config.from_env({"DETPIPE_S3_SECRET_DIR": str(d)})


def test_repr_hides_secrets(tmp_path):
    cfg = S3Config.from_env({"AWS_ACCESS_KEY_ID": "AKIAVISIBLE", "AWS_SECRET_ACCESS_KEY": "very-secret"})
    text = repr(cfg)
    assert "very-secret" not in text
    assert "AKIAVISIBLE" not in text
    assert "credential_source='AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY'" in text


def test_tuning_and_region():
    cfg = S3Config.from_env(
        {
            "DETPIPE_S3_PART_SIZE": str(8 * 1024 * 1024),
            "DETPIPE_S3_RETRIES": "7",
            "DETPIPE_S3_RETRY_DELAY": "0.25",
            "DETPIPE_S3_TIMEOUT": "5",
            "DETPIPE_S3_CREATE_BUCKET": "yes",
            "AWS_DEFAULT_REGION": "eu-west-1",
        }
    )
    assert cfg.part_size == 8 * 1024 * 1024
    assert cfg.retry == RetryPolicy(attempts=7, base_delay_s=0.25)
    assert (cfg.read_timeout_s, cfg.create_bucket, cfg.region) == (5.0, True, "eu-west-1")
    assert S3Config.from_env({"DETPIPE_S3_REGION": "a", "AWS_REGION": "b"}).region == "a"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DETPIPE_S3_PART_SIZE": "1048576"}, "part size must be >= 5242880 bytes"),
        ({"DETPIPE_S3_PART_SIZE": "5MiB"}, "DETPIPE_S3_PART_SIZE='5MiB': expected an integer"),
        ({"DETPIPE_S3_RETRIES": "0"}, "retry attempts must be >= 1"),
        ({"DETPIPE_S3_RETRY_DELAY": "-1"}, "must not be negative"),
        ({"DETPIPE_S3_ENDPOINT": "ftp://x"}, "unsupported scheme 'ftp'"),
    ],
)
def test_bad_values(env, message):
    with pytest.raises(InvalidInput, match=message):
        S3Config.from_env(env)
