"""F(S): the fast paths against a plain reference, exactness across paths, references,
monotonicity accounting and the monotone envelope."""

from __future__ import annotations

import numpy as np
import pytest

from moe2_cli.gating.ensemble import (
    GatedObjective,
    MonotoneEnvelope,
    gate_value,
    monotonicity,
    share_weights,
)
from moe2_cli.problem import Instance, members


def instance(n: int, k: int, llms=None) -> Instance:
    llms = llms or [f"llm-{i}" for i in range(n)]
    return Instance(name="t", expert_ids=tuple(f"s{i % 3}/{m}" for i, m in enumerate(llms)), expert_llms=tuple(llms),
                    expert_server=np.arange(n) % 3, server_names=("s0", "s1", "s2"), transmission_s=np.zeros(3),
                    categories=("a", "b"), shares=np.array([0.7, 0.3]), latency_s=np.ones((n, 2)),
                    energy_j=np.ones((n, 2)), accuracy=np.full((n, 2), 0.5), top_k=k, aggregation_s=0.0)


def random_objective(n: int, k: int, *, queries=60, columns=None, metric="accuracy", seed=0, binary=True, **kw):
    rng = np.random.default_rng(seed)
    m = n if columns is None else int(np.max(columns)) + 1
    logits = np.round(rng.normal(size=(queries, m)), 1)  # rounding makes ties common
    scores = (rng.random((queries, m)) < 0.5).astype(float) if binary else rng.random((queries, m))
    weights = share_weights(rng.integers(0, 2, queries), np.array([0.7, 0.3]))
    return GatedObjective(instance(n, k), logits, scores, weights, expert_columns=columns, metric=metric, **kw)


CASES = [(n, k) for n in (1, 2, 7, 8, 9, 16, 17) for k in (1, 2, 3)]


@pytest.mark.parametrize("n,k", CASES)
@pytest.mark.parametrize("metric", ["accuracy", "neg-cross-entropy"])
def test_batched_f_equals_the_plain_reference(n, k, metric):
    objective = random_objective(n, k, metric=metric, seed=n * 10 + k, binary=n % 2 == 0)
    masks = np.random.default_rng(n).integers(0, 1 << n, size=40)
    masks[0], masks[-1] = 0, (1 << n) - 1
    # Query values are stored in units of 2^-exponent: each rounding is at most half a unit.
    tolerance = len(objective.weights) * 2.0 ** -(objective.exponent + 1)
    assert tolerance < 1e-8
    np.testing.assert_allclose(objective(masks), objective.reference_values(masks), rtol=0, atol=tolerance)


@pytest.mark.parametrize("n,k", [(9, 3), (20, 4), (33, 6), (48, 5), (62, 9), (30, 30), (62, 62)])
@pytest.mark.parametrize("metric", ["accuracy", "neg-cross-entropy"])
def test_top_k_tables_and_products_match_the_generic_path(n, k, metric):
    """k >= 3: rank-bit tables (S larger than k) and per-byte products (S within k) against the
    plain vectorised definition, with ties in the logits and small and large selections."""
    objective = random_objective(n, k, queries=50, metric=metric, seed=n + k, binary=n % 2 == 0)
    rng = np.random.default_rng(k)
    wide = rng.integers(0, 1 << n, size=60, dtype=np.int64)
    narrow = wide & rng.integers(0, 1 << n, size=60, dtype=np.int64) & rng.integers(0, 1 << n, size=60, dtype=np.int64)
    masks = np.concatenate([wide, narrow, [0, (1 << n) - 1, 1 << (n - 1)]])
    assert (np.bitwise_count(masks) <= k).any() and ((np.bitwise_count(masks) > k).any() or k == n)
    np.testing.assert_allclose(objective.evaluate(masks), objective.evaluate_generic(masks), rtol=0, atol=1e-10)


def test_top_k_tables_fall_back_when_softmax_terms_underflow():
    objective = random_objective(12, 3, queries=20, seed=5)
    objective.logits[:, 0] += 800.0  # column 0 dwarfs the rest: their tabled terms underflow to 0
    rebuilt = GatedObjective(objective.instance, objective.logits, objective.scores, objective.weights)
    masks = np.arange(1, 1 << 12, 97, dtype=np.int64) & ~np.int64(1)
    np.testing.assert_allclose(rebuilt.evaluate(masks), rebuilt.evaluate_generic(masks), rtol=0, atol=1e-10)


@pytest.mark.parametrize("n,k", [(9, 1), (12, 2), (10, 3), (10, 10)])
def test_all_masks_path_gives_the_same_bits_as_the_per_mask_path(n, k):
    objective = random_objective(n, k, queries=80, seed=n)
    masks = np.random.default_rng(1).integers(0, 1 << n, size=100)
    one_by_one = objective.evaluate(masks)
    assert np.array_equal(objective.all_values()[masks], one_by_one)


