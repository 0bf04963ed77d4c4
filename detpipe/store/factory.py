"""``open_store``: one call from a URI to a store of the right backend.

The URI picks the backend; S3 settings come from the environment unless given::

    store = open_store("s3://detpipe")                 # S3/MinIO, settings from the environment
    store = open_store("s3://detpipe", s3=cfg)         # explicit settings (tests, components)
    store = open_store("runs/store")                   # local directory (file:// works too)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from detpipe.store.base import Store
from detpipe.store.config import S3Config
from detpipe.store.local import LocalStore
from detpipe.store.s3 import S3Store
from detpipe.store.uri import parse_uri


def open_store(uri: str | Path, *, s3: S3Config | None = None, create_bucket: bool | None = None) -> Store:
    """Open the store rooted at ``uri``.

    Args:
        uri: ``s3://bucket[/prefix]``, ``file://PATH`` or a directory path.
        s3: S3 settings; read with :meth:`S3Config.from_env` when ``None`` (S3 URIs only).
        create_bucket: create a missing bucket now (overrides ``s3.create_bucket``).

    Returns:
        A :class:`~detpipe.store.base.Store`.

    Raises:
        InvalidInput: a malformed URI or S3 setting.
        StoreError: with ``create_bucket``, the bucket could not be checked or created.
    """
    location = parse_uri(uri)
    if location.scheme == "file":
        return LocalStore(location.path)
    config = s3 if s3 is not None else S3Config.from_env()
    if create_bucket is not None:
        config = replace(config, create_bucket=create_bucket)
    store = S3Store(location.bucket, location.path, config)
    if config.create_bucket:
        store.ensure_bucket(create=True)
    return store
