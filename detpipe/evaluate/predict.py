"""Run a detector over a dataset's val images and produce COCO-format detections.

The evaluator does not care which runtime made the boxes. A *predictor* is any callable
that takes a batch of BGR images (``numpy`` HWC uint8, as ``cv2.imread`` returns them) and
returns, per image, an object with ``boxes`` ((N, 4) x1 y1 x2 y2 in that image's pixels),
``scores`` ((N,)) and ``classes`` ((N,) contiguous class index 0..nc-1). The PyTorch path
here uses ultralytics; the ONNX / TensorRT predictors of exported models
(``detpipe.runtime``) have the same call shape, so the same code evaluates them::

    val = resolve_val_set("runs/demo/yolo/dataset.yaml")            # images + gt + names
    gt = load_coco(val.annotations)
    predictor = UltralyticsPredictor(PredictConfig(weights="best.pt"))
    dt = predict_detections(predictor, val.images, gt, batch=16)    # a Detections object
    result = evaluate_bbox(gt, dt)

Class mapping: the model's class index ``i`` (the dataset YAML's ``names[i]``) is the i-th
category of the val COCO json sorted by id, which is how ``detpipe data yolo`` numbers
classes. The val annotations come from ``--gt`` or, failing that, from a
``val_annotations`` key in the dataset YAML (absolute, or relative to its ``path``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from detpipe.data.coco import CocoDataset
from detpipe.device import resolve_device
from detpipe.errors import InvalidInput
from detpipe.evaluate.detections import Detections
from detpipe.io import read_text

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
BOX_DECIMALS = 3  # what ultralytics' save_json keeps; detections.json holds these rounded values
SCORE_DECIMALS = 5
DEFAULT_IMGSZ = 640  # ultralytics' default, for weights that do not record their training size


class ImageBoxes(Protocol):
    """Detections on one image, in its pixel coordinates."""

    boxes: np.ndarray  # (N, 4) x1 y1 x2 y2
    scores: np.ndarray  # (N,)
    classes: np.ndarray  # (N,) int, 0..nc-1


class Predictor(Protocol):
    """Images in, per-image boxes out; ``names`` maps class index -> name."""

    names: Mapping[int, str]

    def __call__(self, images: Sequence[np.ndarray]) -> Sequence[ImageBoxes]: ...


@dataclass(frozen=True)
class PredictedBoxes:
    """The plain :class:`ImageBoxes` this module's predictors return."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


@dataclass(frozen=True)
class PredictConfig:
    """How :class:`UltralyticsPredictor` runs ``YOLO(weights).predict``.

    The defaults are COCO-evaluation settings: a very low confidence floor so the PR curve
    reaches high recall, ultralytics' validation NMS IoU, and COCO's 100 boxes per image.
    """

    weights: Path
    imgsz: int = DEFAULT_IMGSZ
    device: str = "auto"
    conf: float = 0.001
    iou: float = 0.7
    max_det: int = 100


class UltralyticsPredictor:
    """A :class:`Predictor` over ultralytics (``.pt`` weights, or any format YOLO() loads)."""

    def __init__(self, cfg: PredictConfig) -> None:
        from detpipe.ultralytics_env import configure_offline

        configure_offline()
        from ultralytics import YOLO

        self.cfg = cfg
        self.device = resolve_device(cfg.device)  # "auto" -> "0" or "cpu"; ultralytics' spelling
        try:
            self.model = YOLO(str(cfg.weights), task="detect")
        except Exception as e:  # ultralytics raises many types for a bad checkpoint
            raise InvalidInput(
                f"{cfg.weights}: cannot load as a YOLO model ({type(e).__name__}: {e})"
            ) from None
        self.names: dict[int, str] = dict(self.model.names)

    def __call__(self, images: Sequence[np.ndarray]) -> list[PredictedBoxes]:
        """Detect on a batch of BGR images (one forward pass for the whole batch)."""
        if not images:
            return []
        results = self.model.predict(
            list(images),
            imgsz=self.cfg.imgsz,
            conf=self.cfg.conf,
            iou=self.cfg.iou,
            max_det=self.cfg.max_det,
            device=self.device,
            verbose=False,
        )
        return [
            PredictedBoxes(
                boxes=r.boxes.xyxy.cpu().numpy().astype(np.float64),
                scores=r.boxes.conf.cpu().numpy().astype(np.float64),
                classes=r.boxes.cls.cpu().numpy().astype(np.int64),
            )
            for r in results
        ]