def test_chunking_and_threads_do_not_change_a_bit():
    masks = np.random.default_rng(0).integers(0, 1 << 18, size=30_000)
    values = [random_objective(18, 2, queries=300, threads=t)(masks) for t in (1, 2)]
    assert np.array_equal(values[0], values[1])
    objective = random_objective(18, 2, queries=300)
    assert np.array_equal(np.concatenate([objective(masks[:7]), objective(masks[7:])]), values[0])


def test_a_second_copy_of_an_llm_changes_nothing():
    columns = np.array([0, 1, 2, 1, 3, 0, 4])  # experts 1 and 3 host one LLM, 0 and 5 another
    objective = random_objective(7, 2, columns=columns, seed=3)
    values = objective.all_values()
    for mask in range(1 << 7):
        for twin_a, twin_b in ((1, 3), (0, 5)):
            if mask >> twin_a & 1:
                assert values[mask | 1 << twin_b] == values[mask]
    masks = np.arange(1 << 7)
    np.testing.assert_allclose(values, objective.reference_values(masks), atol=1e-9)


def test_references_and_best_single_against_brute_force():
    objective = random_objective(6, 2, seed=9, binary=False)
    w, s = objective.weights, objective.scores
    for mask in (0b000001, 0b010110, 0b111111):
        chosen = members(mask)
        refs = objective.references(mask)
        assert refs["oracle"] == pytest.approx(sum(w[q] * max(s[q, i] for i in chosen) for q in range(len(w))))
        assert refs["best_single"] == pytest.approx(max(w @ s[:, i] for i in chosen))
        assert refs["gate"] == pytest.approx(objective.value(mask), abs=1e-9)
        assert refs["best_single"] <= refs["oracle"] + 1e-12 and refs["gate"] <= refs["oracle"] + 1e-12
        assert objective.best_single_expert(mask) == max(chosen, key=lambda i: (w @ s[:, i], -i))
    assert objective.references(0) == {"gate": 0.0, "oracle": 0.0, "best_single": 0.0}
    assert objective.value(0) == 0.0


def test_gate_value_of_a_single_expert_is_its_weighted_accuracy():
    objective = random_objective(4, 2, seed=2)
    for i in range(4):
        assert gate_value(objective.logits, objective.scores, objective.weights, 2, 1 << i) == pytest.approx(
            objective.weights @ objective.scores[:, i])


def test_monotonicity_counts_every_violating_pair():
    objective = random_objective(7, 2, seed=5)
    report = monotonicity(objective, np.random.default_rng(0))
    values = objective.all_values()
    drops = [values[m] - values[m | 1 << i] for m in range(1 << 7) for i in range(7) if not m >> i & 1]
    bad = [d for d in drops if d > 1e-12]
    assert report.exhaustive and report.pairs == len(drops) == 7 * 2**6
    assert report.violations == len(bad) > 0
    assert report.max_drop == pytest.approx(max(bad)) and report.mean_drop == pytest.approx(np.mean(bad))
    envelope = [max(values[s] for s in range(1 << 7) if s & ~m == 0) for m in range(1 << 7)]
    assert report.envelope_gap == pytest.approx(max(e - v for e, v in zip(envelope, values)))
    sampled = monotonicity(objective, np.random.default_rng(0), samples=5000, exhaustive_limit=0)
    assert not sampled.exhaustive and abs(sampled.rate - report.rate) < 0.05


def test_the_envelope_is_monotone_and_keeps_every_down_set_maximum():
    objective = random_objective(8, 2, seed=6)
    envelope = MonotoneEnvelope(objective)
    values, hat = objective.all_values(), envelope(np.arange(1 << 8))
    for m in range(1 << 8):
        sub = envelope.deployable(m)
        assert sub & ~m == 0 and values[sub] == hat[m] == max(values[s] for s in range(1 << 8) if s & ~m == 0)
    assert monotonicity(objective, np.random.default_rng(0)).violations > 0  # F itself is not monotone
    assert monotonicity_of(hat, 8) == 0
    rng = np.random.default_rng(1)
    for _ in range(5):  # a random down-set: masks within a random cardinality and weight limit
        weight = rng.integers(1, 5, 8)
        feasible = np.array([weight[members(m)].sum() <= 9 for m in range(1 << 8)])
        assert hat[feasible].max() == values[feasible].max()


def monotonicity_of(values: np.ndarray, n: int) -> int:
    return sum(values[m] > values[m | 1 << i] for m in range(1 << n) for i in range(n))


def test_share_weights_split_each_share_over_its_queries():
    category = np.array([0, 0, 0, 1, 2, 2])
    w = share_weights(category, np.array([0.5, 0.2, 0.3]))
    np.testing.assert_allclose([w[category == c].sum() for c in range(3)], [0.5, 0.2, 0.3])
    w = share_weights(np.array([0, 0, 2]), np.array([0.5, 0.2, 0.3]))  # category 1 has no queries
    np.testing.assert_allclose([w[:2].sum(), w[2]], [0.625, 0.375])
