"""Step 1 (drop images without annotations) and the per-image counts every strategy balances.

    kept = filter_images(ds, drop_crowd_only=False)           # FilterResult
    counts = count_instances(ds, kept.images, include_crowd=True)
    stats = subset_stats(counts, np.arange(100))               # instances per class, ...

Instances are counted per class and per class x COCO size bin (area < 32^2 small,
< 96^2 medium, else large, with 'area' as in COCO's evaluation), as a sparse
``(images, 4 x classes)`` matrix: columns ``[0, C)`` are classes, ``C + 3c + s`` is
class ``c`` in size bin ``s``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from detpipe.data.coco import CocoDataset

if TYPE_CHECKING:  # scipy is imported where counts are built: importing detpipe.subsets stays light
    from scipy import sparse

log = logging.getLogger(__name__)

SIZE_BINS: tuple[str, ...] = ("small", "medium", "large")
SMALL_MAX_AREA = 32.0**2
MEDIUM_MAX_AREA = 96.0**2


@dataclass(frozen=True)
class FilterResult:
    """Step 1: which images stay (indices into the dataset, file order) and what was dropped."""

    images: np.ndarray  # (N,) int64
    images_in: int
    dropped_empty: int
    dropped_crowd_only: int
    crowd_only_kept: int
    drop_crowd_only: bool


def filter_images(ds: CocoDataset, drop_crowd_only: bool = False) -> FilterResult:
    """Keep images with at least one annotation (with ``drop_crowd_only``: one non-crowd one).

    Args:
        ds: a validated dataset.
        drop_crowd_only: also drop images whose annotations are all ``iscrowd``.

    Returns:
        The kept image indices (in file order) and the counts of what was dropped.
    """
    total = ds.instances_per_image(include_crowd=True)
    usable = ds.instances_per_image(include_crowd=False)
    empty = total == 0
    crowd_only = (total > 0) & (usable == 0)
    keep = ~empty & ~crowd_only if drop_crowd_only else ~empty
    return FilterResult(
        images=np.flatnonzero(keep),
        images_in=ds.num_images,
        dropped_empty=int(empty.sum()),
        dropped_crowd_only=int(crowd_only.sum()) if drop_crowd_only else 0,
        crowd_only_kept=0 if drop_crowd_only else int(crowd_only.sum()),
        drop_crowd_only=drop_crowd_only,
    )


def size_bins(area: np.ndarray) -> np.ndarray:
    """COCO size bin of each area: 0 small (< 32^2), 1 medium (< 96^2), 2 large."""
    return np.searchsorted(np.array([SMALL_MAX_AREA, MEDIUM_MAX_AREA]), area, side="right")


@dataclass(frozen=True)
class ImageCounts:
    """Per-image instance counts of the kept images, and the full (filtered) set's shares."""

    matrix: sparse.csr_array  # (N, 4C) int64: classes, then class x size bin
    class_names: list[str]
    class_ids: np.ndarray  # (C,) COCO category ids
    full: np.ndarray  # (4C,) float64: column sums over all kept images

    @property
    def num_images(self) -> int:
        return self.matrix.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def full_instances(self) -> np.ndarray:
        """(C,) instances per class in the full filtered set."""
        return self.full[: self.num_classes]

    @property
    def shares(self) -> np.ndarray:
        """(C,) each class's share of all instances in the full filtered set."""
        inst = self.full_instances
        return inst / max(inst.sum(), 1.0)

    @property
    def size_mix(self) -> np.ndarray:
        """(C, 3) each class's small/medium/large fractions in the full set (0 rows if absent)."""
        sizes = self.full[self.num_classes :].reshape(-1, 3)
        return sizes / np.maximum(sizes.sum(1, keepdims=True), 1.0)


