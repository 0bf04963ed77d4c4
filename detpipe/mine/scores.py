"""How informative each pool image is, per strategy. Pure numpy on the model's outputs.

- ``uncertainty``: least confidence. An image with no confident detection (none at or above
  ``confident``, 0.25 as in ultralytics' predict) scores 1 (the model is unsure anything is
  there); otherwise ``1 - min(confidence)`` over its confident detections: the weakest one the
  model still reports.
- ``entropy``: of the class scores, over the image's ``top_k`` anchors with the highest class
  score (each anchor's scores normalized to a distribution; entropy divided by log(classes) so
  it lies in [0, 1]); the image's score is the mean. A one-class model has none (always 0).
- ``diversity``: k-center greedy (Sener & Savarese, 2018) on L2-normalized pooled backbone
  features: each pick is the image farthest from everything picked (or labeled) before; its
  score is that distance.
- ``random``: a seeded permutation (the baseline).
"""

from __future__ import annotations

import numpy as np

from detpipe.runtime.nms import Detections

CONFIDENT = 0.25
TOP_K = 20


def uncertainty(dets: Detections, confident: float = CONFIDENT) -> float:
    """Least confidence of one image's detections (module docstring)."""
    conf = dets.scores[dets.scores >= confident]
    return 1.0 if conf.size == 0 else float(1.0 - conf.min())


def class_entropy(raw: np.ndarray, top_k: int = TOP_K) -> float:
    """Mean normalized class-score entropy of one image's raw head output ``(4 + nc, anchors)``."""
    scores = np.asarray(raw[4:], dtype=np.float64)  # (nc, anchors), sigmoid outputs
    nc = scores.shape[0]
    if nc < 2 or scores.shape[1] == 0:
        return 0.0
    top = np.argsort(-scores.max(axis=0), kind="stable")[:top_k]
    p = scores[:, top] / np.clip(scores[:, top].sum(axis=0, keepdims=True), 1e-12, None)
    h = -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=0) / np.log(nc)
    return float(h.mean())


def k_center_greedy(
    features: np.ndarray, budget: int, labeled: np.ndarray | None = None, seed: int = 0
) -> tuple[list[int], list[float]]:
    """Indices of ``budget`` rows of ``features`` picked by k-center greedy, and each pick's distance.

    Starts from the row farthest from ``labeled`` (features of images labeled already) or, with
    none, from a seeded random row (its distance is reported as 1.0).
    """
    x = features / np.clip(np.linalg.norm(features, axis=1, keepdims=True), 1e-12, None)
    n = len(x)
    budget = min(budget, n)
    if labeled is not None and len(labeled):
        lab = labeled / np.clip(np.linalg.norm(labeled, axis=1, keepdims=True), 1e-12, None)
        nearest = np.min(_dist(x, lab), axis=1)
        picks, dists = [], []
    else:
        first = int(np.random.default_rng(seed).integers(n))
        picks, dists = [first], [1.0]
        nearest = _dist(x, x[first : first + 1])[:, 0]
    while len(picks) < budget:
        nearest[picks] = -1.0
        i = int(np.argmax(nearest))
        picks.append(i)
        dists.append(float(nearest[i]))
        nearest = np.minimum(nearest, _dist(x, x[i : i + 1])[:, 0])
    return picks, dists


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between rows of ``a`` and ``b`` (both L2-normalized)."""
    return np.sqrt(np.clip(2.0 - 2.0 * a @ b.T, 0.0, None))
