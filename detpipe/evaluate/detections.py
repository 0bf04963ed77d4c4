"""COCO-format detection results (``[{"image_id", "category_id", "bbox", "score"}, ...]``) as arrays.

The file format is the one ``pycocotools.COCO.loadRes`` reads and ultralytics'
``save_json`` writes: a JSON list, one object per box, ``bbox`` as ``[x, y, w, h]`` in
pixels of the original image. Extra keys (``segmentation``, ...) are ignored.

    dt = load_detections("detections.json", gt=load_coco("instances_val2017.json"))
    len(dt), dt.bboxes[:3], dt.scores.max()
    write_json("copy.json", dt.to_records())

Every problem is an :class:`~detpipe.errors.InvalidInput` with a one-line reason naming the
file and the first bad entry: a top level that is not a list, a missing key, a non-integer
id, a bbox that is not four finite numbers or has a negative size, a non-finite score,
and (when ``gt`` is given) an image or category id the ground truth does not have.

How it is fast: :func:`load_detections` first decodes the file with msgspec straight into
typed records (no per-object dicts, ~5x faster than ``json.load``) and turns them into
arrays. That path takes only files whose every record is well-typed and valid; anything
else (a decode or type error, an id beyond int64, a negative size, non-UTF-8 bytes) goes to
``json`` + :meth:`Detections.from_records`, the single source of problem messages.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np

from detpipe.data.coco import CocoDataset, read_json_checked
from detpipe.errors import InvalidInput
from detpipe.io import decode_json_typed

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("image_id", "category_id", "bbox", "score")


@dataclass(frozen=True)
class Detections:
    """Detection results as flat arrays, in file order (the order breaks score ties)."""

    image_ids: np.ndarray  # (N,) int64
    category_ids: np.ndarray  # (N,) int64
    bboxes: np.ndarray  # (N, 4) float64, COCO xywh in pixels
    scores: np.ndarray  # (N,) float64

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        """No detections at all (a model that found nothing is still evaluated)."""
        return cls(
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros((0, 4), np.float64),
            np.zeros(0, np.float64),
        )

    @classmethod
    def from_records(cls, records: Any, source: str = "detections") -> Detections:
        """Validate a parsed COCO results list and convert it to arrays.

        Args:
            records: the parsed JSON (must be a list of objects).
            source: how messages name the input (usually the file path).

        Raises:
            InvalidInput: the first problem found, with the number of others.
        """
        if not isinstance(records, list):
            raise InvalidInput(
                f"{source}: top level is {type(records).__name__}, expected a list of detections "
                '[{"image_id", "category_id", "bbox", "score"}, ...]'
            )
        if not records:
            return cls.empty()
        try:  # fast path: one pass per field, numpy checks the types
            image_ids = np.array([r["image_id"] for r in records])
            category_ids = np.array([r["category_id"] for r in records])
            bboxes = np.array([r["bbox"] for r in records])
            scores = np.array([r["score"] for r in records])
        except (KeyError, TypeError, ValueError):
            raise InvalidInput(_first_problem(records, source)) from None
        ok = (
            image_ids.dtype.kind == "i"
            and category_ids.dtype.kind == "i"
            and bboxes.dtype.kind in "if"
            and bboxes.shape == (len(records), 4)
            and scores.dtype.kind in "if"
            and scores.ndim == 1
        )
        if ok:
            bboxes = bboxes.astype(np.float64)
            scores = scores.astype(np.float64)
            ok = bool(np.isfinite(bboxes).all() and np.isfinite(scores).all() and (bboxes[:, 2:] >= 0).all())
        if not ok:
            raise InvalidInput(_first_problem(records, source))
        return cls(image_ids.astype(np.int64), category_ids.astype(np.int64), bboxes, scores)

    def to_records(self, box_decimals: int | None = None, score_decimals: int | None = None) -> list[dict]:
        """The COCO results list (``bbox`` xywh); optionally rounded to keep files small."""
        boxes = self.bboxes if box_decimals is None else np.round(self.bboxes, box_decimals)
        scores = self.scores if score_decimals is None else np.round(self.scores, score_decimals)
        return [
            {"image_id": i, "category_id": c, "bbox": b, "score": s}
            for i, c, b, s in zip(
                self.image_ids.tolist(),
                self.category_ids.tolist(),
                boxes.tolist(),
                scores.tolist(),
                strict=True,
            )
        ]

    def check_against(self, gt: CocoDataset, source: str = "detections") -> None:
        """Refuse detections on images or categories the ground truth does not have.

        pycocotools asserts on unknown images and silently drops unknown categories; both
        usually mean the detections belong to another dataset or class mapping.

        Raises:
            InvalidInput: naming the first unknown id and how many detections have one.
        """
        for ids, known, what in (
            (self.image_ids, gt.image_ids, "image_id"),
            (self.category_ids, gt.category_ids, "category_id"),
        ):
            bad = ~np.isin(ids, known)
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                raise InvalidInput(
                    f"{source}: detection [{first}]: {what}={int(ids[first])} is not in the ground truth "
                    f"{gt.path} ({int(bad.sum())} detection(s) with an unknown {what})"
                )


def load_detections(path: str | Path, gt: CocoDataset | None = None) -> Detections:
    """Read and validate a COCO results JSON file.

    Args:
        path: the ``detections.json`` file.
        gt: when given, every image and category id must exist in it.

    Raises:
        InvalidInput: missing file, malformed JSON or any problem listed in the module doc.
    """
    path = Path(path)
    dt = _decode_typed(path)  # None unless every record is valid: then json and the checks below
    if dt is None:
        dt = Detections.from_records(read_json_checked(path), str(path))
    if gt is not None:
        dt.check_against(gt, str(path))
    log.debug("%s: %d detections", path, len(dt))
    return dt


@functools.cache
def _decoder() -> Any:
    """msgspec's decoder of a results list (built on first use: msgspec is imported lazily)."""
    import msgspec

    class _Record(msgspec.Struct, gc=False):  # extra keys (segmentation, ...) are skipped
        image_id: int
        category_id: int
        bbox: tuple[float, float, float, float]
        score: float

    return msgspec.json.Decoder(list[_Record])


