"""Rate sweeps: slope fitting, the runtime model, and the CI-fast statistical check of the n^-1/2 rates."""

from __future__ import annotations

import numpy as np
import pytest

from moe2_cli.stats.presets import preset
from moe2_cli.stats.rates import (
    RatesConfig,
    estimate_seconds,
    fit_slope,
    log_grid,
    ols_slopes,
    run_rates,
    seconds_per_sample_iteration,
)

# The statistical check: the default exact-specified grid (8 sizes, 501 to 31,623) with 12
# replicates takes a few seconds. Over seeds 0-29 its slopes were Hellinger -0.54..-0.47 and
# D1 -0.65..-0.38, inside the bands below with room to spare.
CHECK_SIZES = log_grid(501, 31623, 8)
CHECK_REPS = 12
CHECK_SEED = 7


def test_log_grid_is_log_spaced_and_inclusive():
    grid = log_grid(501, 31623, 8)
    assert grid[0] == 501 and grid[-1] == 31623 and len(grid) == 8
    ratios = np.diff(np.log(grid))
    np.testing.assert_allclose(ratios, ratios.mean(), rtol=1e-3)
    assert log_grid(10, 12, 10) == (10, 11, 12)


def test_ols_slopes_recover_a_power_law_and_skip_missing_points():
    n = np.array([100.0, 1000.0, 10000.0, 100000.0])
    y = np.log(3.0 * n ** -0.5)
    assert ols_slopes(np.log(n), y) == pytest.approx(-0.5)
    y[1] = np.nan
    assert ols_slopes(np.log(n), y) == pytest.approx(-0.5)
    assert np.isnan(ols_slopes(np.log(n), np.array([np.nan, np.nan, np.nan, 1.0])))


def test_bootstrap_interval_covers_the_true_slope():
    rng = np.random.default_rng(0)
    sizes = log_grid(500, 50000, 6)
    values = 2.0 * np.asarray(sizes, dtype=float)[:, None] ** -0.5 * rng.lognormal(0, 0.3, size=(6, 10))
    slope, low, high = fit_slope(sizes, values, np.random.default_rng(1), 500)
    assert low <= slope <= high
    assert low < -0.5 < high
    assert abs(slope + 0.5) < 0.1


def test_runtime_estimate_grows_with_the_work():
    small = RatesConfig(sizes=(500, 1000), reps=2)
    large = RatesConfig(sizes=(500, 1000, 5000), reps=4)
    assert 0 < estimate_seconds(small, 1e-6) < estimate_seconds(large, 1e-6)
    over = RatesConfig(spec="over", sizes=(500, 1000), reps=2)
    assert estimate_seconds(over, 1e-6) > estimate_seconds(small, 1e-6)
    assert seconds_per_sample_iteration(preset("ident-k3K2"), "exact", n=500, iterations=2) > 0


def test_sweep_reports_progress_and_is_reproducible():
    truth = preset("ident-k3K2")
    config = RatesConfig(sizes=(300, 600), reps=2, seed=3, n_boot=50)
    calls = []
    first = run_rates(truth, config, progress=calls.append)
    second = run_rates(truth, config)
    assert [(c.task, c.done, c.total) for c in calls] == [("rates", i, 4) for i in range(1, 5)]
    for metric in first.medians:
        np.testing.assert_array_equal(first.values(metric), second.values(metric))
    assert [s.slope for s in first.slopes] == [s.slope for s in second.slopes]
    assert {s.metric for s in first.slopes} == {"hellinger", "tv", "d1", "beta1_split", "a_split", "beta1_rest"}


def test_defaults_depend_on_the_specification():
    exact, over = RatesConfig(spec="exact"), RatesConfig(spec="over")
    assert (exact.tolerance, exact.n_reps, exact.sizes) == (1e-6, 8, log_grid(501, 31623, 8))
    assert (over.tolerance, over.n_reps, over.sizes) == (1e-8, 5, log_grid(1000, 10000, 5))
    with pytest.raises(ValueError):
        RatesConfig(spec="under")


def test_exact_specified_rates_are_about_minus_one_half():
    result = run_rates(preset("ident-k3K2"), RatesConfig(spec="exact", sizes=CHECK_SIZES, reps=CHECK_REPS,
                                                         seed=CHECK_SEED, n_boot=200))
    slopes = {s.metric: s.slope for s in result.slopes}
    assert -0.65 <= slopes["hellinger"] <= -0.40, slopes
    assert -0.75 <= slopes["d1"] <= -0.30, slopes
    assert not any(r.flagged for r in result.replicates)
