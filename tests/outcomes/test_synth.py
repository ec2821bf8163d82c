"""The synthetic generator: calibrated to the profiles, seeded, and realistic about errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans

from moe2_cli.gating.ensemble import share_weights
from moe2_cli.outcomes import synthesize, synthesize_for
from moe2_cli.outcomes.synth import category_counts, profile_accuracy
from moe2_cli.scenario.scenario import load_scenario


def random_profile(seed: int, llms: int = 8, cats: int = 4):
    rng = np.random.default_rng(seed)
    shares = rng.dirichlet(np.ones(cats) * 3)
    accuracy = rng.uniform(0.05, 0.95, (llms, cats))
    return [f"llm-{i}" for i in range(llms)], [f"c{j}" for j in range(cats)], shares, accuracy


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_llm_category_accuracy_is_within_1_5_points_of_its_profile(seed):
    llms, cats, shares, acc = random_profile(seed)
    table = synthesize(llms, cats, shares, acc, 5000, seed)
    assert np.abs(table.mean_scores() - acc).max() <= 0.015


def test_default_scenario_is_calibrated_and_shared_llms_share_answers():
    scenario = load_scenario(None)
    table = synthesize_for(scenario.instance, 5000, seed=3)
    llms, target = profile_accuracy(scenario.instance)
    assert table.columns == llms
    assert np.abs(table.mean_scores() - target).max() <= 0.015
    per_expert = table.for_instance(scenario.instance)
    for i, llm in enumerate(scenario.instance.expert_llms):
        np.testing.assert_array_equal(per_expert.scores[:, i], table.scores[:, llms.index(llm)])


def test_same_seed_same_table_and_another_seed_differs():
    llms, cats, shares, acc = random_profile(5)
    a, b = (synthesize(llms, cats, shares, acc, 1000, 7) for _ in range(2))
    assert np.array_equal(a.scores, b.scores) and np.array_equal(a.features, b.features)
    c = synthesize(llms, cats, shares, acc, 1000, 8)
    assert not np.array_equal(a.scores, c.scores)


def test_oracle_is_above_the_best_single_but_well_below_100_percent():
    llms, cats, shares, acc = random_profile(11, llms=6)
    acc = np.clip(acc, 0.3, 0.8)
    table = synthesize(llms, cats, shares, acc, 5000, 0)
    w = share_weights(table.category, shares)
    best, oracle = (w @ table.scores).max(), w @ table.scores.max(axis=1)
    assert best + 0.08 < oracle < 0.97
    # errors are correlated: P(both wrong) exceeds the product of the marginals
    wrong = 1 - table.scores
    both = (wrong[:, :, None] * wrong[:, None, :]).mean(axis=0)
    product = np.outer(wrong.mean(axis=0), wrong.mean(axis=0))
    off = ~np.eye(len(llms), dtype=bool)
    assert (both[off] > product[off]).mean() > 0.9


def test_features_reveal_the_topic():
    """Queries of one category split into topics with different best LLMs: k-means on the
    features finds groups whose best LLM differs more than random groups' do."""
    llms, cats, shares, acc = random_profile(2, llms=5, cats=1)
    table = synthesize(llms, cats, [1.0], acc, 4000, 0)
    groups = KMeans(4, n_init=4, random_state=0).fit_predict(table.features)
    spread = np.ptp([table.scores[groups == g].mean(axis=0) for g in range(4)], axis=0).mean()
    shuffled = np.random.default_rng(0).permutation(groups)
    spread_random = np.ptp([table.scores[shuffled == g].mean(axis=0) for g in range(4)], axis=0).mean()
    assert spread > 3 * spread_random


def test_category_counts_follow_shares_and_sum_to_n():
    counts = category_counts([0.35, 0.25, 0.2, 0.2], 1001)
    assert counts.sum() == 1001 and np.abs(counts - np.array([350.35, 250.25, 200.2, 200.2])).max() < 1