@dataclass(frozen=True)
class ValSet:
    """The val split of an ultralytics dataset YAML, aligned with its COCO annotations."""

    annotations: Path
    image_paths: dict[str, Path]  # image file name (basename) -> path
    names: list[str]  # class index -> name

    def images_for(self, gt: CocoDataset) -> list[Path]:
        """The image file of every ground-truth image, in ``gt`` order.

        Raises:
            InvalidInput: a ground-truth image is not in the val split.
        """
        missing = [n for n in gt.file_names if Path(n).name not in self.image_paths]
        if missing:
            raise InvalidInput(
                f"{gt.path}: {len(missing)} of {gt.num_images} images are not in the dataset's val split "
                f"(e.g. {missing[0]!r})"
            )
        return [self.image_paths[Path(n).name] for n in gt.file_names]


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        spec = yaml.safe_load(read_text(path))
    except OSError as e:
        raise InvalidInput(f"{path}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise InvalidInput(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(spec, dict) or "val" not in spec or "names" not in spec:
        raise InvalidInput(f"{path}: not an ultralytics dataset YAML (needs 'val' and 'names')")
    return spec


def _names(spec: dict[str, Any], path: Path) -> list[str]:
    names = spec["names"]
    if isinstance(names, dict) and sorted(names) == list(range(len(names))):
        return [str(names[i]) for i in range(len(names))]
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    raise InvalidInput(f"{path}: 'names' must be a list or a {{0: name, 1: name, ...}} mapping")


def _image_files(entry: Path) -> list[Path]:
    if entry.is_dir():
        return sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if entry.is_file() and entry.suffix.lower() == ".txt":
        lines = (line.strip() for line in read_text(entry).splitlines())
        return [entry.parent / line if not Path(line).is_absolute() else Path(line) for line in lines if line]
    if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
        return [entry]
    raise InvalidInput(f"{entry}: val entry is neither an image directory nor a .txt image list")


def resolve_val_set(data: str | Path, gt: str | Path | None = None) -> ValSet:
    """Find the val images, class names and val annotations of an ultralytics dataset YAML.

    Args:
        data: the dataset YAML (``path``, ``val``: a dir, a .txt list or a list of them, ``names``).
        gt: the val COCO json; when None, the YAML's ``val_annotations`` key.

    Raises:
        InvalidInput: unreadable YAML, no annotations given, duplicate image names.
    """
    data = Path(data)
    spec = _load_yaml(data)
    root = Path(spec.get("path") or data.parent)
    root = root if root.is_absolute() else data.parent / root
    if gt is None:
        if not spec.get("val_annotations"):
            raise InvalidInput(
                f"{data}: no val annotations: pass --gt VAL.json or add 'val_annotations: FILE' to the YAML"
            )
        gt = Path(spec["val_annotations"])
        gt = gt if gt.is_absolute() else root / gt
    entries = spec["val"] if isinstance(spec["val"], list) else [spec["val"]]
    paths: dict[str, Path] = {}
    for entry in entries:
        p = Path(entry)
        for image in _image_files(p if p.is_absolute() else root / p):
            if paths.setdefault(image.name, image) != image:
                raise InvalidInput(f"{data}: two val images are named {image.name!r}; names must be unique")
    return ValSet(annotations=Path(gt), image_paths=paths, names=_names(spec, data))


def class_to_category(names: Sequence[str], gt: CocoDataset) -> np.ndarray:
    """Category id of each class index: class i is the i-th category of ``gt`` sorted by id.

    Raises:
        InvalidInput: the number of classes and categories differ.
    """
    ids = np.sort(gt.category_ids)
    if len(names) != len(ids):
        raise InvalidInput(
            f"the model/dataset has {len(names)} classes but {gt.path} has {len(ids)} categories; "
            "class i must be the i-th category sorted by id"
        )
    by_id = dict(zip(gt.category_ids.tolist(), gt.category_names, strict=True))
    renamed = [
        (i, n, by_id[c]) for i, (n, c) in enumerate(zip(names, ids.tolist(), strict=True)) if n != by_id[c]
    ]
    if renamed:
        i, n, c = renamed[0]
        log.warning("class %d is %r but category %d is %r (%d such names)", i, n, ids[i], c, len(renamed))
    return ids


def _read_image(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InvalidInput(f"{path}: missing or not a readable image")
    return image


def predict_detections(
    predictor: Predictor,
    images: Sequence[Path],
    gt: CocoDataset,
    batch: int = 16,
    class_names: Sequence[str] | None = None,
    progress: bool = True,
) -> Detections:
    """Run ``predictor`` over ``images`` (one per ground-truth image, in ``gt`` order).

    Args:
        predictor: images -> per-image boxes (see the module docstring).
        images: the image file of each ``gt`` image (:meth:`ValSet.images_for`).
        gt: the val ground truth (image ids, category ids).
        batch: images per predictor call.
        class_names: the dataset's class names (default: the predictor's ``names``).
        progress: show a progress bar on stderr.

    Returns:
        COCO detections (xywh boxes rounded to 3 decimals, scores to 5, as ultralytics' JSON).

    Raises:
        InvalidInput: class count mismatch, an unreadable image, or a class index out of range.
    """
    if len(images) != gt.num_images:
        raise InvalidInput(f"{len(images)} images given for {gt.num_images} ground-truth images")
    names = (
        list(class_names)
        if class_names is not None
        else [predictor.names[i] for i in sorted(predictor.names)]
    )
    cat_of_class = class_to_category(names, gt)
    if len(predictor.names) != len(names):
        raise InvalidInput(f"the model has {len(predictor.names)} classes, the dataset {len(names)}")
    img_ids, boxes, scores, classes = [], [], [], []
    bar = tqdm(total=len(images), desc="predict", unit="img", disable=not progress)
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        outputs = predictor([_read_image(p) for p in chunk])
        if len(outputs) != len(chunk):
            raise InvalidInput(f"predictor returned {len(outputs)} results for {len(chunk)} images")
        for i, out in enumerate(outputs):
            n = len(out.scores)
            img_ids.append(np.full(n, gt.image_ids[start + i], np.int64))
            boxes.append(np.asarray(out.boxes, np.float64).reshape(n, 4))
            scores.append(np.asarray(out.scores, np.float64).reshape(n))
            classes.append(np.asarray(out.classes, np.int64).reshape(n))
        bar.update(len(chunk))
    bar.close()
    if not images or not sum(len(s) for s in scores):
        return Detections.empty()
    cls = np.concatenate(classes)
    if cls.min() < 0 or cls.max() >= len(cat_of_class):
        raise InvalidInput(f"the model predicted class {int(cls.max())}, the dataset has {len(cat_of_class)}")
    xyxy = np.concatenate(boxes)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    return Detections(
        image_ids=np.concatenate(img_ids),
        category_ids=cat_of_class[cls],
        bboxes=np.round(xywh, BOX_DECIMALS),
        scores=np.round(np.concatenate(scores), SCORE_DECIMALS),
    )
