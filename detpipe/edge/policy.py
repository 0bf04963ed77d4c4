"""A device's least-privilege store policy (S3/MinIO IAM JSON) and the device id rule.

A device reads what the OTA agent reads and writes only its own status::

    ota/*                        s3:GetObject   TUF metadata and targets (trust.py, fetcher.py)
    devices/<its id>/*           s3:PutObject   status.json (agent.py)
    the bucket                   s3:GetBucketLocation  (the minio client asks it when no region is set)
    models/*                     explicit Deny  (releases are the pipeline's; never a device's)

Nothing lists a bucket: the agent names every object it reads (TUF probes the next root
version by name and takes the 403 a missing object gets without ``s3:ListBucket`` as
"no newer root", like a 404). The MinIO form uses the policy variable ``${aws:username}``, so
one policy serves every device user whose name is its device id; the concrete form names one
device (for S3 servers that do not substitute variables, and for tests)::

    doc = device_policy("s3://detpipe")                      # MinIO: devices/${aws:username}/*
    doc = device_policy("s3://detpipe", username="cam-17")   # devices/cam-17/*
"""

from __future__ import annotations

import re
from typing import Any

from detpipe.errors import InvalidInput
from detpipe.store.uri import StoreURI, parse_uri

USERNAME_VARIABLE = "${aws:username}"
POLICY_VERSION = "2012-10-17"  # the first version with policy variables
DEFAULT_POLICY_NAME = "detpipe-edge-device"

# A device id becomes a MinIO user name (access key, at least 3 characters, no '=' or ','),
# a store path segment (devices/<id>/) and a Kubernetes node name/label value (<= 63).
_DEVICE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{2,62}\Z")


def check_device_id(device_id: str) -> str:
    """Return ``device_id`` if it is a valid device id, else raise ``InvalidInput``.

    3-63 characters of ``a-z 0-9 . _ -``, starting with a letter or digit: a store path
    segment (never ``.``/``..``, no separators, NUL or CR/LF), a MinIO user name and a
    Kubernetes label value at once.
    """
    if not isinstance(device_id, str) or not _DEVICE_ID_RE.match(device_id):
        raise InvalidInput(
            f"device id {device_id!r}: 3-63 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return device_id


def store_location(store_uri: str) -> StoreURI:
    """The ``s3://bucket[/prefix]`` a policy is for (local stores have no users)."""
    loc = parse_uri(store_uri)
    if loc.scheme != "s3":
        raise InvalidInput(f"--store {store_uri}: device credentials are for an s3:// store")
    return loc


def _arn(loc: StoreURI, key: str | None = None) -> str:
    """The bucket's ARN (``key`` None), or the ARN of ``key`` below the store's prefix."""
    if key is None:
        return f"arn:aws:s3:::{loc.bucket}"
    return f"arn:aws:s3:::{loc.bucket}/" + "/".join(p for p in (loc.path, key) if p)


def device_policy(store_uri: str, username: str = USERNAME_VARIABLE) -> dict[str, Any]:
    """The IAM policy document of a device on ``store_uri``.

    Args:
        store_uri: ``s3://bucket[/prefix]``, the store the agent is given (``--store``).
        username: :data:`USERNAME_VARIABLE` (MinIO substitutes the user's name), or one
            device id for the concrete form.

    Raises:
        InvalidInput: not an ``s3://`` URI, or ``username`` is not a valid device id.
    """
    loc = store_location(store_uri)
    if username != USERNAME_VARIABLE:
        check_device_id(username)
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "ReadOta",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": [_arn(loc, "ota/*")],
            },
            {
                "Sid": "WriteOwnStatus",
                "Effect": "Allow",
                "Action": ["s3:PutObject"],
                "Resource": [_arn(loc, f"devices/{username}/*")],
            },
            {
                "Sid": "BucketRegion",
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation"],
                "Resource": [_arn(loc)],
            },
            {
                "Sid": "NeverReleases",
                "Effect": "Deny",
                "Action": ["s3:*"],
                "Resource": [_arn(loc, "models/*")],
            },
        ],
    }
