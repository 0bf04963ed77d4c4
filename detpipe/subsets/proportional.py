"""The ``p`` strategy: class-balanced subsets whose per-class instance shares match the full set's.

    subsets = proportional_subsets(counts, sizes=[366, 733, 117266], seed=0)
    # -> one sorted array of image rows per size; nested: each is contained in the next

Method: stratified seeding for rare classes, then refinement by swaps, nested from the
bottom up: each subset grows out of the next smaller one (the smallest out of nothing),
and every grown subset aims at the FULL set's shares, so the requested prefixes of one
stratified ordering of the images are each balanced.

1. *Objective.* Class ``c`` should hold ``T_c = p_c x X`` instances, ``p_c`` being its share
   in the full set and ``X`` the subset's instance count, and each class should keep the
   full set's small/medium/large mix ``m_cs`` (COCO-minitrain's criterion). Minimized:
   ``sum_c |x_c - T_c| / T_c + size_weight x sum_cs |x_cs - m_cs T_c| / T_c``; the first
   sum is the sum of the relative share deviations that the summary reports (with
   ``T_c`` floored at 1/4 in the denominators).
2. *Stratified seeding* (implicit stratification): images are sorted by their rarest class,
   its count on the image, then their second and third rarest classes (a seeded random key
   breaks ties), and a systematic sample with a random start takes every k-th image.
   Every rarest-class stratum thus gets its proportional number of images, +/- 1, and
   within it the counts of the class and of its co-occurring classes are spread evenly:
   the rarest-label-first principle of iterative stratification (Sechidis, Tsoumakas &
   Vlahavas, 2011), done in one vectorized pass. It picks both the candidate pool of a
   growth step (``_POOL_FACTOR`` times the images to add, from the images not yet in the
   subset) and the initial additions out of that pool.
3. *Refinement* (swap local search): every pool image is scored by the objective change of
   removing it (added) or adding it (not added); the best candidates of both sides are
   paired and swapped whenever the exact change of the pair lowers the objective; targets
   follow the subset's instance count between rounds. Small pools (where rounds are cheap)
   are searched until no swap helps, including an exhaustive search over all pairs of the
   best candidates, which finds swaps that only help together (images sharing classes).
4. *Presence.* When the subset has at least as many images as there are classes, every
   class with instances in the full set is present: swaps never remove a class's last
   instance, and while classes are missing, the best image of the most common one is
   swapped in for an added image whose classes all appear elsewhere in the subset (one
   always exists). Below that, coverage comes before balance: the additions start with a
   greedy maximum-coverage pick (the image adding the most missing classes, ties broken by
   the objective), the rest is seeded as above, and swaps keep every class present. A
   uniform sample cannot cover more than the best possible, of which greedy reaches at
   least 1 - 1/e; on long-tailed multi-label data it covers far more than a random one
   (a COCO128-like tail in tests/subsets: 42 vs 19-28 of 71 classes with 13 images), at
   some cost in balance.

Growing from the bottom keeps the smallest subsets, whose balance is the hardest, free to
pick from the whole set (a top-down scheme would confine them to images the larger
subsets happened to choose, e.g. a rare class present only on a crowded image). Without
nesting each size is grown from nothing, with its own seed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence

import numpy as np

from detpipe.subsets.counts import ImageCounts

log = logging.getLogger(__name__)

SIZE_WEIGHT = 0.5
"""Weight of the size-mix term relative to the class-share term."""

_CANDIDATES = 256  # best images on each side walked for swaps per round
_PAIR_SEARCH = 48  # images on each side of the exhaustive pair search
_MAX_ROUNDS = 40
_MAX_ROUNDS_THOROUGH = 400
_MIN_ROUND_GAIN = 0.01  # large pools stop when a round gains less than this share of the objective
_SMALL_POOL = 20_000  # pools up to this many images are searched to convergence
_POOL_FACTOR = 4  # a growth step draws its additions from this many times as many candidates
_MIN_POOL = 4000  # ... and from at least this many
_COVER = 8  # images of a class added to a pool that has none of it
_WEIGHT_FLOOR = 0.25  # floor of T_c in the weights 1 / T_c
_MAX_TABLE = 1024  # largest per-image count served by the gain lookup table

Objective = Callable[[float], tuple[np.ndarray, np.ndarray]]


def proportional_subsets(
    counts: ImageCounts,
    sizes: Sequence[int],
    seed: int = 0,
    nested: bool = True,
    size_weight: float = SIZE_WEIGHT,
    on_subset: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """Class-balanced subsets of the given sizes.

    Args:
        counts: per-image instance counts of the filtered set.
        sizes: images per subset (any order, repeats allowed), each in [1, N].
        seed: seeds the random keys; the same seed gives the same subsets.
        nested: grow each subset out of the next smaller one (else each from nothing).
        size_weight: weight of the small/medium/large mix term.
        on_subset: called with each size when its subset is done (progress reporting).

    Returns:
        One sorted array of row indices into ``counts`` per entry of ``sizes``.
    """
    n_images = counts.num_images
    present = int((counts.full_instances > 0).sum())
    everyone = _Pool(counts, np.arange(n_images))
    order = _stratified_order(everyone, np.random.default_rng([seed]).random(n_images))
    done: dict[int, np.ndarray] = {}
    base = np.zeros(0, np.int64)
    for n in sorted(set(sizes)):
        if not nested:
            base = np.zeros(0, np.int64)
        if n >= n_images:
            chosen = np.arange(n_images)
        else:
            rng = np.random.default_rng([seed, n])
            m = n - len(base)
            in_base = np.zeros(n_images, bool)
            in_base[base] = True
            rest = order[~in_base[order]]  # the other images, in stratified order
            size = min(len(rest), max(_POOL_FACTOR * m, _MIN_POOL))
            pool = _cover_classes(everyone, rest[_systematic(len(rest), size, rng.random())], in_base)
            added = _grow(counts, base, pool, m, rng, size_weight, coverage=min(n, present))
            chosen = np.sort(np.concatenate([base, pool[added]]))
        done[n] = chosen
        base = chosen
        if on_subset is not None:
            on_subset(n)
    return [done[n] for n in sizes]


class _Pool:
    """The sparse counts of a pool of images, flattened for vectorized gain computations."""

    def __init__(self, counts: ImageCounts, rows: np.ndarray) -> None:
        sub = counts.matrix[rows]
        self.sub = sub
        self.n = len(rows)
        self.nc = counts.num_classes
        self.nv = sub.shape[1]
        self.indptr = sub.indptr
        self.var = sub.indices
        self.val = sub.data.astype(np.float64)
        self.row = np.repeat(np.arange(self.n), np.diff(self.indptr))
        self.total = np.bincount(self.var, weights=self.val, minlength=self.nv)
        self.has_empty_rows = bool((np.diff(self.indptr) == 0).any())
        self.kmax = int(self.val.max(initial=0)) + 1
        self.table_index = self.var.astype(np.int64) * self.kmax + self.val.astype(np.int64)
        self._idx: np.ndarray | None = None  # see _table_rows
        self._idx_sel: np.ndarray | None = None

    @functools.cached_property
    def by_class(self):
        """Rows by class: ``by_class.indices[by_class.indptr[c]:by_class.indptr[c + 1]]`` hold class ``c``."""
        from scipy import sparse  # here, not at import: importing detpipe.subsets stays light

        is_cls = self.var < self.nc
        return sparse.csc_array(
            (self.val[is_cls], (self.row[is_cls], self.var[is_cls])), shape=(self.n, self.nc)
        )

    def nonzeros(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in ``rows``, index into var/val) of every nonzero of ``rows``."""
        starts = self.indptr[rows]
        lens = self.indptr[rows + 1] - starts
        owner = np.repeat(np.arange(len(rows)), lens)
        pos = np.arange(lens.sum()) + np.repeat(starts - (np.cumsum(lens) - lens), lens)
        return owner, pos

    def sums(self, rows: np.ndarray) -> np.ndarray:
        """Column sums over ``rows``."""
        _, pos = self.nonzeros(rows)
        return np.bincount(self.var[pos], weights=self.val[pos], minlength=self.nv)

    def dense(self, rows: np.ndarray) -> np.ndarray:
        return self.sub[rows].toarray().astype(np.float64)

    def gains(self, dev: np.ndarray, w: np.ndarray, sign: float, rows: np.ndarray) -> np.ndarray:
        """Objective decrease of adding (sign +1) or removing (-1) each of ``rows`` on its own."""
        owner, pos = self.nonzeros(rows)
        var, val = self.var[pos], self.val[pos] * sign
        d = dev[var]
        return np.bincount(owner, weights=w[var] * (np.abs(d) - np.abs(d + val)), minlength=len(rows))

    def swap_gains(self, dev: np.ndarray, w: np.ndarray, sel: np.ndarray) -> np.ndarray:
        """Per row: objective decrease of removing it (rows in ``sel``) or adding it (others).

        Counts are small integers, so this reads a (variable, count) table: one gather
        instead of a dozen passes over the nonzeros.
        """
        if self.kmax > _MAX_TABLE or self.has_empty_rows:  # unusual: do it the long way
            out = self.gains(dev, w, 1.0, np.arange(self.n))
            inside = np.flatnonzero(sel)
            out[inside] = self.gains(dev, w, -1.0, inside)
            return out
        ks = np.arange(self.kmax, dtype=np.float64)
        a = np.abs(dev)[:, None]
        add = w[:, None] * (a - np.abs(dev[:, None] + ks))
        rem = w[:, None] * (a - np.abs(dev[:, None] - ks))
        table = np.concatenate([add.ravel(), rem.ravel()])
        return np.add.reduceat(table[self._table_rows(sel)], self.indptr[:-1])

    def _table_rows(self, sel: np.ndarray) -> np.ndarray:
        """Per nonzero, its row in the gain table: the removal half for rows in ``sel``.

        Kept between calls and updated on the rows whose membership changed (a round
        swaps a few hundred of the pool's rows).
        """
        half = self.nv * self.kmax
        if self._idx_sel is None:
            self._idx = self.table_index + half * sel[self.row]
        else:
            changed = np.flatnonzero(sel != self._idx_sel)
            owner, pos = self.nonzeros(changed)
            self._idx[pos] = self.table_index[pos] + half * sel[changed][owner]
        self._idx_sel = sel.copy()
        return self._idx

    def row_dicts(self, rows: np.ndarray) -> _RowDicts:
        """``{variable: count}`` of each of ``rows``, built as the swap walk reaches them."""
        owner, pos = self.nonzeros(rows)
        ends = np.cumsum(np.bincount(owner, minlength=len(rows)))
        return _RowDicts(self.var[pos].tolist(), self.val[pos].tolist(), [0, *ends.tolist()])


