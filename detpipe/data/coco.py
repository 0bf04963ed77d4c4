"""Load and validate COCO-format detection annotations.

One parser serves every stage: :func:`load_coco` parses the file, checks it and returns
a :class:`CocoDataset` of flat numpy arrays (fast to stratify, count and convert).
:func:`find_problems` lists every problem with file, id and reason; ``detpipe data
validate`` prints them, and every other stage refuses the same inputs with the same
messages.

    ds = load_coco("annotations/instances_train2017.json", images_dir="images/train2017")
    ds.num_images, ds.num_annotations, ds.category_names

Checks: malformed JSON, missing or mistyped keys, duplicate ids, annotations pointing to
unknown images or categories, boxes with non-positive size or outside the image (beyond
``BOX_TOLERANCE_PX``, since COCO's own boxes overhang edges by rounding), and image files
missing from ``images_dir``.

How loading is fast: the file is first decoded with msgspec straight into typed records of
the keys used (no dict per object; ``segmentation`` and other keys are skipped, not built)
and checked with whole-array operations. Only a file with no problem at all passes that way;
on anything unusual (a decode or type error, any failed check) the file is parsed with
``json`` and goes the old way: the same whole-array checks on the dicts, then, when those
fail too, the per-record checks of :func:`find_problems`, the single source of messages.
``CocoDataset.raw`` (the parsed JSON) is then parsed from the file's bytes on first use.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import os
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np

from detpipe.errors import InvalidInput, ValidationFailed
from detpipe.io import decode_json_typed, read_json

log = logging.getLogger(__name__)

BOX_TOLERANCE_PX = 1.0
"""How far (pixels) a box may overhang the image edge before it counts as outside."""

_MAX_LISTED = 10_000  # stop collecting problems past this many: the file is clearly broken


@dataclass(frozen=True)
class CocoDataset:
    """A validated COCO detection file as flat arrays.

    Images and categories keep file order; ``ann_image`` / ``ann_category`` index into
    them (not ids). ``raw`` is the parsed JSON, for stages that pass extra keys through
    (parsed from the file's bytes on first use when the typed decoder loaded the file).
    """

    path: Path
    image_ids: np.ndarray  # (I,) int64
    file_names: list[str]
    widths: np.ndarray  # (I,) float64
    heights: np.ndarray  # (I,) float64
    category_ids: np.ndarray  # (C,) int64
    category_names: list[str]
    ann_ids: np.ndarray  # (A,) int64
    ann_image: np.ndarray  # (A,) int64, index into images
    ann_category: np.ndarray  # (A,) int64, index into categories
    ann_bbox: np.ndarray  # (A, 4) float64, COCO xywh in pixels
    ann_area: np.ndarray  # (A,) float64, 'area' when given, else w*h
    ann_iscrowd: np.ndarray  # (A,) bool
    _source: Any = field(repr=False, compare=False)  # the parsed JSON, or the file's bytes

    @functools.cached_property
    def raw(self) -> dict[str, Any]:
        """The parsed JSON (every key of the file)."""
        return json.loads(self._source) if isinstance(self._source, bytes) else self._source

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def num_annotations(self) -> int:
        return len(self.ann_ids)

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    def instances_per_image(self, include_crowd: bool = True) -> np.ndarray:
        """(I,) number of annotations on each image."""
        keep = np.ones(len(self.ann_image), bool) if include_crowd else ~self.ann_iscrowd
        return np.bincount(self.ann_image[keep], minlength=self.num_images)

    def image_class_counts(self, include_crowd: bool = True) -> np.ndarray:
        """(I, C) int32 matrix: instances of each class on each image."""
        keep = np.ones(len(self.ann_image), bool) if include_crowd else ~self.ann_iscrowd
        flat = self.ann_image[keep] * self.num_classes + self.ann_category[keep]
        counts = np.bincount(flat, minlength=self.num_images * self.num_classes)
        return counts.astype(np.int32).reshape(self.num_images, self.num_classes)


def load_coco(path: str | Path, images_dir: str | Path | None = None) -> CocoDataset:
    """Parse, validate and index a COCO detection annotation file.

    Args:
        path: the ``instances_*.json`` file.
        images_dir: when given, every image's ``file_name`` must exist under it.

    Returns:
        The dataset as flat arrays.

    Raises:
        InvalidInput: the file is missing or not JSON.
        ValidationFailed: the file parses but has problems; ``.problems`` lists them all.
    """
    path = Path(path)
    ds = _typed_index(path, images_dir)  # msgspec + vectorized checks; None when anything looks off
    if ds is not None:
        return ds
    raw = read_json_checked(path)
    ds = _fast_index(raw, path, images_dir)  # vectorized; None when anything looks off
    if ds is not None:
        return ds
    problems = find_problems(raw, path, images_dir)
    if problems:
        raise ValidationFailed(f"{path}: {len(problems)} problem(s) found, nothing written", problems)
    return _index(raw, path)


def read_json_checked(path: Path) -> Any:
    """:func:`detpipe.io.read_json`, with JSON nested too deeply for the parser refused as bad input.

    Raises:
        InvalidInput: missing file, malformed or too deeply nested JSON.
    """
    try:
        return read_json(path)
    except RecursionError:
        raise InvalidInput(f"{path}: not valid JSON (nested too deeply)") from None


def find_problems(raw: Any, path: str | Path, images_dir: str | Path | None = None) -> list[str]:
    """Every problem of a parsed COCO file, one line each: ``file: where: reason``."""
    path = Path(path)
    if not isinstance(raw, dict):
        return [f"{path}: top level is {type(raw).__name__}, expected an object"]
    problems = [
        f"{path}: missing or non-list key '{key}'"
        for key in ("images", "annotations", "categories")
        if not isinstance(raw.get(key), list)
    ]
    if problems:
        return problems
    images = _check_images(raw["images"], path, problems)
    categories = _check_categories(raw["categories"], path, problems)
    _check_annotations(raw["annotations"], images, categories, path, problems)
    if images_dir is not None:
        _check_files(images, Path(images_dir), path, problems)
    if len(problems) > _MAX_LISTED:
        problems = [*problems[:_MAX_LISTED], f"{path}: ... and {len(problems) - _MAX_LISTED} more"]
    return problems


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_TOO_BIG = "'id' does not fit in a 64-bit integer"


def _fits_int64(v: int) -> bool:
    return -(2**63) <= v < 2**63


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)


def _check_images(images: list, path: Path, problems: list[str]) -> dict[int, tuple[str, float, float]]:
    """Check image records; return id -> (file_name, width, height) of the usable ones."""
    seen: dict[int, tuple[str, float, float]] = {}
    for i, im in enumerate(images):
        where = f"{path}: images[{i}]"
        if not isinstance(im, dict):
            problems.append(f"{where}: not an object")
            continue
        iid = im.get("id")
        if not _is_int(iid):
            problems.append(f"{where}: missing or non-integer 'id'")
            continue
        where = f"{path}: image id={iid}"
        if not _fits_int64(iid):
            problems.append(f"{where}: {_TOO_BIG}")
            continue
        bad = [k for k in ("width", "height") if not _is_num(im.get(k)) or im[k] <= 0]
        if not isinstance(im.get("file_name"), str) or not im["file_name"]:
            bad.insert(0, "file_name")
        if bad:
            problems.append(f"{where}: missing or invalid {', '.join(repr(k) for k in bad)}")
            continue
        if iid in seen:
            problems.append(f"{where}: duplicate image id")
            continue
        seen[iid] = (im["file_name"], float(im["width"]), float(im["height"]))
    return seen


def _check_categories(categories: list, path: Path, problems: list[str]) -> set[int]:
    seen: set[int] = set()
    for i, cat in enumerate(categories):
        where = f"{path}: categories[{i}]"
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            problems.append(f"{where}: missing or non-integer 'id'")
            continue
        where = f"{path}: category id={cat['id']}"
        if not _fits_int64(cat["id"]):
            problems.append(f"{where}: {_TOO_BIG}")
        elif not isinstance(cat.get("name"), str) or not cat["name"]:
            problems.append(f"{where}: missing or empty 'name'")
        elif cat["id"] in seen:
            problems.append(f"{where}: duplicate category id")
        else:
            seen.add(cat["id"])
    if not categories:
        problems.append(f"{path}: 'categories' is empty")
    return seen


def _check_annotations(
    anns: list,
    images: dict[int, tuple[str, float, float]],
    categories: set[int],
    path: Path,
    problems: list[str],
) -> None:
    seen: set[int] = set()
    tol = BOX_TOLERANCE_PX
    for i, a in enumerate(anns):
        if not isinstance(a, dict) or not _is_int(a.get("id")):
            problems.append(f"{path}: annotations[{i}]: missing or non-integer 'id'")
            continue
        aid = a["id"]
        where = f"{path}: annotation id={aid}"
        if not _fits_int64(aid):
            problems.append(f"{where}: {_TOO_BIG}")
            continue
        if aid in seen:
            problems.append(f"{where}: duplicate annotation id")
            continue
        seen.add(aid)
        img = images.get(a.get("image_id"))  # type: ignore[arg-type]
        if img is None:
            problems.append(f"{where}: image_id={a.get('image_id')!r} is not a known image")
        if a.get("category_id") not in categories:
            problems.append(f"{where}: category_id={a.get('category_id')!r} is not a known category")
        box = a.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(_is_num(v) for v in box)):
            problems.append(f"{where}: 'bbox' must be a list of 4 numbers [x, y, w, h], got {box!r}")
            continue
        x, y, w, h = box
        if w <= 0 or h <= 0:
            problems.append(f"{where}: bbox has non-positive size (w={w}, h={h})")
        elif img is not None and (x < -tol or y < -tol or x + w > img[1] + tol or y + h > img[2] + tol):
            problems.append(
                f"{where}: bbox [{x}, {y}, {w}, {h}] lies outside image id={a['image_id']} "
                f"({img[1]:g}x{img[2]:g})"
            )
        if "iscrowd" in a and a["iscrowd"] not in (0, 1):
            problems.append(f"{where}: 'iscrowd' must be 0 or 1, got {a['iscrowd']!r}")
        if "area" in a and not (_is_num(a["area"]) and a["area"] >= 0):
            problems.append(f"{where}: 'area' must be a non-negative number, got {a['area']!r}")


def _check_files(
    images: dict[int, tuple[str, float, float]], images_dir: Path, path: Path, problems: list[str]
) -> None:
    if not images_dir.is_dir():
        problems.append(f"{path}: images dir {images_dir} does not exist")
        return
    present = {e.name for e in os.scandir(images_dir)}
    for iid, (name, _, _) in images.items():
        found = name in present if "/" not in name else (images_dir / name).is_file()
        if not found:
            problems.append(f"{path}: image id={iid}: file {images_dir / name} does not exist")


def _index(raw: dict[str, Any], path: Path) -> CocoDataset:
    """Flatten a validated COCO dict into arrays (assumes :func:`find_problems` passed)."""
    images, cats, anns = raw["images"], raw["categories"], raw["annotations"]
    image_ids = np.fromiter((im["id"] for im in images), np.int64, len(images))
    category_ids = np.fromiter((c["id"] for c in cats), np.int64, len(cats))
    ann_image_ids = np.fromiter((a["image_id"] for a in anns), np.int64, len(anns))
    ann_cat_ids = np.fromiter((a["category_id"] for a in anns), np.int64, len(anns))
    bbox = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
    area = np.fromiter((a.get("area", -1.0) for a in anns), np.float64, len(anns))
    missing_area = area < 0
    area[missing_area] = bbox[missing_area, 2] * bbox[missing_area, 3]
    return CocoDataset(
        path=path,
        image_ids=image_ids,
        file_names=[im["file_name"] for im in images],
        widths=np.fromiter((im["width"] for im in images), np.float64, len(images)),
        heights=np.fromiter((im["height"] for im in images), np.float64, len(images)),
        category_ids=category_ids,
        category_names=[c["name"] for c in cats],
        ann_ids=np.fromiter((a["id"] for a in anns), np.int64, len(anns)),
        ann_image=_lookup(image_ids, ann_image_ids),
        ann_category=_lookup(category_ids, ann_cat_ids),
        ann_bbox=bbox,
        ann_area=area,
        ann_iscrowd=np.fromiter((a.get("iscrowd", 0) == 1 for a in anns), bool, len(anns)),
        _source=raw,
    )


_ABSENT = object()  # marks a missing key in the fast path (distinct from an explicit null)


def _column(records: list[dict], key: str, types: set[type], optional: bool = False) -> list[Any]:
    """``[r[key] for r in records]`` (``_ABSENT`` where missing, when ``optional``).

    Raises KeyError or ValueError unless every value is present (or ``optional``) and
    of one of ``types``.
    """
    if optional:
        values = [r.get(key, _ABSENT) for r in records]
        types = {*types, type(_ABSENT)}
    else:
        values = [r[key] for r in records]
    if not set(map(type, values)) <= types:
        raise ValueError(key)
    return values


def _fast_index(raw: Any, path: Path, images_dir: str | Path | None) -> CocoDataset | None:
    """:func:`_index` for a file with no problem at all, checked with whole-array operations.

    Accepts only what :func:`find_problems` accepts (it is stricter: e.g. a float id sends
    the file to the slow path) and returns None whenever anything is unusual, so the exact,
    per-record checks and their messages stay the single source of problem reports. On a
    COCO-train-sized file this is ~10x faster than the per-record loop.
    """
    try:
        if not isinstance(raw, dict):
            return None
        images, cats, anns = raw.get("images"), raw.get("categories"), raw.get("annotations")
        if not (isinstance(images, list) and isinstance(cats, list) and isinstance(anns, list)):
            return None
        if not images or not anns or not cats:
            return None
        if set(map(type, images)) != {dict} or set(map(type, anns)) != {dict}:
            return None
        problems: list[str] = []
        _check_categories(cats, path, problems)
        if problems:
            return None
        num = {int, float}
        image_ids = np.array(_column(images, "id", {int}), np.int64)
        file_names = _column(images, "file_name", {str})
        widths = np.array(_column(images, "width", num), np.float64)
        heights = np.array(_column(images, "height", num), np.float64)
        category_ids = np.array([c["id"] for c in cats], np.int64)
        ann_ids = np.array(_column(anns, "id", {int}), np.int64)
        ann_image_ids = np.array(_column(anns, "image_id", {int}), np.int64)
        ann_cat_ids = np.array(_column(anns, "category_id", {int}), np.int64)
        boxes = _column(anns, "bbox", {list})
        if set(map(len, boxes)) != {4}:
            return None
        flat = list(itertools.chain.from_iterable(boxes))
        if not set(map(type, flat)) <= num:
            return None
        bbox = np.array(flat, np.float64).reshape(-1, 4)
        crowd = _column(anns, "iscrowd", {int, bool, float}, optional=True)
        if not set(crowd) <= {0, 1, _ABSENT}:
            return None
        iscrowd = np.array([v == 1 for v in crowd] if crowd.count(_ABSENT) else crowd, np.float64) == 1
        areas = _column(anns, "area", {int, float}, optional=True)
        if areas.count(_ABSENT):
            missing = np.fromiter((v is _ABSENT for v in areas), bool, len(areas))
            areas = [-1.0 if v is _ABSENT else v for v in areas]
        else:
            missing = np.zeros(len(areas), bool)
        area = np.array(areas, np.float64)
        columns = _Columns(
            image_ids, file_names, widths, heights, category_ids, [c["name"] for c in cats],
            ann_ids, ann_image_ids, ann_cat_ids, bbox, area, missing, iscrowd,
        )  # fmt: skip
        return _checked(columns, path, images_dir, raw)
    except (KeyError, ValueError, TypeError, OverflowError):
        return None


@dataclass
class _Columns:
    """A COCO file's fields as columns, before the checks of :func:`_checked`."""

    image_ids: np.ndarray
    file_names: list[str]
    widths: np.ndarray
    heights: np.ndarray
    category_ids: np.ndarray
    category_names: list[str]
    ann_ids: np.ndarray
    ann_image_ids: np.ndarray  # ids, not yet positions
    ann_cat_ids: np.ndarray
    bbox: np.ndarray  # (A, 4)
    area: np.ndarray  # any value where ``area_missing``
    area_missing: np.ndarray  # (A,) bool: no 'area' key (then w*h)
    iscrowd: np.ndarray  # (A,) bool


def _checked(c: _Columns, path: Path, images_dir: str | Path | None, source: Any) -> CocoDataset | None:
    """The dataset when the columns pass every check of :func:`find_problems`, else None.

    The categories' own checks (ids unique, names non-empty) are repeated here for the typed
    decoder; :func:`_fast_index` has run :func:`_check_categories` before.
    """
    if not (len(c.image_ids) and len(c.ann_ids) and len(c.category_ids) and all(c.category_names)):
        return None
    if not (all(c.file_names) and _positive(c.widths) and _positive(c.heights)):
        return None
    for ids in (c.image_ids, c.category_ids, c.ann_ids):
        if len(np.unique(ids)) != len(ids):
            return None
    if not (np.isin(c.ann_image_ids, c.image_ids).all() and np.isin(c.ann_cat_ids, c.category_ids).all()):
        return None
    if not np.isfinite(c.bbox).all():
        return None
    x, y, w, h = c.bbox.T
    ann_image = _lookup(c.image_ids, c.ann_image_ids)
    tol = BOX_TOLERANCE_PX
    if not ((w > 0) & (h > 0)).all():
        return None
    outside = (x < -tol) | (y < -tol)
    outside |= (x + w > c.widths[ann_image] + tol) | (y + h > c.heights[ann_image] + tol)
    if outside.any():
        return None
    given = c.area[~c.area_missing]
    if not (np.isfinite(given).all() and (given >= 0).all()):
        return None
    area = c.area.copy() if c.area_missing.any() else c.area
    area[c.area_missing] = w[c.area_missing] * h[c.area_missing]
    if images_dir is not None:
        problems: list[str] = []
        by_id = dict(
            zip(c.image_ids.tolist(), zip(c.file_names, c.widths, c.heights, strict=True), strict=True)
        )
        _check_files(by_id, Path(images_dir), path, problems)
        if problems:
            return None
    return CocoDataset(
        path=path,
        image_ids=c.image_ids,
        file_names=c.file_names,
        widths=c.widths,
        heights=c.heights,
        category_ids=c.category_ids,
        category_names=c.category_names,
        ann_ids=c.ann_ids,
        ann_image=ann_image,
        ann_category=_lookup(c.category_ids, c.ann_cat_ids),
        ann_bbox=c.bbox,
        ann_area=area,
        ann_iscrowd=c.iscrowd,
        _source=source,
    )


@functools.cache
def _decoder() -> Any:
    """msgspec's decoder of the keys a COCO detection file is read for (built on first use)."""
    import msgspec

    def struct(name: str, fields: list) -> Any:  # defstruct: real types, not this module's strings
        return msgspec.defstruct(name, fields, gc=False)

    # Only the keys read; the others (coco_url, license, segmentation, ...) are skipped, never built.
    # A width or area given as an int is read as a float, as the json path does; an absent area
    # is NaN (a file cannot hold NaN: msgspec refuses the literal), an absent iscrowd 0.
    image = struct("Image", [("id", int), ("file_name", str), ("width", float), ("height", float)])
    category = struct("Category", [("id", int), ("name", str)])
    box = tuple[float, float, float, float]
    annotation = struct(
        "Annotation",
        [("id", int), ("image_id", int), ("category_id", int), ("bbox", box),
         ("area", float, math.nan), ("iscrowd", bool | int | float, 0)],
    )  # fmt: skip
    file = struct(
        "File", [("images", list[image]), ("annotations", list[annotation]), ("categories", list[category])]
    )
    return msgspec.json.Decoder(file)


def _typed_index(path: Path, images_dir: str | Path | None) -> CocoDataset | None:
    """:func:`_fast_index` on records decoded by msgspec, without building the JSON's dicts.

    None (the json path decides) on anything unusual: the file unreadable or not UTF-8, a
    decode or type error, an id beyond int64, any failed check.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return None  # read_json says why, in its words
    coco = decode_json_typed(data, _decoder())
    if coco is None:
        return None
    images, cats, anns = coco.images, coco.categories, coco.annotations
    del coco
    n = len(anns)
    try:
        area = np.fromiter(map(attrgetter("area"), anns), np.float64, n)
        crowd = list(map(attrgetter("iscrowd"), anns))
        if not set(crowd) <= {0, 1}:
            return None
        columns = _Columns(
            image_ids=np.fromiter(map(attrgetter("id"), images), np.int64, len(images)),
            file_names=list(map(attrgetter("file_name"), images)),
            widths=np.fromiter(map(attrgetter("width"), images), np.float64, len(images)),
            heights=np.fromiter(map(attrgetter("height"), images), np.float64, len(images)),
            category_ids=np.fromiter(map(attrgetter("id"), cats), np.int64, len(cats)),
            category_names=list(map(attrgetter("name"), cats)),
            ann_ids=np.fromiter(map(attrgetter("id"), anns), np.int64, n),
            ann_image_ids=np.fromiter(map(attrgetter("image_id"), anns), np.int64, n),
            ann_cat_ids=np.fromiter(map(attrgetter("category_id"), anns), np.int64, n),
            bbox=np.fromiter(
                itertools.chain.from_iterable(map(attrgetter("bbox"), anns)), np.float64, 4 * n
            ).reshape(n, 4),
            area=area,
            area_missing=np.isnan(area),
            iscrowd=np.fromiter(crowd, np.float64, n) == 1,
        )
    except OverflowError:  # an id beyond int64: the json path refuses it
        return None
    del images, cats, anns, crowd
    return _checked(columns, path, images_dir, data)


def _positive(values: np.ndarray) -> bool:
    return bool(np.isfinite(values).all() and (values > 0).all())


def _lookup(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each of ``values`` in ``keys`` (all values are known to be present)."""
    order = np.argsort(keys, kind="stable")
    return order[np.searchsorted(keys, values, sorter=order)]