def _decode_typed(path: Path) -> Detections | None:
    """The file decoded straight into arrays, or None when anything is unusual (see module doc).

    Accepts only what :meth:`Detections.from_records` accepts, with the same values (msgspec
    parses floats correctly rounded, as ``json`` does); None sends the file to that path.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return None  # read_json says why, in its words
    records = decode_json_typed(data, _decoder())
    if records is None:
        return None
    n = len(records)
    if not n:
        return Detections.empty()
    try:
        image_ids = np.fromiter(map(attrgetter("image_id"), records), np.int64, n)
        category_ids = np.fromiter(map(attrgetter("category_id"), records), np.int64, n)
        scores = np.fromiter(map(attrgetter("score"), records), np.float64, n)
        boxes = chain.from_iterable(map(attrgetter("bbox"), records))
        bboxes = np.fromiter(boxes, np.float64, 4 * n).reshape(n, 4)
    except OverflowError:  # an id beyond int64: from_records refuses it
        return None
    if not (np.isfinite(bboxes).all() and np.isfinite(scores).all() and (bboxes[:, 2:] >= 0).all()):
        return None
    return Detections(image_ids, category_ids, bboxes, scores)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and bool(np.isfinite(v))


def _problem(i: int, r: Any) -> str | None:
    if not isinstance(r, dict):
        return f"detection [{i}]: not an object"
    missing = [k for k in REQUIRED_KEYS if k not in r]
    if missing:
        return f"detection [{i}]: missing key(s) {', '.join(repr(k) for k in missing)}"
    for key in ("image_id", "category_id"):
        if not _is_int(r[key]):
            return f"detection [{i}]: '{key}' must be an integer, got {r[key]!r}"
    box = r["bbox"]
    if not (isinstance(box, list | tuple) and len(box) == 4 and all(_is_num(v) for v in box)):
        return f"detection [{i}]: 'bbox' must be 4 finite numbers [x, y, w, h], got {box!r}"
    if box[2] < 0 or box[3] < 0:
        return f"detection [{i}]: bbox has a negative size (w={box[2]}, h={box[3]})"
    if not _is_num(r["score"]):
        return f"detection [{i}]: 'score' must be a finite number, got {r['score']!r}"
    return None


def _first_problem(records: Sequence[Any], source: str) -> str:
    """The slow path: find the first bad record and count the others (for the message)."""
    problems = (p for p in (_problem(i, r) for i, r in enumerate(records)) if p is not None)
    first = next(problems, None)
    if first is None:  # numpy refused something the checks accept (mixed types): name it generally
        return f"{source}: detections are not a uniform list of {{image_id, category_id, bbox, score}}"
    more = sum(1 for _ in problems)
    return f"{source}: {first}" + (f" (and {more} more problem(s))" if more else "")
