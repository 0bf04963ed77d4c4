"""The release layout and ``manifest.json``: what a release contains and where it came from.

A release lives at ``models/<name>/<version>/`` in a store::

    weights.pt  model.onnx  model.int8.onnx  metrics.json  MODEL_CARD.md
    bench/<device-class>.json
    engines/<device-class>/model.engine  engines/<device-class>/model.engine.json
    manifest.json   (written last: a release without it does not exist)
    manifest.sig    (reserved for the OTA signing step)

``manifest.json`` looks like::

    {"schema": "detpipe.release/1", "name": "yolo11n-coco", "version": "1.0.0",
     "created": "2026-01-31T12:00:00Z",
     "objects": [{"path": "weights.pt", "size": 5364831, "sha256": "9f2c..."}, ...],
     "metrics": {"mAP50-95": 0.372},
     "lineage": {"dataset_subset": "train2017_10_p.txt", "dataset_subset_sha256": "...",
                 "training_config": {...}, "parent_weights": "yolo11n.yaml",
                 "code_version": "v0.1.0-12-gabc1234"}}
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import detpipe
from detpipe.errors import InvalidInput, StoreError
from detpipe.io import sha256_file

SCHEMA = "detpipe.release/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
RESERVED = frozenset({MANIFEST, SIGNATURE})
MODEL_CARD = "MODEL_CARD.md"
"""The release's model card (markdown, :mod:`detpipe.model_card`): hashed and signed like the rest."""

_DEVICE = r"[a-z0-9][a-z0-9._-]{0,63}"
# Every object a release may hold (relative to models/<name>/<version>/).
LAYOUT = (
    re.compile(r"weights\.pt"),
    re.compile(r"model\.onnx"),
    re.compile(r"model\.int8\.onnx"),
    re.compile(r"metrics\.json"),
    re.compile(r"MODEL_CARD\.md"),
    re.compile(rf"bench/{_DEVICE}\.json"),
    re.compile(rf"engines/{_DEVICE}/model\.engine(\.json)?"),
)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
# Semantic versions (minor and patch optional: ``1``, ``1.2``, ``1.2.3-rc.1+build.5``, an optional ``v``)
# or a content hash (``sha-`` + 7 to 64 lowercase hex digits, what a plain model file is called).
_IDENT = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
_VERSION_RE = re.compile(
    rf"^(?:v?(?:0|[1-9]\d*)(?:\.(?:0|[1-9]\d*)){{0,2}}(?:-{_IDENT})?(?:\+{_IDENT})?|sha-[0-9a-f]{{7,64}})\Z"
)
_MAX_VERSION = 128
_CREATED_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z\Z")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")


def check_model_name(name: str) -> str:
    """A model name as releases, routes and metrics use it.

    Raises:
        InvalidInput: characters outside ``[A-Za-z0-9._-]``, or not starting with a letter or digit.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidInput(f"invalid model name {name!r}: use letters, digits, '.', '_' and '-'")
    return name


def check_version(version: str) -> str:
    """A release version as paths, headers and metrics labels use it.

    Raises:
        InvalidInput: not a semantic version (``1``, ``1.2.3``, ``1.2.3-rc.1+b5``, ``v2``) nor
            ``sha-<hex>``; anything with a separator, ``..``, NUL or CR/LF is neither.
    """
    if not isinstance(version, str) or len(version) > _MAX_VERSION or not _VERSION_RE.match(version):
        raise InvalidInput(
            f"invalid version {version!r}: use a semantic version (1.2.3, 1.2.3-rc.1) or sha-<hex>"
        )
    return version


def release_prefix(name: str, version: str) -> str:
    """``models/<name>/<version>`` after checking both parts.

    Raises:
        InvalidInput: a name with characters outside ``[A-Za-z0-9._-]`` or not starting with a
            letter or digit; a version that :func:`check_version` refuses.
    """
    check_model_name(name)
    check_version(version)
    return f"models/{name}/{version}"


class NotARelease(InvalidInput):
    """A URI that is not ``<store>/models/<name>[/<version>]`` (a model file, a directory)."""


def parse_release_uri(uri: str) -> tuple[str, str, str | None]:
    """(store URI, model name, version) of ``<store>/models/<name>[/<version>]``.

    The version is ``None`` for ``<store>/models/<name>`` (the newest one); a store that is a
    relative path ``models/...`` is ``"."``. The inverse of :func:`~detpipe.store.release.release_uri`.

    Raises:
        NotARelease: ``uri`` is not of that shape.
        InvalidInput: a name that :func:`check_model_name` or a version that
            :func:`check_version` refuses.
    """
    head, _, tail = uri.rstrip("/").rpartition("/")
    if head.endswith("/models") or head == "models":  # <store>/models/<name>
        store, name, version = head[: -len("models")], tail, None
    else:
        parent, _, name = head.rpartition("/")
        if not (parent.endswith("/models") or parent == "models"):
            raise NotARelease(f"{uri}: not a release (<store>/models/<name>[/<version>])")
        store, version = parent[: -len("models")], check_version(tail)
    return store.rstrip("/") or ".", check_model_name(name), version


def check_relpath(relpath: str) -> str:
    """Check that ``relpath`` belongs to the release layout (and is not reserved).

    Raises:
        InvalidInput: ``manifest.json``/``manifest.sig`` or a path outside :data:`LAYOUT`.
    """
    if relpath in RESERVED:
        raise InvalidInput(f"{relpath} is written by publish itself; do not pass it as a file")
    if not any(p.fullmatch(relpath) for p in LAYOUT):
        raise InvalidInput(
            f"{relpath!r} is not part of the release layout (weights.pt, model.onnx, model.int8.onnx, "
            "metrics.json, MODEL_CARD.md, bench/<device-class>.json, "
            "engines/<device-class>/model.engine[.json])"
        )
    return relpath


def version_key(version: str) -> tuple[Any, ...]:
    """Sort key that orders versions the way people expect.

    Numeric releases sort numerically (``1.10.0`` > ``1.9.2``), a final release after its
    pre-releases (``1.0.0`` > ``1.0.0-rc2`` > ``1.0.0-rc1``), and non-numeric versions
    before numeric ones, naturally (``exp2`` < ``exp10``).
    """
    m = re.fullmatch(r"[vV]?(\d+(?:\.\d+)*)(.*)", version)
    if m is None:
        return (0, _natural(version))
    numbers = tuple(int(x) for x in m.group(1).split("."))
    suffix = m.group(2)
    return (1, numbers, suffix == "", _natural(suffix))


def _natural(text: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(tok)) if tok.isdigit() else (1, tok) for tok in re.findall(r"\d+|\D+", text))


def code_version() -> str:
    """The code that built a release.

    ``DETPIPE_CODE_VERSION`` when set (images built in CI pin it), else ``git describe`` of
    this checkout, else the package version.
    """
    pinned = os.environ.get("DETPIPE_CODE_VERSION", "").strip()
    if pinned:
        return pinned
    repo = Path(detpipe.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "describe", "--tags", "--always", "--dirty"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return f"detpipe {detpipe.__version__}"
    return out.stdout.strip() or f"detpipe {detpipe.__version__}"


@dataclass(frozen=True)
class Lineage:
    """Where a model came from.

    Attributes:
        dataset_subset: the subset list the model was trained on (file name or URI).
        dataset_subset_sha256: sha256 of that subset list file.
        training_config: the training configuration (epochs, imgsz, seed, ...).
        parent_weights: the starting point: a weights file/URI, or the model YAML for scratch.
        code_version: filled by ``publish`` with :func:`code_version` when ``None``.
        extra: anything else worth keeping (pipeline run id, ...), JSON values.
    """

    dataset_subset: str | None = None
    dataset_subset_sha256: str | None = None
    training_config: Mapping[str, Any] | None = None
    parent_weights: str | None = None
    code_version: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def for_subset(cls, subset_file: str | Path, **kwargs: Any) -> Lineage:
        """Lineage of a model trained on ``subset_file`` (its name and sha256 are recorded)."""
        path = Path(subset_file)
        if not path.is_file():
            raise InvalidInput(f"{path}: no such subset file")
        return cls(dataset_subset=path.name, dataset_subset_sha256=sha256_file(path), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``extra`` kept as a nested object)."""
        d = asdict(self)
        d["training_config"] = dict(self.training_config) if self.training_config is not None else None
        d["extra"] = dict(self.extra)
        return d


