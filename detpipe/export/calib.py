"""Calibration images for INT8: where they come from and how they are fed.

The calibration subset is a sample of training images, by default a few hundred drawn
from the proportional (class-balanced) train subset, so INT8 ranges see every class:

- a subset list ``train2017_<pct>_p.txt`` (one image path per line; ``./``-relative paths
  resolve against the list's directory, like ultralytics does),
- an ultralytics dataset YAML (its ``train`` entry: a directory, a list file or a list),
- or a directory of images.

::

    paths = calibration_images("runs/demo/yolo/train2017_5_p.txt", limit=300, seed=0)
    for batch in calibration_batches(paths, imgsz=(640, 640), batch=8): ...

The same batches feed onnxruntime's static quantization (:mod:`detpipe.export.quantize`)
and TensorRT's entropy calibrator (:mod:`detpipe.export.tensorrt_build`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from detpipe.errors import InvalidInput
from detpipe.io import read_text

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
    from detpipe.export.runtime import preprocess

    if not paths:
        return
    usable = len(paths) - len(paths) % batch if len(paths) >= batch else len(paths)
    for start in range(0, usable, batch):
        images = [read_image(p) for p in paths[start : start + batch]]
        yield preprocess(images, imgsz, batch)[0]
