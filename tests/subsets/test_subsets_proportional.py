"""Building blocks of the proportional strategy: exact-size systematic samples, the stratified
order, and the fast gain table against the direct computation."""

from __future__ import annotations

import numpy as np
import pytest
from subsets_cases import long_tailed_coco, write_coco

from detpipe.data.coco import load_coco
from detpipe.subsets import proportional as prop
from detpipe.subsets.counts import count_instances, filter_images


@pytest.fixture(scope="module")
def counts(tmp_path_factory):
    coco = long_tailed_coco(images=500, classes=7, seed=11, empty=0, crowd_only=0)
    ds = load_coco(write_coco(tmp_path_factory.mktemp("p") / "x.json", coco))
    return count_instances(ds, filter_images(ds).images)


@pytest.mark.parametrize(("length", "k"), [(10, 1), (10, 10), (733, 366), (1000, 999), (7, 3)])
@pytest.mark.parametrize("start", [0.0, 0.37, 0.999])
def test_systematic_takes_exactly_k_evenly(length, k, start):
    pos = prop._systematic(length, k, start)
    assert len(pos) == k and len(set(pos.tolist())) == k
    assert pos.min() >= 0 and pos.max() < length
    # every window of length/k consecutive positions holds one pick, give or take one
    gaps = np.diff(pos)
    if k > 1:
        assert gaps.max() <= np.ceil(length / k) and gaps.min() >= np.floor(length / k)


def test_stratified_order_puts_rarest_class_strata_first(counts):
    pool = prop._Pool(counts, np.arange(counts.num_images))
    order = prop._stratified_order(pool, np.random.default_rng(0).random(pool.n))
    assert sorted(order.tolist()) == list(range(pool.n))
    rank = np.argsort(np.argsort(pool.total[: pool.nc], kind="stable"), kind="stable")
    dense = pool.sub.toarray()[:, : pool.nc]
    rarest = [min(rank[c] for c in np.flatnonzero(dense[i])) for i in order]
    assert rarest == sorted(rarest)


def test_gain_table_matches_the_direct_computation(counts):
    pool = prop._Pool(counts, np.arange(counts.num_images))
    rng = np.random.default_rng(1)
    sel = rng.random(pool.n) < 0.3
    dev = rng.normal(0, 5, pool.nv)
    w = rng.random(pool.nv)
    fast = pool.swap_gains(dev, w, sel)
    inside, outside = np.flatnonzero(sel), np.flatnonzero(~sel)
    np.testing.assert_allclose(fast[inside], pool.gains(dev, w, -1.0, inside), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fast[outside], pool.gains(dev, w, 1.0, outside), rtol=1e-12, atol=1e-12)
    # and the direct computation is the objective difference it claims to be
    i = int(outside[0])
    row = pool.dense(np.array([i]))[0]
    before, after = (w * np.abs(dev)).sum(), (w * np.abs(dev + row)).sum()
    assert fast[i] == pytest.approx(before - after, rel=1e-12)


def test_refinement_lowers_the_objective(counts):
    """Seeded sample vs refined sample of the same size: the objective only goes down."""
    rng = np.random.default_rng(3)
    pool = prop._Pool(counts, np.arange(counts.num_images))
    sel = np.zeros(pool.n, bool)
    sel[prop._stratified_order(pool, rng.random(pool.n))[prop._systematic(pool.n, 40, 0.5)]] = True

    def objective(instances):
        tc = counts.shares * instances
        wc = 1.0 / np.maximum(tc, 0.25)
        return np.concatenate([tc, (tc[:, None] * counts.size_mix).ravel()]), np.concatenate(
            [wc, 0.5 * np.repeat(wc, 3)]
        )

    def value(mask):
        x = pool.sums(np.flatnonzero(mask))
        t, w = objective(x[: pool.nc].sum())
        return (w * np.abs(x - t)).sum()

    before = value(sel)
    x = pool.sums(np.flatnonzero(sel))
    prop._refine(pool, sel, x, objective, rng.random(pool.n), True, thorough=True)
    assert sel.sum() == 40
    np.testing.assert_allclose(x, pool.sums(np.flatnonzero(sel)))  # kept in step with the mask
    assert value(sel) < 0.5 * before