@dataclass(frozen=True)
class ManifestEntry:
    """One object of a release: its path in the release, size and sha256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json`` of a release."""

    name: str
    version: str
    created: str
    objects: tuple[ManifestEntry, ...]
    metrics: Mapping[str, Any]
    lineage: Mapping[str, Any]
    schema: str = SCHEMA

    def to_json(self) -> bytes:
        """Canonical bytes (what is stored, and what ``manifest.sig`` will sign)."""
        doc = {
            "schema": self.schema,
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "objects": [asdict(o) for o in self.objects],
            "metrics": dict(self.metrics),
            "lineage": dict(self.lineage),
        }
        try:
            return (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode("utf-8")
        except (TypeError, ValueError) as e:
            raise InvalidInput(
                f"release {self.name} {self.version}: metrics/lineage are not valid JSON: {e}"
            ) from None

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Manifest:
        """Parse and check manifest bytes read from ``where``.

        Every field that becomes a path, a header or a metrics label is checked here: the
        name and version (:func:`release_prefix`), each object's path (:func:`check_relpath`),
        the creation time (an ISO 8601 UTC timestamp).

        Raises:
            StoreError: not JSON, an unknown schema, or malformed entries.
        """
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            if doc.get("schema") != SCHEMA:
                raise ValueError(f"unknown schema {doc.get('schema')!r} (expected {SCHEMA})")
            objects = tuple(
                ManifestEntry(str(o["path"]), int(o["size"]), str(o["sha256"])) for o in doc["objects"]
            )
            for o in objects:
                check_relpath(o.path)
                if not _SHA256_RE.match(o.sha256) or o.size < 0:
                    raise ValueError(f"bad entry for {o.path}")
            if len({o.path for o in objects}) != len(objects):
                raise ValueError("an object is listed twice")
            release_prefix(doc["name"], doc["version"])
            if not (isinstance(doc["created"], str) and _CREATED_RE.match(doc["created"])):
                raise ValueError(f"created {str(doc['created'])[:40]!r} is not an ISO 8601 UTC time")
            return cls(
                name=doc["name"],
                version=doc["version"],
                created=doc["created"],
                objects=objects,
                metrics=dict(doc.get("metrics") or {}),
                lineage=dict(doc.get("lineage") or {}),
            )
        except (ValueError, KeyError, TypeError, AttributeError, InvalidInput) as e:
            raise StoreError(f"{where}: malformed release manifest: {e}") from None


def check_json_values(what: str, value: Mapping[str, Any]) -> None:
    """Reject values that JSON cannot carry faithfully (NaN, infinity, arbitrary objects)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        bad = [k for k, v in value.items() if isinstance(v, float) and not math.isfinite(v)]
        detail = f"non-finite values for {', '.join(map(str, bad))}" if bad else str(e)
        raise InvalidInput(f"{what} must be JSON values: {detail}") from None