class _RowDicts:
    """Rows of a candidate list as ``{variable: count}`` dicts, each built when first read."""

    def __init__(self, var: list[int], val: list[float], bounds: list[int]) -> None:
        self.var, self.val, self.bounds = var, val, bounds

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def __getitem__(self, i: int) -> dict[int, float]:
        lo, hi = self.bounds[i], self.bounds[i + 1]
        return dict(zip(self.var[lo:hi], self.val[lo:hi], strict=True))


def _grow(
    counts: ImageCounts,
    base: np.ndarray,
    pool_rows: np.ndarray,
    m: int,
    rng: np.random.Generator,
    size_weight: float,
    coverage: int,
) -> np.ndarray:
    """Boolean mask over ``pool_rows`` of the ``m`` images that ``base`` grows by.

    The grown subset holds at least ``coverage`` classes (refinement swaps never drop a
    class once that is every class).
    """
    pool = _Pool(counts, pool_rows)
    base_x = _column_sums(counts, base)
    shares, mix = counts.shares, counts.size_mix

    def objective(instances: float) -> tuple[np.ndarray, np.ndarray]:
        """(targets, weights) of every variable, for a subset of ``instances`` instances."""
        tc = shares * instances
        wc = 1.0 / np.maximum(tc, _WEIGHT_FLOOR)
        target = np.concatenate([tc, (tc[:, None] * mix).ravel()])
        return target, np.concatenate([wc, size_weight * np.repeat(wc, 3)])

    jitter = rng.random(pool.n)
    sel = np.zeros(pool.n, bool)
    order = _stratified_order(pool, jitter)
    start = rng.random()
    every = int((counts.full_instances > 0).sum())
    short = coverage < every  # too few images for every class: cover as many as possible first
    if short:
        picked = _max_coverage(pool, base_x[: pool.nc] > 0, m, base_x, objective, jitter)
        sel[picked] = True
        rest = order[~sel[order]]
        sel[rest[_systematic(len(rest), m - len(picked), start)]] = True
    else:
        sel[order[_systematic(pool.n, m, start)]] = True
    x = base_x + pool.sums(np.flatnonzero(sel))
    # with classes to cover, swaps keep every class present (coverage comes before balance)
    _refine(
        pool, sel, x, objective, jitter, True if short else coverage >= every, thorough=pool.n <= _SMALL_POOL
    )
    holders = np.bincount(counts.matrix[base].indices, minlength=pool.nv)[: pool.nc] if len(base) else 0
    _ensure_coverage(pool, sel, base_x, holders, coverage, objective)
    return sel


