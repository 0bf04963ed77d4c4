"""Convert COCO annotations to YOLO labels and ultralytics dataset YAMLs.

    from detpipe.data.yolo import YoloConfig, convert
    yamls = convert(YoloConfig(
        annotations="data/annotations/instances_train2017.json", images_dir="data/images/train2017",
        val_annotations="data/annotations/instances_val2017.json", val_images_dir="data/images/val2017",
        subsets_dir="runs/demo/subsets", out="runs/demo/yolo"))

    # or: detpipe data yolo --annotations ... --images-dir ... [--val-...] [--subsets DIR] --out DIR

Output (the split names come from the image dir names, e.g. train2017/val2017)::

    OUT/images/train2017 -> /abs/path/to/images/train2017     (a symlink; images are not copied)
    OUT/labels/train2017/000000000001.txt                     ("cls cx cy w h", normalized, per box)
    OUT/train2017.txt, OUT/val2017.txt                        (./images/<split>/<file> per line)
    OUT/dataset.yaml                                          (path, train, val, names)
    OUT/train2017_5_p.txt + OUT/train2017_5_p.yaml            (one pair per subset list, --subsets)

A subset YAML also carries ``subset_seed``: the ``seed`` of the subsets dir's ``summary.json``
(the draw its lists come from, issue 12 §1; no key without a summary or its seed). ultralytics
keeps unknown keys of a data YAML and ignores them; ``train_summary.json`` reads it back.

ultralytics finds a label by replacing the last ``/images/`` of the image path with
``/labels/`` and never resolves the symlink, so the labels beside it are the ones read.
Class indices are the positions of the categories sorted by id; crowd annotations are
skipped; boxes are clipped to the image; an image without boxes gets an empty label file.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from detpipe.data.coco import CocoDataset, load_coco
from detpipe.errors import InvalidInput
from detpipe.io import atomic_dir, read_json, write_text

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class YoloConfig:
    """What to convert.

    Attributes:
        annotations: train COCO ``instances_*.json``.
        images_dir: the train images; its name (e.g. ``train2017``) names the split.
        val_annotations: val COCO json (with ``val_images_dir``); without it the YAMLs
            validate on the train list.
        val_images_dir: the val images.
        subsets_dir: a ``detpipe subsets`` output dir (or one of its ``draws/seed-<s>`` dirs):
            every ``<train split>_<pct>_<strategy>.txt`` in it gets a copy and a YAML in ``out``.
        out: output dataset root, replaced atomically.
    """

    annotations: str | Path
    images_dir: str | Path
    val_annotations: str | Path | None = None
    val_images_dir: str | Path | None = None
    subsets_dir: str | Path | None = None
    out: str | Path


@dataclass(frozen=True)
class _Split:
    name: str
    images_dir: Path
    ds: CocoDataset


def convert(cfg: YoloConfig) -> list[Path]:
    """Write YOLO labels, image links, list files and dataset YAMLs into ``cfg.out``.

    Args:
        cfg: what to convert.

    Returns:
        The dataset YAMLs written: ``dataset.yaml`` first, then one per subset list.

    Raises:
        InvalidInput: a missing or unusable input; nothing is written.
        ValidationFailed: an annotation file has problems (the messages of ``detpipe data validate``).
    """
    if (cfg.val_annotations is None) != (cfg.val_images_dir is None):
        raise InvalidInput("give --val-annotations and --val-images-dir together, or neither")
    out = Path(cfg.out).absolute()
    for images_dir in (cfg.images_dir, cfg.val_images_dir):
        if images_dir is not None and (
            out == Path(images_dir).absolute() or out in Path(images_dir).absolute().parents
        ):
            raise InvalidInput(f"{out}: output would replace the images it links to ({images_dir})")
    splits = [_load(cfg.annotations, cfg.images_dir)]
    if cfg.val_annotations is not None and cfg.val_images_dir is not None:
        splits.append(_load(cfg.val_annotations, cfg.val_images_dir))
        _check_same_categories(splits[0].ds, splits[1].ds)
        if splits[0].name == splits[1].name:
            raise InvalidInput(f"train and val image dirs have the same name {splits[0].name!r}")
    train = splits[0]
    subsets = _read_subsets(Path(cfg.subsets_dir), train) if cfg.subsets_dir is not None else {}
    seed = _subset_seed(Path(cfg.subsets_dir)) if cfg.subsets_dir is not None else None
    names = _class_names(train.ds)

    with atomic_dir(out) as tmp:
        for split in splits:
            (tmp / "images").mkdir(exist_ok=True)
            (tmp / "images" / split.name).symlink_to(split.images_dir, target_is_directory=True)
            _write_labels(tmp / "labels" / split.name, split.ds)
            lines = [f"./images/{split.name}/{f}\n" for f in split.ds.file_names]
            write_text(tmp / f"{split.name}.txt", "".join(lines))
        val_list = f"{splits[-1].name}.txt"
        if len(splits) == 1:
            log.warning("no val split given: the YAMLs validate on the train images")
        yamls = [_write_yaml(tmp / "dataset.yaml", out, f"{train.name}.txt", val_list, names)]
        for stem, text in subsets.items():
            write_text(tmp / f"{stem}.txt", text)
            yamls.append(_write_yaml(tmp / f"{stem}.yaml", out, f"{stem}.txt", val_list, names, seed))
        os.sync()  # one flush for the label files (written without per-file fsync) before the rename
    log.info("wrote %d YOLO dataset YAML(s) to %s", len(yamls), out)
    return [out / p.name for p in yamls]


def _load(annotations: str | Path, images_dir: str | Path) -> _Split:
    images_dir = Path(images_dir).absolute()
    if not images_dir.is_dir():
        raise InvalidInput(f"{images_dir}: no such directory")
    ds = load_coco(annotations, images_dir)
    seen: set[str] = set()
    for name in ds.file_names:
        if name in seen:
            raise InvalidInput(f"{annotations}: file_name {name!r} appears on more than one image")
        seen.add(name)
    return _Split(images_dir.name, images_dir, ds)


def _class_names(ds: CocoDataset) -> dict[int, str]:
    """``{class index: name}``, indices in category-id order."""
    order = np.argsort(ds.category_ids, kind="stable")
    return {i: ds.category_names[j] for i, j in enumerate(order.tolist())}


def _check_same_categories(train: CocoDataset, val: CocoDataset) -> None:
    a = dict(zip(train.category_ids.tolist(), train.category_names, strict=True))
    b = dict(zip(val.category_ids.tolist(), val.category_names, strict=True))
    if a != b:
        raise InvalidInput(
            f"{val.path}: categories differ from {train.path}'s; both splits need the same ones"
        )


def label_lines(ds: CocoDataset) -> list[list[str]]:
    """YOLO label lines (``cls cx cy w h``, normalized) of every image, in image order.

    Crowd annotations are skipped; boxes are clipped to the image and dropped if nothing is left.
    """
    rank = np.empty(ds.num_classes, np.int64)
    rank[np.argsort(ds.category_ids, kind="stable")] = np.arange(ds.num_classes)
    x0, y0 = ds.ann_bbox[:, 0], ds.ann_bbox[:, 1]
    x1, y1 = x0 + ds.ann_bbox[:, 2], y0 + ds.ann_bbox[:, 3]
    w_img, h_img = ds.widths[ds.ann_image], ds.heights[ds.ann_image]
    x0, x1 = np.clip(x0, 0, w_img), np.clip(x1, 0, w_img)
    y0, y1 = np.clip(y0, 0, h_img), np.clip(y1, 0, h_img)
    keep = ~ds.ann_iscrowd & (x1 > x0) & (y1 > y0)
    cols = np.stack(
        [(x0 + x1) / 2 / w_img, (y0 + y1) / 2 / h_img, (x1 - x0) / w_img, (y1 - y0) / h_img], axis=1
    )
    lines: list[list[str]] = [[] for _ in range(ds.num_images)]
    for i in np.flatnonzero(keep).tolist():
        cx, cy, w, h = cols[i].tolist()
        lines[ds.ann_image[i]].append(f"{rank[ds.ann_category[i]]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return lines


def _write_labels(labels_dir: Path, ds: CocoDataset) -> None:
    labels_dir.mkdir(parents=True)
    per_image = label_lines(ds)
    for name, lines in tqdm(
        zip(ds.file_names, per_image, strict=True),
        total=ds.num_images,
        desc=f"labels {labels_dir.name}",
        unit="img",
        disable=None,
    ):
        path = labels_dir / Path(name).with_suffix(".txt")
        if "/" in name:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{line}\n" for line in lines))


def _read_subsets(subsets_dir: Path, train: _Split) -> dict[str, str]:
    """``{stem: text}`` of every ``<split>_<pct>_<strategy>.txt`` list, each line checked."""
    if not subsets_dir.is_dir():
        raise InvalidInput(f"{subsets_dir}: no such directory")
    pattern = re.compile(rf"{re.escape(train.name)}_\d+(\.\d+)?_[A-Za-z0-9-]+\.txt")
    files = sorted(p for p in subsets_dir.iterdir() if pattern.fullmatch(p.name) and p.is_file())
    if not files:
        raise InvalidInput(
            f"{subsets_dir}: no subset lists named {train.name}_<pct>_<strategy>.txt "
            f"(is it a 'detpipe subsets' output for {train.name}?)"
        )
    prefix = f"./images/{train.name}/"
    known = set(train.ds.file_names)
    lists = {}
    for path in files:
        lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
        for n, line in enumerate(lines, 1):
            if line and not (line.startswith(prefix) and line[len(prefix) :] in known):
                raise InvalidInput(
                    f"{path}: line {n}: {line!r} is not an image of {train.ds.path.name} "
                    f"(expected {prefix}<file_name>)"
                )
        kept = [line for line in lines if line]
        if not kept:
            raise InvalidInput(f"{path}: lists no images")
        lists[path.stem] = "".join(f"{line}\n" for line in kept)
    return lists


def _subset_seed(subsets_dir: Path) -> int | None:
    """The ``seed`` of ``subsets_dir/summary.json`` (the draw its lists are), None without one."""
    path = subsets_dir / "summary.json"
    if not path.is_file():
        return None
    summary = read_json(path)
    seed = summary.get("seed") if isinstance(summary, dict) else None
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidInput(f"{path}: 'seed' is {seed!r}, expected an integer")
    return seed


def _write_yaml(
    path: Path, root: Path, train: str, val: str, names: dict[int, str], subset_seed: int | None = None
) -> Path:
    doc: dict[str, object] = {"path": str(root), "train": train, "val": val, "names": names}
    if subset_seed is not None:
        doc["subset_seed"] = subset_seed
    return write_text(path, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
