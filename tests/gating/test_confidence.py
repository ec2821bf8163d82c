"""The paired stratified bootstrap: weights, intervals, and agreement with the analytic SE."""

from __future__ import annotations

import numpy as np
import pytest

from moe2_cli.gating.confidence import Bootstrap, bootstrap_weights, query_values
from moe2_cli.gating.ensemble import GatedObjective, share_weights
from tests.solvers.cases import random_instance


def test_resample_weights_keep_each_category_share_and_count():
    rng = np.random.default_rng(0)
    category = rng.integers(0, 3, 500)
    shares = np.array([0.5, 0.3, 0.2])
    weights = bootstrap_weights(category, shares, 200, seed=1)
    assert weights.shape == (200, 500)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    for c in range(3):
        np.testing.assert_allclose(weights[:, category == c].sum(axis=1), shares[c])
    # Each resample draws as many queries of a category as it has: integer counts.
    counts = weights[:, category == 0] / (shares[0] / (category == 0).sum())
    np.testing.assert_allclose(counts, np.rint(counts), atol=1e-9)
    np.testing.assert_allclose(counts.sum(axis=1), (category == 0).sum())
    assert np.array_equal(weights, bootstrap_weights(category, shares, 200, seed=1))
    assert not np.array_equal(weights, bootstrap_weights(category, shares, 200, seed=2))


@pytest.fixture(scope="module")
def objective():
    rng = np.random.default_rng(3)
    instance = random_instance(rng, 5)
    q = 2000
    category = rng.integers(0, len(instance.categories), q)
    scores = (rng.random((q, 5)) < rng.uniform(0.3, 0.8, 5)).astype(float)
    logits = rng.standard_normal((q, 5))
    return GatedObjective(instance, logits, scores, share_weights(category, instance.shares)), category


def test_interval_matches_f_and_the_analytic_standard_error(objective):
    gated, category = objective
    bootstrap = Bootstrap(gated, category, resamples=2000, seed=0)
    mask = 0b10110
    values = query_values(gated, [mask])[0]
    interval = bootstrap.of(mask)
    assert interval.estimate == pytest.approx(gated.value(mask), abs=1e-9)
    assert interval.low < interval.estimate < interval.high
    shares = gated.instance.shares
    variance = sum(shares[c] ** 2 * values[category == c].var() / (category == c).sum() for c in range(len(shares)))
    assert interval.se == pytest.approx(np.sqrt(variance / shares.sum() ** 2), rel=0.1)
    # A wider level gives a wider interval of the same resamples.
    wide = Bootstrap(gated, category, resamples=2000, seed=0, confidence=0.99).of(mask)
    assert wide.low < interval.low and wide.high > interval.high


def test_paired_differences(objective):
    gated, category = objective
    bootstrap = Bootstrap(gated, category, resamples=500, seed=0)
    same = bootstrap.difference(0b11, 0b11)
    assert same.estimate == same.low == same.high == 0.0 and same.covers_zero
    gap = bootstrap.difference(0b11111, 0b00001)
    assert gap.estimate == pytest.approx(gated.value(0b11111) - gated.value(0b00001), abs=1e-9)
    # Paired: the gap's spread is below that of the two F's treated as independent.
    a, b = bootstrap.of(0b11111), bootstrap.of(0b00001)
    assert gap.se < np.hypot(a.se, b.se)
    with pytest.raises(ValueError):
        Bootstrap(gated, category, confidence=1.0)


def _coverage(bootstrap, category, fold, gate_sd, trials, seed):
    """How often the interval holds the truth when every fold's gate, and the deployed one, is
    off by its own normal draw of sd ``gate_sd``; and the mean width."""
    rng = np.random.default_rng(seed)
    hits, widths = 0, []
    for _ in range(trials):
        gate = 0.7 + gate_sd * rng.standard_normal(fold.max() + 2)
        values = (rng.random(category.size) < gate[fold]).astype(float)
        interval = bootstrap.interval(values)
        hits += interval.low <= gate[-1] <= interval.high
        widths.append(interval.high - interval.low)
    return hits / trials, float(np.mean(widths))


def test_fold_spread_widens_the_interval_by_the_gate_noise(objective):
    gated, category = objective
    fold = np.random.default_rng(5).integers(0, 5, category.size)
    plain = Bootstrap(gated, category, resamples=200, seed=0)
    folded = Bootstrap(gated, category, resamples=200, seed=0, fold=fold)
    # Gate noise twice the query sampling noise: the query bootstrap alone misses it half the time.
    plain_hits, plain_width = _coverage(plain, category, fold, 0.03, 150, seed=1)
    folded_hits, folded_width = _coverage(folded, category, fold, 0.03, 150, seed=1)
    assert plain_hits < 0.6 and folded_hits > 0.8 and folded_width > 2 * plain_width
    # Without gate noise the coverage stays at its level; five folds estimate the spread with
    # four degrees of freedom, so the interval still widens somewhat.
    plain_hits, plain_width = _coverage(plain, category, fold, 0.0, 150, seed=2)
    folded_hits, folded_width = _coverage(folded, category, fold, 0.0, 150, seed=2)
    assert folded_hits >= 0.93 and plain_width <= folded_width < 1.5 * plain_width
    # One fold (a plain split) has no fold-to-fold spread to measure.
    single = Bootstrap(gated, category, resamples=200, seed=0, fold=np.zeros_like(fold))
    values = query_values(gated, [0b101])[0]
    assert single.interval(values) == plain.interval(values)