def _column_sums(counts: ImageCounts, rows: np.ndarray) -> np.ndarray:
    """Instance counts of every variable over ``rows`` (float, like the pools' sums)."""
    sub = counts.matrix[rows]
    return np.bincount(sub.indices, weights=sub.data, minlength=sub.shape[1]).astype(np.float64)


def _max_coverage(
    pool: _Pool,
    covered: np.ndarray,
    m: int,
    base_x: np.ndarray,
    objective: Objective,
    jitter: np.ndarray,
) -> np.ndarray:
    """Up to ``m`` pool rows picked greedily for the classes they add to ``covered``.

    Each step takes the row holding the most classes not yet covered (greedy maximum
    coverage, within 1 - 1/e of the best possible; Nemhauser, Wolsey & Fisher, 1978), ties
    broken by the balance objective (then ``jitter``); it stops early once no row adds a
    class. A uniform sample of the same size cannot beat the best coverage, and on
    long-tailed multi-label data it stays well below the greedy one.
    """
    nc = pool.nc
    is_cls = pool.var < nc
    cls_row, cls_var = pool.row[is_cls], pool.var[is_cls]
    covered = covered.copy()
    taken = np.zeros(pool.n, bool)
    x = base_x.copy()
    picked: list[int] = []
    while len(picked) < m:
        new = np.bincount(cls_row, weights=~covered[cls_var] & ~taken[cls_row], minlength=pool.n)
        best = new.max(initial=0)
        if best < 1:
            break
        ties = np.flatnonzero(new == best)
        target, w = objective(x[:nc].sum())
        gain = pool.gains(x - target, w, 1.0, ties)
        r = int(ties[np.lexsort((jitter[ties], -gain))[0]])
        picked.append(r)
        taken[r] = True
        covered[cls_var[cls_row == r]] = True
        x = x + pool.sums(np.array([r]))
    return np.array(picked, np.int64)


