"""The labeled set of an active-learning cell: the seed set, the oracle, the merge.

::

    gt = load_coco("data/annotations/instances_train2017.json", "data/images/train2017")
    names = seed_set(gt, fraction=10.0, seed=0)           # proportional, like the subsets' p lists
    reveal(gt, names, Path("round-0/labeled.json"))      # their ground truth, as a labeler returns it
    reveal(gt, picks, Path("round-0/revealed.json"))     # ... and that of a round's picks
    add_labels(Path("round-0/labeled.json"), Path("round-0/revealed.json"), images,
               Path("round-1/labeled.json"))                 # detpipe data merge

The seed set is drawn by the subsets' own proportional strategy (:func:`detpipe.subsets.strategies.draw`,
``p``) from the images with annotations, at ``subset_size(fraction, N)`` images, so the seed set of
``seed_fraction`` 10 is the ``train2017_10_p`` list of ``detpipe subsets --seed <seed>``. The
oracle is the training set's own ground truth: "labeling" a pick reveals its annotations. The
picks join the labeled set through ``detpipe data merge`` (:func:`detpipe.data.merge.merge_coco`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from detpipe.data.coco import CocoDataset
from detpipe.data.merge import MergeConfig, merge_coco
from detpipe.errors import InvalidInput
from detpipe.io import write_json
from detpipe.subsets.config import subset_size
from detpipe.subsets.counts import count_instances, filter_images
from detpipe.subsets.strategies import draw


def seed_set(gt: CocoDataset, fraction: float, seed: int) -> list[str]:
    """File names of the proportional ``fraction`` % subset of the images with annotations.

    Raises:
        InvalidInput: no image has annotations.
    """
    kept = filter_images(gt).images
    if not len(kept):
        raise InvalidInput(f"{gt.path}: no image has annotations, nothing to draw a seed set from")
    counts = count_instances(gt, kept)
    (rows,) = draw("p", counts, [subset_size(fraction, len(kept))], seed=seed)
    return [gt.file_names[int(i)] for i in kept[rows]]


def annotated_images(gt: CocoDataset) -> int:
    """Images with at least one annotation: what the subsets (and a sweep's 100 %) count."""
    return len(filter_images(gt).images)


def reveal(gt: CocoDataset, names: Iterable[str], out: Path) -> dict[str, Any]:
    """Write the ground truth of the images ``names`` as a COCO file (the oracle's answer).

    Returns:
        ``{"images": N, "annotations": M}``.

    Raises:
        InvalidInput: a name the ground truth does not have.
    """
    wanted = list(names)
    index = {name: i for i, name in enumerate(gt.file_names)}
    missing = [n for n in wanted if n not in index]
    if missing:
        raise InvalidInput(f"{gt.path} has no image {missing[0]!r} (the oracle reveals only its own images)")
    raw = gt.raw
    ids = {int(gt.image_ids[index[n]]) for n in wanted}
    images = [im for im in raw["images"] if int(im["id"]) in ids]
    annotations = [a for a in raw["annotations"] if int(a["image_id"]) in ids]
    doc = {k: v for k, v in raw.items() if k not in ("images", "annotations")}
    write_json(out, {**doc, "images": images, "annotations": annotations}, indent=None)
    return {"images": len(images), "annotations": len(annotations)}


def add_labels(labeled: Path, revealed: Path, images_dir: Path, out: Path) -> dict[str, Any]:
    """The labeled set with the revealed picks merged in (``detpipe data merge``); its summary."""
    return merge_coco(MergeConfig(base=labeled, add=revealed, images_dir=images_dir, out=out))
