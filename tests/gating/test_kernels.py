"""The query-outer k >= 3 kernels (all masks, a few masks, the compiled single-mask scan)
against the masks-outer rank tables they replace: the same bits, on seeded random gates with
ties in the logits."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from moe2_cli.gating import kernels
from moe2_cli.gating.ensemble import GatedObjective
from moe2_cli.gating.kernels import RankSubsets, lowest_bits
from tests.conftest import ROOT
from tests.gating.test_ensemble import instance, random_objective


@pytest.fixture(params=["compiled", "numpy"])
def single_mask_path(request, monkeypatch):
    """Runs a test through the compiled single-mask scan (numba, the ``fast`` extra) and through
    the numpy path every install has."""
    if request.param == "compiled":
        pytest.importorskip("numba")  # in the ``test`` extra: CI runs both
        kernels.compile_scan()
    else:
        monkeypatch.setattr(kernels, "_COMPILED", [None])  # as if numba were not installed
    return request.param

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
def test_the_scan_of_a_few_masks_gives_the_masks_outer_bits(n, k, metric, single_mask_path):
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


def test_the_scan_falls_back_when_softmax_terms_underflow(single_mask_path):
    objective = random_objective(12, 3, queries=20, seed=5)
    logits = objective.logits.copy()
    logits[:, 0] += 800.0
    rebuilt = GatedObjective(objective.instance, logits, objective.scores, objective.weights)
    masks = np.arange(1, 1 << 12, 97, dtype=np.int64) & ~np.int64(1)
    one_by_one = np.concatenate([rebuilt.evaluate(masks[i:i + 1]) for i in range(masks.size)])
    np.testing.assert_allclose(one_by_one, rebuilt.evaluate_generic(masks), rtol=0, atol=1e-10)


@pytest.mark.parametrize("n", [3, 8, 9, 17, 40, 62])
@pytest.mark.parametrize("metric", ["accuracy", "neg-cross-entropy"])
def test_compiled_single_masks_give_the_numpy_bits_at_every_k(n, metric):
    pytest.importorskip("numba")
    assert kernels.compile_scan()
    rng = np.random.default_rng(n)
    wide = rng.integers(1, 1 << n, size=30, dtype=np.int64)
    masks = np.concatenate([wide, wide & rng.integers(0, 1 << n, size=30, dtype=np.int64), [(1 << n) - 1]])
    for k in sorted({3, 4, n // 2, n - 1, n} & set(range(3, n + 1))):
        objective = random_objective(n, k, queries=70, metric=metric, seed=7 * n + k, binary=k % 2 == 0)
        tables = objective._sums
        for mask in masks.tolist():
            compiled = (kernels.one_mask_total(tables, mask, metric) if mask.bit_count() > k
                        else kernels.few_columns_total(tables, mask, metric))
            reference = (kernels.one_mask_total(tables, mask, metric, compiled=False) if mask.bit_count() > k
                         else float(tables._products(np.array([mask]))[0]))
            assert compiled == reference if mask else compiled is None  # the products take the empty mask
            assert objective.evaluate([mask])[0] == objective.evaluate_masks_outer([mask])[0]


def test_the_compiled_scan_leaves_the_empty_mask_and_underflows_to_numpy():
    pytest.importorskip("numba")
    assert kernels.compile_scan()
    objective = random_objective(12, 3, queries=20, seed=5)
    assert kernels.few_columns_total(objective._sums, 0, "accuracy") is None  # every denominator is 0
    logits = objective.logits.copy()
    logits[:2, 0] += 800.0  # other columns' terms underflow in two queries
    rebuilt = GatedObjective(objective.instance, logits, objective.scores, objective.weights)
    assert kernels.one_mask_total(rebuilt._sums, 0b1111110, "accuracy") is None
    assert kernels.few_columns_total(rebuilt._sums, 0b110, "accuracy") is None


def test_numba_is_imported_only_after_many_single_masks():
    pytest.importorskip("numba")
    code = ("import sys; from moe2_cli.gating import kernels; from tests.gating.test_ensemble import random_objective; "
            "kernels.COMPILE_AFTER = 30; f = random_objective(12, 4, queries=30); "
            "f.evaluate(list(range(0, 4096, 7))); f.all_values(); seen = []; "
            "[seen.append('numba' in sys.modules) or f.evaluate([mask]) for mask in range(1000, 1032)]; "
            "print(seen.index(True), kernels._COMPILED[0] is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.split() == ["31", "True"]  # numpy for the first 30 single masks, compiled from the 31st


def test_without_numba_single_masks_stay_on_numpy(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # makes `import numba` fail, as without the extra
    monkeypatch.setattr(kernels, "_COMPILED", [])
    monkeypatch.setattr(kernels, "COMPILE_AFTER", 0)
    objective = random_objective(12, 4, queries=30, seed=3)
    masks = np.random.default_rng(3).integers(0, 1 << 12, size=40, dtype=np.int64)
    values = [objective.evaluate([mask])[0] for mask in masks.tolist()]
    assert kernels._COMPILED == [None] and not kernels.compile_scan()
    assert values == objective.evaluate_masks_outer(masks).tolist()


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
