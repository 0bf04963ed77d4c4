"""Calibration images for INT8: where they come from and how they are fed.

The calibration subset is a sample of training images, by default a few hundred drawn
from the proportional (class-balanced) train subset, so INT8 ranges see every class:

- a subset list ``train2017_<pct>_p.txt`` (one image path per line; ``./``-relative paths
  resolve against the list's directory, like ultralytics does),
- an ultralytics dataset YAML (its ``train`` entry: a directory, a list file or a list),
- or a directory of images.

Which list: the smallest nested proportional subset that holds the images asked for (the
pipeline's export step), so calibration never quietly runs on a handful of images::

    source = calibration_list("runs/demo/yolo", want=300)   # e.g. yolo/train2017_10_p.txt
    paths = calibration_images(source, limit=300, seed=0)  # warns when fewer than 300 exist
    for batch in calibration_batches(paths, imgsz=(640, 640), batch=8): ...

The same batches feed onnxruntime's static quantization (:mod:`detpipe.export.quantize`)
and TensorRT's entropy calibrator (:mod:`detpipe.export.tensorrt_build`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from detpipe.data.layout import TRAIN_SPLIT
from detpipe.errors import InvalidInput
from detpipe.io import read_text
from detpipe.subsets.config import SUBSET_NAME_RE

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_CALIB_IMAGES = 300


def _images_in_dir(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _images_in_list(path: Path) -> list[Path]:
    out = []
    for line in read_text(path).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line)
        out.append(p if p.is_absolute() else path.parent / p)
    return out


def _images_in_yaml(path: Path) -> list[Path]:
    import yaml

    try:
        spec = yaml.safe_load(read_text(path))
    except yaml.YAMLError as e:
        raise InvalidInput(f"{path}: not valid YAML ({e})") from None
    if not isinstance(spec, dict) or "train" not in spec:
        raise InvalidInput(f"{path}: not a dataset YAML (no 'train' key)")
    root = Path(spec.get("path") or path.parent)
    if not root.is_absolute():
        root = path.parent / root
    entries = spec["train"] if isinstance(spec["train"], list) else [spec["train"]]
    out: list[Path] = []
    for entry in entries:
        p = Path(entry)
        p = p if p.is_absolute() else root / p
        out += _resolve(p)
    return out


def _resolve(path: Path) -> list[Path]:
    if path.is_dir():
        return _images_in_dir(path)
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file or directory")
    if path.suffix.lower() in (".yaml", ".yml"):
        return _images_in_yaml(path)
    if path.suffix.lower() == ".txt":
        return _images_in_list(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [path]
    raise InvalidInput(f"{path}: expected a subset list (.txt), a dataset YAML or an image directory")


def _count_lines(path: Path) -> int:
    return sum(
        1 for line in read_text(path).splitlines() if line.strip() and not line.lstrip().startswith("#")
    )


def calibration_list(lists_dir: str | Path, want: int, strategy: str = "p", split: str = TRAIN_SPLIT) -> Path:
    """The smallest list in ``lists_dir`` that holds at least ``want`` images.

    Candidates are the nested subset lists ``<split>_<pct>_<strategy>.txt`` and the whole
    split's ``<split>.txt`` (a YOLO layout from ``detpipe data yolo`` with subsets). When none
    holds ``want`` images the largest is returned and a warning says how many it has.

    Raises:
        InvalidInput: no such list in ``lists_dir``.
    """
    lists_dir = Path(lists_dir)
    candidates = [lists_dir / f"{split}.txt"] if (lists_dir / f"{split}.txt").is_file() else []
    for path in sorted(lists_dir.glob(f"{split}_*_{strategy}.txt")):
        match = SUBSET_NAME_RE.fullmatch(path.stem)
        if match and match["strategy"] == strategy:
            candidates.append(path)
    if not candidates:
        raise InvalidInput(
            f"{lists_dir}: no {split}.txt or {split}_<pct>_{strategy}.txt list to calibrate from"
        )
    full = lists_dir / f"{split}.txt"
    sized = sorted((_count_lines(p), p == full, p.name, p) for p in candidates)  # ties: the subset list
    for count, _, _, path in sized:
        if count >= want:
            log.info("calibration list %s: %d images (the smallest holding %d)", path.name, count, want)
            return path
    count, _, _, path = max(sized, key=lambda t: (t[0], not t[1]))
    log.warning(
        "calibration: %d images asked for, but the largest list (%s) holds %d: calibrating on %d",
        want, path.name, count, count,
    )  # fmt: skip
    return path


def calibration_images(source: str | Path, limit: int = DEFAULT_CALIB_IMAGES, seed: int = 0) -> list[Path]:
    """Up to ``limit`` existing image paths from ``source``, a seeded sample when there are more.

    Args:
        source: a subset list, a dataset YAML or a directory of images.
        limit: the number of images to keep.
        seed: the sampling seed (the same seed gives the same calibration set).

    Returns:
        Image paths, in list order.

    Raises:
        InvalidInput: ``source`` is unusable or lists no existing image.
    """
    source = Path(source)
    paths = _resolve(source)
    existing = [p for p in paths if p.is_file()]
    if len(existing) < len(paths):
        missing = [p for p in paths if not p.is_file()]
        log.warning(
            "%s: %d of %d listed images are missing (e.g. %s)", source, len(missing), len(paths), missing[0]
        )
    if not existing:
        raise InvalidInput(f"{source}: no calibration images found")
    if len(existing) < limit:
        log.warning(
            "calibration: %d images asked for, %s holds %d: calibrating on %d", limit, source, len(existing),
            len(existing),
        )  # fmt: skip
    if len(existing) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(existing), size=limit, replace=False))
        existing = [existing[i] for i in keep]
    return existing


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as HWC BGR uint8 (``cv2.imread``)."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidInput(f"{path}: not a readable image")
    return image


def calibration_batches(
    paths: Sequence[str | Path], imgsz: tuple[int, int], batch: int = 1
) -> Iterator[np.ndarray]:
    """Preprocessed NCHW float32 batches of exactly ``batch`` images (the last partial one is dropped
    unless it is the only one)."""
    from detpipe.runtime.image import preprocess

    if not paths:
        return
    usable = len(paths) - len(paths) % batch if len(paths) >= batch else len(paths)
    for start in range(0, usable, batch):
        images = [read_image(p) for p in paths[start : start + batch]]
        yield preprocess(images, imgsz, batch)[0]