def count_instances(ds: CocoDataset, images: np.ndarray, include_crowd: bool = True) -> ImageCounts:
    """Count the instances of each class and class x size bin on each of ``images``.

    Args:
        ds: the dataset.
        images: indices of the kept images; row ``i`` of the result is ``images[i]``.
        include_crowd: count ``iscrowd`` annotations as instances.

    Returns:
        The sparse counts and the full set's per-class totals.
    """
    nc = ds.num_classes
    row_of = np.full(ds.num_images, -1, np.int64)
    row_of[images] = np.arange(len(images))
    keep = row_of[ds.ann_image] >= 0
    if not include_crowd:
        keep &= ~ds.ann_iscrowd
    rows = row_of[ds.ann_image[keep]]
    cat = ds.ann_category[keep]
    size_col = nc + 3 * cat + size_bins(ds.ann_area[keep])
    from scipy import sparse

    matrix = sparse.csr_array(
        (np.ones(2 * len(rows), np.int64), (np.concatenate([rows, rows]), np.concatenate([cat, size_col]))),
        shape=(len(images), 4 * nc),
    )
    matrix.sum_duplicates()
    matrix.sort_indices()
    full = np.bincount(matrix.indices, weights=matrix.data, minlength=4 * nc)
    return ImageCounts(matrix, list(ds.category_names), ds.category_ids.copy(), full)


@dataclass(frozen=True)
class SubsetStats:
    """What one subset holds, and how far its class and size mix are from the full set's."""

    images: int
    instances: int
    class_images: np.ndarray  # (C,) images with at least one instance of the class
    class_instances: np.ndarray  # (C,)
    class_sizes: np.ndarray  # (C, 3)
    shares: np.ndarray  # (C,) instance share in the subset
    rel_dev: np.ndarray  # (C,) |share - full share| / full share; NaN where the full share is 0
    size_dev: np.ndarray  # (C,) total-variation distance of the size mix; NaN where absent

    @property
    def classes_present(self) -> int:
        return int((self.class_instances > 0).sum())

    @property
    def mean_rel_dev(self) -> float:
        return _nan_stat(np.nanmean, self.rel_dev)

    @property
    def max_rel_dev(self) -> float:
        return _nan_stat(np.nanmax, self.rel_dev)

    @property
    def mean_size_dev(self) -> float:
        return _nan_stat(np.nanmean, self.size_dev)

    @property
    def max_size_dev(self) -> float:
        return _nan_stat(np.nanmax, self.size_dev)


def _nan_stat(fn, values: np.ndarray) -> float:
    return float(fn(values)) if np.isfinite(values).any() else float("nan")


def subset_stats(counts: ImageCounts, images: np.ndarray) -> SubsetStats:
    """Statistics of the subset made of ``images`` (row indices into ``counts``).

    Relative deviation of class ``c``: ``|s_c - p_c| / p_c`` with ``s_c`` its share of the
    subset's instances and ``p_c`` that of the full set (NaN for classes without instances
    in the full set). Size-mix deviation: half the L1 distance between the class's
    small/medium/large fractions in the subset and in the full set (0 = same mix, 1 =
    disjoint), over the classes present in the subset.
    """
    nc = counts.num_classes
    sub = counts.matrix[np.asarray(images)]
    x = np.bincount(sub.indices, weights=sub.data, minlength=4 * nc)
    inst = x[:nc]
    class_images = np.bincount(sub.indices[sub.indices < nc], minlength=nc)
    sizes = x[nc:].reshape(nc, 3)
    total = inst.sum()
    shares = inst / total if total else np.zeros(nc)
    p = counts.shares
    with np.errstate(invalid="ignore", divide="ignore"):
        rel_dev = np.where(p > 0, np.abs(shares - p) / p, np.nan)
        mix = sizes / inst[:, None]
        size_dev = np.where(inst > 0, 0.5 * np.abs(mix - counts.size_mix).sum(1), np.nan)
    return SubsetStats(
        images=len(images),
        instances=int(total),
        class_images=class_images.astype(np.int64),
        class_instances=inst.astype(np.int64),
        class_sizes=sizes.astype(np.int64),
        shares=shares,
        rel_dev=rel_dev,
        size_dev=size_dev,
    )
