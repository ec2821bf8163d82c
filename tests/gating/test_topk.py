"""The top-k sparse softmax primitive, against brute force and the dense softmax."""

from __future__ import annotations

import numpy as np
import pytest

from moe2_cli.gating.topk import (
    logsumexp,
    masked_log_softmax,
    masked_softmax,
    softmax,
    topk_mask,
    topk_softmax,
)
from moe2_cli.stats.model import MoEParams, translate_gate


def brute_topk(scores: np.ndarray, k: int, allowed: np.ndarray) -> np.ndarray:
    """Row by row: sort allowed indices by (-score, index) and keep the first k."""
    mask = np.zeros(scores.shape, dtype=bool)
    for r, row in enumerate(scores):
        order = sorted((i for i in range(len(row)) if allowed[r, i]), key=lambda i: (-row[i], i))
        mask[r, order[:k]] = True
    return mask


def dense_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("n_experts", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_rows_sum_to_one_with_min_k_nonzeros(n_experts, k):
    logits = np.random.default_rng(n_experts * 10 + k).normal(size=(200, n_experts)) * 3
    weights = topk_softmax(logits, k)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(np.count_nonzero(weights, axis=1) == min(k, n_experts))


@pytest.mark.parametrize("n_experts", [1, 3, 6])
def test_k_equal_to_number_of_experts_is_the_dense_softmax(n_experts):
    logits = np.random.default_rng(n_experts).normal(size=(50, n_experts)) * 5
    np.testing.assert_allclose(topk_softmax(logits, n_experts), dense_softmax(logits), rtol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_mask_matches_brute_force_with_ties_and_allowed_sets(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(-2, 3, size=(300, 6)).astype(float)  # many ties on purpose
    allowed = rng.random((300, 6)) < 0.6
    for k in (1, 2, 4):
        np.testing.assert_array_equal(topk_mask(scores, k, allowed=allowed), brute_topk(scores, k, allowed))
        np.testing.assert_array_equal(topk_mask(scores, k), brute_topk(scores, k, np.ones_like(allowed)))


def test_ties_go_to_the_lowest_index():
    np.testing.assert_array_equal(topk_mask(np.zeros((1, 4)), 2), [[True, True, False, False]])
    np.testing.assert_array_equal(topk_mask(np.array([[1.0, 2.0, 2.0, 2.0]]), 2), [[False, True, True, False]])


def test_select_scores_choose_experts_and_logits_weigh_them():
    logits = np.array([[0.0, 5.0, 1.0]])
    mask = topk_mask(logits, 2, select_scores=np.array([[3.0, 0.0, 2.0]]))
    np.testing.assert_array_equal(mask, [[True, False, True]])
    np.testing.assert_allclose(masked_softmax(logits, mask), [[1 / (1 + np.e), 0.0, np.e / (1 + np.e)]])


def test_experts_outside_the_allowed_set_are_never_selected():
    logits = np.array([[9.0, 1.0, 0.0, 8.0]])
    allowed = np.array([False, True, True, False])
    weights = topk_softmax(logits, 2, allowed=allowed)
    assert weights[0, 0] == 0 and weights[0, 3] == 0
    np.testing.assert_allclose(weights[0, 1:3], dense_softmax(np.array([1.0, 0.0])))


def test_empty_mask_gives_zero_weights_and_minus_inf_logs():
    weights = masked_softmax(np.ones((2, 3)), np.zeros((2, 3), dtype=bool))
    assert np.all(weights == 0)
    assert np.all(np.isneginf(masked_log_softmax(np.ones((2, 3)), np.zeros((2, 3), dtype=bool))))


def test_huge_logits_stay_finite():
    logits = np.array([[1e4, 1e4 - 1, -1e4], [-1e300, 0.0, 1e300]])
    weights = topk_softmax(logits, 2)
    assert np.all(np.isfinite(weights))
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)


def test_k_must_be_positive():
    with pytest.raises(ValueError):
        topk_mask(np.zeros((1, 3)), 0)


def _random_params(rng, k, d, top_k, select_on):
    return MoEParams(beta0=rng.normal(size=k), beta1=rng.normal(size=(k, d)) * 3, a=rng.normal(size=(k, d)),
                     b=rng.normal(size=k), sigma=rng.uniform(0.1, 1, size=k), top_k=top_k, select_on=select_on)


@pytest.mark.parametrize("select_on", ["score", "logit"])
@pytest.mark.parametrize("seed", range(4))
def test_gate_is_invariant_to_a_common_shift_of_beta0_and_beta1(select_on, seed):
    rng = np.random.default_rng(seed)
    params = _random_params(rng, k=5, d=2, top_k=2, select_on=select_on)
    X = rng.uniform(-2, 2, size=(500, 2))
    shifted = translate_gate(params, rng.normal() * 4, rng.normal(size=2) * 4)
    np.testing.assert_allclose(shifted.gate(X), params.gate(X), atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_with_score_selection_beta0_never_changes_which_experts_are_selected(seed):
    rng = np.random.default_rng(seed)
    params = _random_params(rng, k=6, d=2, top_k=3, select_on="score")
    X = rng.uniform(-2, 2, size=(500, 2))
    moved = params.with_(beta0=rng.normal(size=6) * 10)
    np.testing.assert_array_equal(moved.selected(X), params.selected(X))
    assert np.array_equal(moved.gate(X) > 0, params.gate(X) > 0)


def test_softmax_and_logsumexp_agree_with_the_masked_forms_and_survive_large_and_empty_rows():
    rng = np.random.default_rng(4)
    z = rng.normal(scale=300.0, size=(6, 5))  # exp() of these overflows without the shift
    mask = rng.random((6, 5)) < 0.6
    mask[0] = False  # an empty row
    masked = np.where(mask, z, -np.inf)
    np.testing.assert_allclose(softmax(masked[1:], axis=1), masked_softmax(z, mask)[1:], rtol=1e-12)
    lse = logsumexp(masked, axis=1)
    assert lse[0] == -np.inf and np.isfinite(lse[1:][mask[1:].any(axis=1)]).all()
    rows = mask.any(axis=1)
    expected = masked[rows] - lse[rows, None]
    np.testing.assert_allclose(masked_log_softmax(z, mask)[rows][mask[rows]], expected[mask[rows]], rtol=1e-12)
