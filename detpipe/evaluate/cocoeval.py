"""COCO bbox evaluation, numerically identical to ``pycocotools.cocoeval.COCOeval``, vectorized.

    result = evaluate_bbox(load_coco("instances_val2017.json"), load_detections("dt.json"))
    result.stats            # the 12 numbers of COCOeval.stats, same order
    result.precision        # [T, R, K, A, M] like COCOeval.eval["precision"]

What is replicated from pycocotools (``evaluate()`` + ``accumulate()`` + ``summarize()``):

- images are all ground-truth images, categories all ground-truth categories, both sorted
  by id; a category without ground truth keeps precision/recall -1 and drops out of means;
- per (image, category) detections sorted by score with a stable sort (ties keep file
  order) and cut to the largest maxDets; across images, ties keep (image id, rank) order;
- IoU exactly as ``maskUtils.iou`` on boxes (same float operations); against a crowd box
  (``iscrowd=1``) IoU is intersection / detection area;
- crowd and out-of-area ground truth are "ignored": a detection matched to one is neither
  TP nor FP, and crowd boxes can absorb any number of detections;
- greedy matching per IoU threshold: each detection, best score first, takes the
  unmatched non-ignored ground truth with the highest IoU >= threshold (ties: the later
  annotation), and only when there is none an ignored one; unmatched detections outside
  the area range are ignored;
- a match to a ground-truth annotation whose id is 0 counts as unmatched, because
  pycocotools stores matches as ids and tests them for non-zero;
- precision made monotone from the right and sampled at the 101 recall thresholds with a
  left-sided search; ``stats`` are means over entries > -1, as ``summarize()``.

How it is fast: IoU is computed for all (detection, ground truth) pairs of the same image
and category in one vectorized pass, keeping only pairs above the lowest threshold (a
detection typically overlaps one or two boxes). Greedy matching then runs as at most
``max(maxDets)`` vectorized steps, step ``r`` handling the r-th best detection of every
(image, category) at once, for all IoU thresholds and area ranges together. Accumulation
sorts each category's detections once; maxDets and area ranges are masks on that order,
and the recall thresholds are found with one integer search per category.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field

import numpy as np

from detpipe.data.coco import CocoDataset
from detpipe.errors import InvalidInput
from detpipe.evaluate.detections import Detections

log = logging.getLogger(__name__)

_IOU_CHUNK = 4_000_000  # (detection, ground truth) pairs per IoU pass; bounds peak memory


@dataclass(frozen=True)
class EvalParams:
    """COCOeval's bbox parameters (``Params(iouType="bbox")``); the defaults are COCO's."""

    iou_thrs: tuple[float, ...] = tuple(np.linspace(0.5, 0.95, 10).tolist())
    rec_thrs: tuple[float, ...] = tuple(np.linspace(0.0, 1.0, 101).tolist())
    max_dets: tuple[int, ...] = (1, 10, 100)
    area_ranges: tuple[tuple[float, float], ...] = (
        (0.0, 1e5**2),
        (0.0, 32.0**2),
        (32.0**2, 96.0**2),
        (96.0**2, 1e5**2),
    )
    area_labels: tuple[str, ...] = ("all", "small", "medium", "large")

    def __post_init__(self) -> None:
        if len(self.area_ranges) != len(self.area_labels):
            raise InvalidInput("EvalParams: area_ranges and area_labels differ in length")
        if not self.iou_thrs or not self.rec_thrs or not self.max_dets:
            raise InvalidInput("EvalParams: iou_thrs, rec_thrs and max_dets must not be empty")
        object.__setattr__(self, "max_dets", tuple(sorted(self.max_dets)))


@dataclass(frozen=True)
class DetectionMatches:
    """Per-detection outcome, for analyses beyond the 12 numbers (best-F1, PR curves).

    Only detections that take part (the top ``max(maxDets)`` of each image and category)
    are listed, in accumulation order: by category, then score (highest first), then
    image id and rank. ``hit``/``ignored`` are [A, T, N] like COCOeval's ``dtMatches != 0``
    and ``dtIgnore``: a detection is a TP where ``hit & ~ignored``, a FP where
    ``~hit & ~ignored``.
    """

    index: np.ndarray  # (N,) int64, row in the input Detections
    category: np.ndarray  # (N,) int64, index into EvalResult.category_ids
    rank: np.ndarray  # (N,) int64, rank by score within its (image, category)
    scores: np.ndarray  # (N,) float64
    hit: np.ndarray  # (A, T, N) bool
    ignored: np.ndarray  # (A, T, N) bool
    category_bounds: np.ndarray  # (K + 1,) category k occupies [bounds[k], bounds[k+1])


@dataclass(frozen=True)
class EvalResult:
    """What ``COCOeval.accumulate()`` + ``summarize()`` produce, plus the per-detection matches."""

    params: EvalParams
    image_ids: np.ndarray  # (I,) sorted
    category_ids: np.ndarray  # (K,) sorted, the K axis below
    precision: np.ndarray  # (T, R, K, A, M), -1 where a category has no ground truth
    recall: np.ndarray  # (T, K, A, M)
    stats: np.ndarray  # (12,)
    num_gt: np.ndarray  # (K, A) non-ignored ground truth per category and area range
    matches: DetectionMatches = field(repr=False)


def box_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """Element-wise IoU of paired xywh boxes with pycocotools' exact float operations.

    Args:
        dt: (E, 4) detection boxes.
        gt: (E, 4) ground-truth boxes.
        crowd: (E,) bool, the ground truth is a crowd region (IoU = intersection / dt area).
    """
    dx, dy, dw, dh = dt.T
    gx, gy, gw, gh = gt.T
    w = np.minimum(dx + dw, gx + gw) - np.maximum(dx, gx)
    h = np.minimum(dy + dh, gy + gh) - np.maximum(dy, gy)
    inter = w * h
    da = dw * dh
    union = np.where(crowd, da, da + gw * gh - inter)
    overlap = (w > 0) & (h > 0)
    out = np.zeros(len(inter))
    np.divide(inter, union, out=out, where=overlap)
    return out


def evaluate_bbox(gt: CocoDataset, dt: Detections, params: EvalParams | None = None) -> EvalResult:
    """Evaluate detections against ground truth exactly as pycocotools' bbox COCOeval.

    Args:
        gt: the ground truth (all its images and categories are evaluated).
        dt: the detections; image and category ids must exist in ``gt``.
        params: evaluation settings (COCO's defaults when omitted).

    Returns:
        precision/recall arrays, the 12 summary stats and per-detection matches.

    Raises:
        InvalidInput: a detection refers to an unknown image or category.
    """
    p = params or EvalParams()
    dt.check_against(gt)
    image_ids = np.unique(gt.image_ids)
    category_ids = np.unique(gt.category_ids)
    n_cat = len(category_ids)

    g = _ground_truth(gt, image_ids, category_ids, p)
    d, bounds = _top_detections(dt, image_ids, category_ids, p.max_dets[-1])
    hit, ignored = _match(g, d, p)
    num_gt = np.zeros((n_cat, len(p.area_ranges)), np.int64)
    np.add.at(num_gt, g["cat"], g["counted"].T.astype(np.int64))
    precision, recall = _accumulate(hit, ignored, d["rank"], bounds, num_gt, p)
    matches = DetectionMatches(d["index"], d["cat"], d["rank"], d["score"], hit, ignored, bounds)
    stats = summarize(precision, recall, p)
    return EvalResult(p, image_ids, category_ids, precision, recall, stats, num_gt, matches)


def _ground_truth(
    gt: CocoDataset, image_ids: np.ndarray, category_ids: np.ndarray, p: EvalParams
) -> dict[str, np.ndarray]:
    """Ground truth sorted by (category, image, file order), with per-area "counted" flags."""
    img = np.searchsorted(image_ids, gt.image_ids[gt.ann_image])
    cat = np.searchsorted(category_ids, gt.category_ids[gt.ann_category])
    pair = cat * len(image_ids) + img
    order = np.argsort(pair, kind="stable")
    area = gt.ann_area[order]
    crowd = gt.ann_iscrowd[order]
    lo = np.array([r[0] for r in p.area_ranges])[:, None]
    hi = np.array([r[1] for r in p.area_ranges])[:, None]
    counted = ~crowd[None, :] & (area[None, :] >= lo) & (area[None, :] <= hi)  # (A, G): not ignored
    return {
        "pair": pair[order],
        "cat": cat[order],
        "box": gt.ann_bbox[order],
        "crowd": crowd,
        "id_nonzero": gt.ann_ids[order] != 0,
        "counted": counted,
    }


def _top_detections(
    dt: Detections, image_ids: np.ndarray, category_ids: np.ndarray, max_det: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The top ``max_det`` detections of each (image, category), in accumulation order.

    Ranks come from sorting each (image, category) by score, ties in file order; the
    returned order is (category, -score, image, rank), which is the order of COCOeval's
    stable sort of the per-image lists concatenated by image id. Also returns each
    category's bounds in that order.
    """
    n_img = len(image_ids)
    img = np.searchsorted(image_ids, dt.image_ids)
    cat = np.searchsorted(category_ids, dt.category_ids)
    score = dt.scores
    _, score_rank = np.unique(-score, return_inverse=True)  # dense: equal scores share a rank
    n_scores = int(score_rank.max()) + 1 if len(score) else 1
    # stable sorts on one integer key each; ties keep file order, as COCOeval's mergesort
    order = _stable_order(cat * n_img + img, n_scores, score_rank)
    pair = (cat * n_img + img)[order]
    starts = np.maximum.accumulate(np.where(np.r_[True, pair[1:] != pair[:-1]], np.arange(len(pair)), 0))
    rank = np.empty(len(dt), np.int64)
    rank[order] = np.arange(len(pair)) - starts
    keep = np.flatnonzero(rank < max_det)
    order = keep[_stable_order(cat[keep], n_scores, score_rank[keep], n_img, img[keep])]
    box = dt.bboxes[order]
    d = {
        "index": order,
        "img": img[order],
        "cat": cat[order],
        "rank": rank[order],
        "score": score[order],
        "box": box,
        "area": box[:, 2] * box[:, 3],
    }
    d["pair"] = d["cat"] * len(image_ids) + d["img"]
    bounds = np.searchsorted(d["cat"], np.arange(len(category_ids) + 1), side="left")
    return d, bounds


def _stable_order(
    major: np.ndarray,
    n_scores: int,
    score_rank: np.ndarray,
    n_minor: int = 1,
    minor: np.ndarray | None = None,
) -> np.ndarray:
    """Stable argsort by (major, score rank, minor), as one int64 key when it fits, else lexsort."""
    minor = np.zeros_like(major) if minor is None else minor
    if len(major) and (int(major.max()) + 1) * n_scores * n_minor < 2**62:
        return np.argsort((major * n_scores + score_rank) * n_minor + minor, kind="stable")
    return np.lexsort((minor, score_rank, major))


def _candidates(g: dict, d: dict, min_thr: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (detection, ground truth) pairs of one image and category with IoU >= ``min_thr``."""
    g_start = np.searchsorted(g["pair"], d["pair"], side="left")
    counts = np.searchsorted(g["pair"], d["pair"], side="right") - g_start
    ends = np.cumsum(counts)
    dets, gts, ious = [], [], []
    first = 0
    while first < len(counts):
        base = ends[first] - counts[first]
        last = max(int(np.searchsorted(ends, base + _IOU_CHUNK, side="right")), first + 1)
        n = counts[first:last]
        det = np.repeat(np.arange(first, last), n)
        offset = np.arange(len(det)) - np.repeat(ends[first:last] - n - base, n)
        gtx = g_start[det] + offset
        iou = box_iou(d["box"][det], g["box"][gtx], g["crowd"][gtx])
        keep = iou >= min_thr
        dets.append(det[keep])
        gts.append(gtx[keep])
        ious.append(iou[keep])
        first = last
    if not dets:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(dets), np.concatenate(gts), np.concatenate(ious)


def _match(g: dict, d: dict, p: EvalParams) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching for every IoU threshold and area range; returns ``hit``, ``ignored`` [A, T, N]."""
    thrs = np.minimum(np.array(p.iou_thrs), 1 - 1e-10)
    n_area, n_thr, n_det = len(p.area_ranges), len(thrs), len(d["score"])
    hit = np.zeros((n_area, n_thr, n_det), bool)
    ignored = np.zeros((n_area, n_thr, n_det), bool)
    det, gtx, iou = _candidates(g, d, float(thrs.min()))
    if len(det):
        # Order candidates by (step, detection, IoU, annotation order): the greedy choice of a
        # detection is then its last valid candidate, counted (non-ignored) ones first.
        order = np.lexsort((gtx, iou, det, d["rank"][det]))
        det, gtx, iou = det[order], gtx[order], iou[order]
        new_seg = np.r_[True, det[1:] != det[:-1]]
        seg_start = np.flatnonzero(new_seg)
        pos = np.arange(len(det)) - np.repeat(seg_start, np.diff(np.r_[seg_start, len(det)]))
        span = int(pos.max()) + 2
        counted = g["counted"].astype(np.int64)  # (A, G)
        taken = np.zeros((n_area, n_thr, len(g["crowd"])), bool)
        step = d["rank"][det]
        step_bounds = np.flatnonzero(np.r_[True, step[1:] != step[:-1], True])
        for s0, s1 in itertools.pairwise(step_bounds):
            e_gt, e_pos = gtx[s0:s1], pos[s0:s1]
            valid = (~taken[:, :, e_gt] | g["crowd"][e_gt]) & (iou[s0:s1] >= thrs[:, None])
            key = np.where(valid, counted[:, None, e_gt] * span + (e_pos + 1), 0)
            starts = seg_start[np.searchsorted(seg_start, s0) : np.searchsorted(seg_start, s1)] - s0
            best = np.maximum.reduceat(key, starts, axis=2)
            a, t, seg = np.nonzero(best)
            chosen = e_gt[starts[seg] + (best[a, t, seg] - 1) % span]
            taken[a, t, chosen] = True
            dsel = det[s0 + starts[seg]]
            hit[a, t, dsel] = g["id_nonzero"][chosen]
            ignored[a, t, dsel] = ~g["counted"][a, chosen]
    lo = np.array([r[0] for r in p.area_ranges])[:, None]
    hi = np.array([r[1] for r in p.area_ranges])[:, None]
    outside = (d["area"][None, :] < lo) | (d["area"][None, :] > hi)  # (A, N)
    ignored |= ~hit & outside[:, None, :]
    return hit, ignored


def _min_tp(num_gt: int, rec_thrs: np.ndarray) -> np.ndarray:
    """Smallest TP count c with ``c / num_gt >= thr`` in float64, per recall threshold."""
    c = np.maximum(np.floor(rec_thrs * num_gt) - 2, 0)
    while True:
        below = c / num_gt < rec_thrs
        if not below.any():
            return c.astype(np.int64)
        c += below


def _accumulate(
    hit: np.ndarray,
    ignored: np.ndarray,
    rank: np.ndarray,
    bounds: np.ndarray,
    num_gt: np.ndarray,
    p: EvalParams,
) -> tuple[np.ndarray, np.ndarray]:
    """``COCOeval.accumulate()``: interpolated precision [T, R, K, A, M] and recall [T, K, A, M].

    Only true positives matter for the sampled precision: the envelope's maxima sit on
    them, and the first point reaching a recall threshold is the c-th true positive. So
    per (category, area) the work is one cumulative count of the detections that are
    false positives at every threshold, plus small arrays over the columns that are a
    true positive, or a false positive only at some thresholds. The precision at each
    true positive is ``tp / (fp + tp + eps)`` with pycocotools' operands, so the samples
    are bit-identical.
    """
    n_thr, n_rec, n_cat, n_area = len(p.iou_thrs), len(p.rec_thrs), len(bounds) - 1, len(p.area_ranges)
    rec_thrs = np.array(p.rec_thrs)
    precision = -np.ones((n_thr, n_rec, n_cat, n_area, len(p.max_dets)))
    recall = -np.ones((n_thr, n_cat, n_area, len(p.max_dets)))
    thr_rows = np.arange(n_thr)[:, None]
    for k in range(n_cat):
        b0, b1 = int(bounds[k]), int(bounds[k + 1])
        for a in range(n_area):
            npig = int(num_gt[k, a])
            if npig == 0:
                continue
            if b1 == b0:  # ground truth but no detections
                precision[:, :, k, a, :] = 0
                recall[:, k, a, :] = 0
                continue
            need = _min_tp(npig, rec_thrs)  # (R,) TP count reaching each recall threshold
            h, ig = hit[a, :, b0:b1], ignored[a, :, b0:b1]  # (T, n)
            tp_mask, fp_mask = h & ~ig, ~h & ~ig
            fp_always = fp_mask.all(axis=0)
            tp_cols = np.flatnonzero(tp_mask.any(axis=0))
            fp_some_cols = np.flatnonzero(fp_mask.any(axis=0) & ~fp_always)
            before = np.searchsorted(fp_some_cols, tp_cols)  # how many of those precede each TP column
            for m, max_det in enumerate(p.max_dets):
                in_max = rank[b0:b1] < max_det
                fixed_fp = np.cumsum(fp_always & in_max, dtype=np.int64)[tp_cols]  # (n_tp,)
                some_fp = np.cumsum(fp_mask[:, fp_some_cols] & in_max[fp_some_cols], axis=1)  # (T, n_some)
                some_fp = np.concatenate([np.zeros((n_thr, 1), np.int64), some_fp], axis=1)[:, before]
                is_tp = tp_mask[:, tp_cols] & in_max[tp_cols]  # (T, n_tp)
                tp = np.cumsum(is_tp, axis=1)
                tp_f = tp.astype(float)
                pr = tp_f / ((fixed_fp[None, :] + some_fp).astype(float) + tp_f + np.spacing(1))
                pr[~is_tp] = 0.0  # only TP points count; every other point has a lower precision
                env = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
                total = tp[:, -1] if len(tp_cols) else np.zeros(n_thr, np.int64)
                recall[:, k, a, m] = total.astype(float) / npig
                if not len(tp_cols):
                    precision[:, :, k, a, m] = 0
                    continue
                # column of the first point with tp >= need, per threshold row (integer row keys)
                stride = len(tp_cols) + 2
                keys = (tp + thr_rows * stride).ravel()
                col = np.searchsorted(keys, thr_rows * stride + np.minimum(need, stride - 1)[None, :])
                col -= thr_rows * len(tp_cols)
                found = (col < len(tp_cols)) & (need[None, :] <= total[:, None])
                precision[:, :, k, a, m] = np.where(
                    found, env[thr_rows, np.minimum(col, len(tp_cols) - 1)], 0.0
                )
    return precision, recall


def summarize(precision: np.ndarray, recall: np.ndarray, p: EvalParams) -> np.ndarray:
    """``COCOeval.summarize()`` for bbox: the 12 stats (AP, AP50, AP75, APs/m/l, AR1/10/100, ARs/m/l)."""
    iou_thrs = np.array(p.iou_thrs)

    def one(ap: bool, iou_thr: float | None = None, area: str = "all", max_det: int = 100) -> float:
        aind = [i for i, label in enumerate(p.area_labels) if label == area]
        mind = [i for i, m in enumerate(p.max_dets) if m == max_det]
        s = precision if ap else recall
        if iou_thr is not None:
            s = s[np.where(iou_thr == iou_thrs)[0]]
        s = s[:, :, :, aind, mind] if ap else s[:, :, aind, mind]
        return -1.0 if len(s[s > -1]) == 0 else float(np.mean(s[s > -1]))

    md = p.max_dets
    if len(md) < 3:
        raise InvalidInput(f"summarize: needs 3 maxDets values like COCO's (1, 10, 100), got {md}")
    return np.array(
        [
            one(True),
            one(True, iou_thr=0.5, max_det=md[2]),
            one(True, iou_thr=0.75, max_det=md[2]),
            one(True, area="small", max_det=md[2]),
            one(True, area="medium", max_det=md[2]),
            one(True, area="large", max_det=md[2]),
            one(False, max_det=md[0]),
            one(False, max_det=md[1]),
            one(False, max_det=md[2]),
            one(False, area="small", max_det=md[2]),
            one(False, area="medium", max_det=md[2]),
            one(False, area="large", max_det=md[2]),
        ]
    )
