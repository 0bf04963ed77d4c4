"""The artifact store: one interface over S3/MinIO and the local filesystem, plus releases.

URIs: ``s3://bucket[/prefix]`` (MinIO or any S3; settings and credentials from the
environment or a mounted Secret, see :mod:`detpipe.store.config`), ``file://PATH`` or a
plain directory path (the embedded default). Usage::

    from detpipe.store import Lineage, fetch_release, latest_version, open_store, publish, release_uri

    store = open_store("s3://detpipe")              # or open_store("runs/store")
    store.put_file("scratch/best.pt", "runs/train/weights/best.pt")
    publish(store, "yolo11n-coco", "1.0.0", {"weights.pt": "best.pt"}, metrics={"mAP50-95": 0.37},
            lineage=Lineage.for_subset("subsets/train2017_10_p.txt"))
    v = latest_version(store, "yolo11n-coco")
    fetch_release(release_uri(store, "yolo11n-coco", v), "models/current")

Modules: ``uri`` (parsing), ``base`` (the Store protocol), ``config`` (S3 settings, retry
policy), ``retry``, ``local`` and ``s3`` (backends), ``factory`` (``open_store``),
``manifest`` (layout, manifest format, lineage) and ``release`` (publish/fetch).
"""

from detpipe.store.base import ObjectInfo, Store
from detpipe.store.config import RetryPolicy, S3Config
from detpipe.store.factory import open_store
from detpipe.store.local import LocalStore
from detpipe.store.manifest import LAYOUT, Lineage, Manifest, ManifestEntry, check_version, version_key
from detpipe.store.release import (
    ManifestSigner,
    ManifestVerifier,
    ObjectMismatch,
    fetch_release,
    latest_version,
    list_releases,
    publish,
    read_manifest,
    release_uri,
)
from detpipe.store.s3 import S3Store
from detpipe.store.uri import StoreURI, parse_uri

__all__ = [
    "LAYOUT",
    "Lineage",
    "LocalStore",
    "Manifest",
    "ManifestEntry",
    "ManifestSigner",
    "ManifestVerifier",
    "ObjectInfo",
    "ObjectMismatch",
    "RetryPolicy",
    "S3Config",
    "S3Store",
    "Store",
    "StoreURI",
    "check_version",
    "fetch_release",
    "latest_version",
    "list_releases",
    "open_store",
    "parse_uri",
    "publish",
    "read_manifest",
    "release_uri",
    "version_key",
]