def _cover_classes(everyone: _Pool, pool: np.ndarray, in_base: np.ndarray) -> np.ndarray:
    """``pool`` (sorted) plus a few images of each class it misses that the rest still has."""
    in_pool = np.zeros(everyone.n, bool)
    in_pool[pool] = True
    bc = everyone.by_class
    extra = []
    for c in range(everyone.nc):
        rows = bc.indices[bc.indptr[c] : bc.indptr[c + 1]]
        if not in_pool[rows].any():
            extra.append(rows[~in_base[rows]][:_COVER])
    return np.unique(np.concatenate([pool, *extra]))


def _stratified_order(pool: _Pool, jitter: np.ndarray) -> np.ndarray:
    """Rows sorted by their rarest class, its count, then 2nd and 3rd rarest (ties: ``jitter``)."""
    nc = pool.nc
    is_cls = pool.var < nc
    rank = np.empty(nc, np.int64)
    rank[np.lexsort((np.arange(nc), pool.total[:nc]))] = np.arange(nc)
    row, r, k = pool.row[is_cls], rank[pool.var[is_cls]], pool.val[is_cls]
    order = np.argsort(row * nc + r)  # by row, then rarest class first (pairs are unique)
    row, r, k = row[order], r[order], k[order].astype(np.int64)
    first = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
    nclass = np.diff(np.r_[first, len(row)])
    # each level's (class rank ascending, count descending) as one integer, the three
    # levels packed into one int64 where they fit: one sort key instead of six
    kmax = int(k.max(initial=0)) + 1
    base = (nc + 1) * kmax
    keys = []
    for level in range(3):
        has = nclass > level
        key = np.full(pool.n, nc * kmax + kmax - 1, np.int64)  # no class at this level: last
        key[row[first[has]]] = r[first[has] + level] * kmax + (kmax - 1 - k[first[has] + level])
        keys.append(key)
    if base**3 < 2**62:
        keys = [(keys[0] * base + keys[1]) * base + keys[2]]
    return np.lexsort((jitter, *reversed(keys)))  # lexsort's primary key is the last one


