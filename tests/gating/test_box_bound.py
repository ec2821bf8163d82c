"""The gated box bound is never below F of a selection in its box, and is F itself, bit for bit,
on a single selection (settled queries round as F rounds them); F depends only on the LLMs."""

from __future__ import annotations

import numpy as np
import pytest

from moe2_cli.gating.ensemble import GatedObjective, share_weights
from moe2_cli.objective import Objective
from tests.solvers.cases import random_instance


def _objective(seed: int, n: int, top_k: int, metric: str) -> GatedObjective:
    rng = np.random.default_rng(seed)
    inst = random_instance(rng, n, servers=3, top_k=top_k)
    columns = np.arange(n)
    columns[n - 1] = columns[0]  # two experts host the same LLM
    probs = rng.beta(1.0, 1.5, (60, n - 1))
    logits = np.round(3 * probs + rng.normal(0, 1, probs.shape), 1)  # rounding makes ties
    weights = share_weights(rng.integers(0, len(inst.categories), 60), inst.shares)
    return GatedObjective(inst, logits, probs, weights, expert_columns=columns, metric=metric)


def _subsets(free: int):
    sub = free
    while True:
        yield sub
        if sub == 0:
            return
        sub = (sub - 1) & free


@pytest.mark.parametrize(("seed", "top_k", "metric"), [(0, 1, "accuracy"), (1, 2, "accuracy"),
                                                       (2, 3, "accuracy"), (3, 4, "neg-cross-entropy"),
                                                       (4, 6, "accuracy"), (5, 9, "accuracy")])
def test_the_box_bound_holds_over_every_selection_of_the_box(seed, top_k, metric):
    n = 10
    objective = _objective(seed, n, top_k, metric)
    rng = np.random.default_rng(seed)
    lows, highs = [], []
    for _ in range(60):
        q = int(rng.integers(1, 1 << n))
        lows.append(q & int(rng.integers(0, 1 << n)))
        highs.append(q)
    bounds = objective.box_bound(lows, highs)
    for p, q, b in zip(lows, highs, bounds):
        inside = np.array([p | s for s in _subsets(q & ~p) if p | s], dtype=np.int64)
        assert b >= objective(inside).max(), (p, q)


@pytest.mark.parametrize("top_k", [1, 2, 3, 5])
def test_the_box_bound_of_one_selection_is_its_f(top_k):
    objective = _objective(7, 9, top_k, "accuracy")
    masks = np.arange(1, 1 << 9, dtype=np.int64)
    bounds, values = objective.box_bound(masks, masks), objective(masks)
    assert np.all(bounds >= values)
    # Every query of a one-selection box is settled: the bound is F to the last bit, except where
    # a query's value lies within a hair of a half unit (then it is rounded up: none here).
    assert np.array_equal(bounds, values)


@pytest.mark.parametrize(("seed", "top_k", "metric"), [(11, 1, "accuracy"), (12, 2, "accuracy"),
                                                       (13, 4, "neg-cross-entropy"), (14, 6, "accuracy")])
def test_f_depends_only_on_the_set_of_llms(seed, top_k, metric):
    # 12 experts over 4 LLMs: selections offering the same LLMs through other copies have one F.
    rng = np.random.default_rng(seed)
    inst = random_instance(rng, 12, servers=4, top_k=top_k)
    columns = rng.integers(0, 4, 12)
    probs = rng.beta(1.0, 1.5, (80, 4))
    logits = np.round(3 * probs + rng.normal(0, 1, probs.shape), 1)
    weights = share_weights(rng.integers(0, len(inst.categories), 80), inst.shares)
    objective = GatedObjective(inst, logits, probs, weights, expert_columns=columns, metric=metric)
    masks = np.arange(1, 1 << 12, dtype=np.int64)
    values, llm_sets = objective(masks), objective.column_masks(masks)
    assert np.array_equal(objective.expert_classes(), columns)
    for llm_set in np.unique(llm_sets):
        same = values[llm_sets == llm_set]
        assert np.all(same == same[0]), llm_set
    assert np.unique(values).size > 1  # the property is not trivially met by a constant F


@pytest.mark.parametrize(("seed", "top_k"), [(8, 2), (9, 4), (10, 7)])
def test_the_bound_without_an_llm_is_the_bound_of_the_smaller_box(seed, top_k):
    objective = _objective(seed, 10, top_k, "accuracy")
    columns = objective.expert_classes()
    rng = np.random.default_rng(seed)
    for _ in range(20):
        q = int(rng.integers(1, 1 << 10))
        p = q & int(rng.integers(0, 1 << 10))
        held = {int(columns[i]) for i in range(10) if p >> i & 1}
        # Each removal takes every expert of q hosting one LLM that p does not hold.
        copies = {}
        for i in range(10):
            if q >> i & 1 and int(columns[i]) not in held:
                copies[int(columns[i])] = copies.get(int(columns[i]), 0) | 1 << i
        removed = np.array(sorted(copies.values()), dtype=np.int64)
        if removed.size:
            direct = objective.box_bound(np.full(removed.size, p), q & ~removed)
            assert np.array_equal(objective.box_bound_without(p, q, removed), direct)
            # The contract's plain version (one box at a time) gives the same bits.
            assert np.array_equal(Objective.box_bound_without(objective, p, q, removed), direct)
