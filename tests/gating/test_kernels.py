"""The query-outer k >= 3 kernels (all masks, a few masks) against the masks-outer rank tables
they replace: the same bits, on seeded random gates with ties in the logits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from moe2_cli.gating.ensemble import GatedObjective
from moe2_cli.gating.kernels import RankSubsets, lowest_bits
from tests.gating.test_ensemble import instance, random_objective

ALL_MASKS = [(9, k) for k in range(3, 10)] + [(12, 3), (12, 5), (12, 8), (14, 6), (16, 4), (20, 4), (20, 10)]


@pytest.mark.parametrize("n,k", ALL_MASKS)
def test_all_masks_kernel_gives_the_masks_outer_bits(n, k):
    metric = "neg-cross-entropy" if k % 2 else "accuracy"
    objective = random_objective(n, k, queries=40 if n < 20 else 12, metric=metric, seed=100 * n + k,
                                 binary=n % 2 == 0)
    values = objective.all_values()
    masks = np.arange(1 << n, dtype=np.int64)
    assert np.array_equal(values, objective.evaluate_masks_outer(masks))


def test_all_masks_kernel_agrees_with_the_definition_and_over_threads():
    objective = random_objective(11, 4, queries=50, seed=7, binary=False)
    masks = np.arange(1 << 11, dtype=np.int64)
    np.testing.assert_allclose(objective.all_values(), objective.evaluate_generic(masks), rtol=0, atol=1e-10)
    single = random_objective(11, 4, queries=50, seed=7, binary=False, threads=1)
    assert np.array_equal(single.all_values(), objective.all_values())


def test_all_masks_kernel_with_copies_of_an_llm():
    columns = np.array([0, 1, 2, 3, 1, 4, 5, 0, 6, 7, 2])  # 11 experts over 8 LLMs
    objective = random_objective(11, 3, queries=30, columns=columns, seed=4)
    masks = np.arange(1 << 11, dtype=np.int64)
    assert np.array_equal(objective.all_values(), objective.evaluate_masks_outer(masks))


def test_all_masks_kernel_falls_back_when_softmax_terms_underflow():
    rng = np.random.default_rng(5)
    logits = np.round(rng.normal(size=(20, 10)), 1)
    logits[:4, 0] += 800.0  # column 0 dwarfs the rest: their tabled terms underflow to 0
    scores = (rng.random((20, 10)) < 0.5).astype(float)
    objective = GatedObjective(instance(10, 3), logits, scores, np.full(20, 1 / 20))
    masks = np.arange(1 << 10, dtype=np.int64)
    values = objective.all_values()
    assert np.array_equal(values, objective.evaluate_masks_outer(masks))
    np.testing.assert_allclose(values, objective.evaluate_generic(masks), rtol=0, atol=1e-10)


@pytest.mark.parametrize("n,k", [(5, 3), (9, 4), (16, 3), (20, 7), (20, 19), (33, 6), (62, 4), (62, 12), (62, 40)])
@pytest.mark.parametrize("metric", ["accuracy", "neg-cross-entropy"])
def test_the_scan_of_a_few_masks_gives_the_masks_outer_bits(n, k, metric):
    objective = random_objective(n, k, queries=50, metric=metric, seed=n + k, binary=n % 2 == 1)
    rng = np.random.default_rng(k)
    wide = rng.integers(0, 1 << n, size=40, dtype=np.int64)
    narrow = wide & rng.integers(0, 1 << n, size=40, dtype=np.int64) & rng.integers(0, 1 << n, size=40, dtype=np.int64)
    masks = np.concatenate([wide, narrow, [0, (1 << n) - 1, 1 << (n - 1)]])
    reference = objective.evaluate_masks_outer(masks)
    one_by_one = np.concatenate([objective.evaluate(masks[i:i + 1]) for i in range(masks.size)])
    assert np.array_equal(one_by_one, reference)
    few = np.concatenate([objective.evaluate(masks[i:i + 3]) for i in range(0, masks.size, 3)])
    assert np.array_equal(few, reference)


def test_the_scan_falls_back_when_softmax_terms_underflow():
    objective = random_objective(12, 3, queries=20, seed=5)
    logits = objective.logits.copy()
    logits[:, 0] += 800.0
    rebuilt = GatedObjective(objective.instance, logits, objective.scores, objective.weights)
    masks = np.arange(1, 1 << 12, 97, dtype=np.int64) & ~np.int64(1)
    one_by_one = np.concatenate([rebuilt.evaluate(masks[i:i + 1]) for i in range(masks.size)])
    np.testing.assert_allclose(one_by_one, rebuilt.evaluate_generic(masks), rtol=0, atol=1e-10)


@pytest.mark.parametrize("m,k", [(6, 3), (10, 4), (13, 13), (16, 8)])
def test_rank_subsets_index_every_mask_by_its_k_lowest_bits(m, k):
    subsets = RankSubsets(m, k)
    assert subsets.count == math.comb(m, k) == subsets.masks.size
    assert np.all(np.diff(subsets.masks.astype(np.int64)) > 0)
    space = np.arange(1 << m, dtype=np.int64)
    wide = np.bitwise_count(space) >= k
    assert np.array_equal(subsets.masks[subsets.index[wide]], lowest_bits(space[wide], k))


def test_lowest_bits_keeps_the_k_lowest_set_bits():
    values = np.random.default_rng(0).integers(0, 1 << 62, size=500, dtype=np.int64)
    values[:3] = [0, 1, 0b1011]
    for k in (1, 3, 7):
        expected = []
        for v in values.tolist():
            bits = [b for b in range(63) if v >> b & 1][:k]
            expected.append(sum(1 << b for b in bits))
        assert lowest_bits(values, k).tolist() == expected


@pytest.mark.parametrize("n,k,metric", [(20, 3, "accuracy"), (30, 5, "neg-cross-entropy"), (62, 9, "accuracy")])
def test_large_batches_give_the_masks_outer_bits(n, k, metric):
    objective = random_objective(n, k, queries=25, metric=metric, seed=n * k, binary=False)
    rng = np.random.default_rng(n)
    wide = rng.integers(0, 1 << n, size=4000, dtype=np.int64)
    narrow = wide[:1500] & rng.integers(0, 1 << n, size=1500, dtype=np.int64) & rng.integers(0, 1 << n, size=1500)
    masks = np.concatenate([wide, narrow, [0, (1 << n) - 1]])
    assert (np.bitwise_count(masks) <= k).sum() > 10
    assert np.array_equal(objective.evaluate(masks), objective.evaluate_masks_outer(masks))
    single = random_objective(n, k, queries=25, metric=metric, seed=n * k, binary=False, threads=1)
    assert np.array_equal(single.evaluate(masks), objective.evaluate(masks))


def test_large_batches_fall_back_when_softmax_terms_underflow():
    objective = random_objective(16, 4, queries=20, seed=5)
    logits = objective.logits.copy()
    logits[:3, 0] += 800.0
    rebuilt = GatedObjective(objective.instance, logits, objective.scores, objective.weights)
    masks = np.random.default_rng(2).integers(0, 1 << 16, size=5000, dtype=np.int64)
    values = rebuilt.evaluate(masks)
    assert np.array_equal(values, rebuilt.evaluate_masks_outer(masks))
    np.testing.assert_allclose(values, rebuilt.evaluate_generic(masks), rtol=0, atol=1e-10)
