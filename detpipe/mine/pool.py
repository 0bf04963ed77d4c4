"""The unlabeled pool ``detpipe mine`` scores: a directory of images, or a store prefix.

A store prefix is typically what the server sampled from the field
(``payloads/<model>/<version>/<yyyy-mm-dd>/<id>.jpg``, ``detpipe serve --sample-payloads``);
its images are downloaded into a cache directory first (hash-checked by the store), and named
by their key below the prefix. ``--exclude COCO`` drops the images a COCO file labels already
(by file name: the base name, as labeling tools export it)::

    pool = list_pool("runs/pool")                        # or "s3://detpipe/payloads/yolo"
    pool = exclude_labeled(pool, Path("train.json"))
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from detpipe.errors import InvalidInput

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class PoolImage:
    """One pool image: its name in the pool (relative path or store key) and a local file."""

    name: str
    path: Path


def list_pool(pool: str, cache: Path | None = None) -> list[PoolImage]:
    """Every image of ``pool`` (a directory, or a ``s3://``/``file://`` store prefix), sorted by name.

    Raises:
        InvalidInput: no such directory, or no image in it.
    """
    if "://" in pool:
        images = _from_store(pool, cache)
    else:
        root = Path(pool)
        if not root.is_dir():
            raise InvalidInput(f"--pool {pool}: no such directory (or give a store URI, s3://...)")
        images = [
            PoolImage(p.relative_to(root).as_posix(), p)
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        ]
    if not images:
        raise InvalidInput(f"--pool {pool}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return images


def _from_store(uri: str, cache: Path | None) -> list[PoolImage]:
    from detpipe.store import open_store

    store = open_store(uri)
    keys = [k for k in store.list("") if PurePosixPath(k).suffix.lower() in IMAGE_SUFFIXES]
    cache = cache or Path(tempfile.mkdtemp(prefix="detpipe-pool-"))
    out = []
    for key in keys:
        dest = cache.joinpath(*key.split("/"))
        if not dest.is_file():
            store.get_file(key, dest)
        out.append(PoolImage(key, dest))
    log.info("pool %s: %d images (cached in %s)", uri, len(out), cache)
    return out


def exclude_labeled(images: list[PoolImage], coco: Path) -> list[PoolImage]:
    """``images`` without those ``coco`` labels already (matched by base file name)."""
    from detpipe.io import read_json

    raw = read_json(coco)
    if not isinstance(raw, dict) or not isinstance(raw.get("images"), list):
        raise InvalidInput(f"--exclude {coco}: not a COCO file (no 'images' list)")
    labeled = {
        PurePosixPath(str(im.get("file_name", ""))).name for im in raw["images"] if isinstance(im, dict)
    }
    kept = [im for im in images if PurePosixPath(im.name).name not in labeled]
    log.info("excluded %d images labeled in %s", len(images) - len(kept), coco)
    return kept