def _systematic(length: int, k: int, start: float) -> np.ndarray:
    """Positions of a systematic sample of exactly ``k`` of ``length`` (random ``start`` in [0, 1)).

    Position ``i`` is taken when ``floor((i + 1) k / length + start)`` steps up; integer
    arithmetic keeps the count exact.
    """
    offset = int(start * length)
    step = (np.arange(length + 1, dtype=np.int64) * k + offset) // length
    return np.flatnonzero(np.diff(step) > 0)


def _top(score: np.ndarray, jitter: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first (ties broken by ``jitter``)."""
    if k < len(score):
        part = np.argpartition(-score, k - 1)[:k]
        part = np.flatnonzero(score >= score[part].min())  # every tie at the boundary
    else:
        part = np.arange(len(score))
    return part[np.lexsort((jitter[part], -score[part]))[:k]]


def _refine(
    pool: _Pool,
    sel: np.ndarray,
    x: np.ndarray,
    objective: Objective,
    jitter: np.ndarray,
    require_presence: bool,
    thorough: bool,
) -> None:
    """Swap local search on ``sel`` (and its column sums ``x``), both updated in place.

    Each round ranks every image by the objective change of removing it (subset) or adding
    it (rest) and walks the best ``_CANDIDATES`` of each side. A ``thorough`` search runs
    until no swap helps, trying all pairs of the best ``_PAIR_SEARCH`` on each side when the
    walk finds none; otherwise it stops once a round gains less than ``_MIN_ROUND_GAIN``.
    """
    nc = pool.nc
    for _ in range(_MAX_ROUNDS_THOROUGH if thorough else _MAX_ROUNDS):
        target, w = objective(x[:nc].sum())
        dev = x - target
        before = float((w * np.abs(dev)).sum())
        inside, outside = np.flatnonzero(sel), np.flatnonzero(~sel)
        if not len(inside) or not len(outside):
            return
        g = pool.swap_gains(dev, w, sel)
        rem = inside[_top(g[inside], jitter[inside], _CANDIDATES)]
        add = outside[_top(g[outside], jitter[outside], _CANDIDATES)]
        devl = dev.tolist()
        guard = x[:nc].tolist() if require_presence else None
        gained = _walk(pool.row_dicts(rem), pool.row_dicts(add), devl, w.tolist(), guard, rem, add, sel)
        x[:] = target + np.array(devl)
        if thorough and gained <= 1e-9 * before:
            target, w = objective(x[:nc].sum())
            g = pool.swap_gains(x - target, w, sel)
            inside, outside = np.flatnonzero(sel), np.flatnonzero(~sel)
            rem = inside[_top(g[inside], jitter[inside], _PAIR_SEARCH)]
            add = outside[_top(g[outside], jitter[outside], _PAIR_SEARCH)]
            if _all_pairs(pool, sel, x, x - target, w, rem, add, require_presence) <= 1e-9 * before:
                return
        elif not thorough and gained <= _MIN_ROUND_GAIN * (before - gained):
            return


def _walk(
    rem_rows: _RowDicts,
    add_rows: _RowDicts,
    dev: list[float],
    w: list[float],
    guard: list[float] | None,
    rem: np.ndarray,
    add: np.ndarray,
    sel: np.ndarray,
) -> float:
    """Walk both candidate lists best first, swapping each pair that lowers the objective.

    ``dev`` and ``guard`` (class counts kept above zero, for presence) are updated in place.
    Returns the decrease of the objective.

    A pair's change is its two candidates' own changes, corrected on the variables they
    share; a candidate's own gain only changes when a swap changes ``dev``, so it is cached
    until the next swap.
    """
    nc = len(guard) if guard is not None else 0
    i = j = 0
    gained = 0.0
    n_rem, n_add = len(rem_rows), len(add_rows)
    g_rem = g_add = None  # own gains of the current candidates (None: to compute)
    r: dict[int, float] = {}
    a: dict[int, float] = {}
    while True:
        if g_rem is None:
            r = rem_rows[i]
            g_rem = 0.0
            for v, k in r.items():
                d = dev[v]
                g_rem += w[v] * (abs(d) - abs(d - k))
        if g_add is None:
            a = add_rows[j]
            g_add = 0.0
            for v, k in a.items():
                d = dev[v]
                g_add += w[v] * (abs(d) - abs(d + k))
        delta = -g_rem - g_add
        shared = r.keys() & a.keys()
        for v in shared:
            d, kr, ka = dev[v], r[v], a[v]
            delta += w[v] * (abs(d - kr + ka) - abs(d - kr) - abs(d + ka) + abs(d))
        if delta < -1e-12 and not (
            guard is not None
            and any(v < nc and guard[v] > 0 and guard[v] - k + a.get(v, 0.0) <= 0 for v, k in r.items())
        ):
            for v, k in r.items():
                dev[v] -= k
                if v < nc and guard is not None:
                    guard[v] -= k
            for v, k in a.items():
                dev[v] += k
                if v < nc and guard is not None:
                    guard[v] += k
            sel[rem[i]], sel[add[j]] = False, True
            gained -= delta
            i += 1
            j += 1
            g_rem = g_add = None
        elif g_rem < g_add:  # no gain with this pair: drop the weaker candidate
            i += 1
            g_rem = None
        else:
            j += 1
            g_add = None
        if i >= n_rem or j >= n_add:
            return gained


def _all_pairs(
    pool: _Pool,
    sel: np.ndarray,
    x: np.ndarray,
    dev: np.ndarray,
    w: np.ndarray,
    rem: np.ndarray,
    add: np.ndarray,
    require_presence: bool,
) -> float:
    """Repeatedly swap the best of all (removal, addition) pairs; ``sel``, ``x`` in place."""
    k_rem, k_add = pool.dense(rem), pool.dense(add)
    cols = np.flatnonzero((k_rem != 0).any(0) | (k_add != 0).any(0))
    kr, ka, d, ws = k_rem[:, cols], k_add[:, cols], dev[cols], w[cols]
    is_cls = cols < pool.nc
    gained = 0.0
    while len(kr) and len(ka):  # each swap takes its two rows out of the search
        change = ka[None, :, :] - kr[:, None, :]
        delta = (ws * (np.abs(d + change) - np.abs(d))).sum(-1)
        if require_presence:
            now = x[cols[is_cls]]
            delta[((now + change[:, :, is_cls] <= 0) & (now > 0)).any(-1)] = np.inf
        i, j = np.unravel_index(np.argmin(delta), delta.shape)
        if not delta[i, j] < -1e-12:
            break
        gained -= float(delta[i, j])
        sel[rem[i]], sel[add[j]] = False, True
        d = d + change[i, j]
        x[cols] += change[i, j]
        kr, rem = np.delete(kr, i, axis=0), np.delete(rem, i)
        ka, add = np.delete(ka, j, axis=0), np.delete(add, j)
    return gained


def _ensure_coverage(
    pool: _Pool,
    sel: np.ndarray,
    base_x: np.ndarray,
    base_holders: np.ndarray | int,
    coverage: int,
    objective: Objective,
) -> None:
    """Until ``coverage`` classes are present, swap the best image of the most common missing
    class in for an added image whose classes all appear elsewhere in the subset.

    Such an image exists while the base holds at least ``min(its size, classes)`` classes:
    were every added image the only holder of some class, those classes alone would already
    reach the coverage. ``base_holders``: images of the base holding each class.
    """
    nc = pool.nc
    is_cls = pool.var < nc
    while True:
        x = base_x + pool.sums(np.flatnonzero(sel))
        missing = np.flatnonzero((x[:nc] == 0) & (pool.total[:nc] > 0))
        if not len(missing) or int((x[:nc] > 0).sum()) >= coverage:
            return
        target, w = objective(x[:nc].sum())
        c = int(missing[np.argmax(pool.total[missing])])
        cands = pool.by_class.indices[pool.by_class.indptr[c] : pool.by_class.indptr[c + 1]]
        add = int(cands[np.argmax(pool.gains(x - target, w, 1.0, cands))])
        sel[add] = True
        x = x + pool.sums(np.array([add]))
        # an added row may go if every class on it is held by another image of the subset
        holders = base_holders + np.bincount(pool.var[is_cls & sel[pool.row]], minlength=nc)
        lonely = is_cls & (holders[np.where(is_cls, pool.var, 0)] <= 1)
        safe = np.flatnonzero(sel & (np.bincount(pool.row[lonely], minlength=pool.n) == 0))
        if not len(safe):  # cannot happen (see above); keep the subset's size regardless
            sel[add] = False
            log.warning("could not bring class %d into a subset without dropping another", c)
            return
        log.debug("coverage: class %d swapped in with row %d", c, add)
        sel[int(safe[np.argmax(pool.gains(x - target, w, -1.0, safe))])] = False
