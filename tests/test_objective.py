"""The optional parts of the objective contract: the box bound and its proof, expert classes."""

from __future__ import annotations

import numpy as np
import pytest

from moe2_cli.objective import MONOTONE_BOUND, CoverageObjective
from moe2_cli.problem import Problem
from moe2_cli.solvers import Status, get_solver
from tests.solvers.cases import TopTwoAverage, budgets_between, random_instance


def test_a_monotone_objective_bounds_a_box_by_f_of_its_top():
    rng = np.random.default_rng(0)
    objective = CoverageObjective(random_instance(rng, 9))
    high = rng.integers(1, 1 << 9, size=30)
    low = high & rng.integers(0, 1 << 9, size=30)
    assert objective.bound_proof == MONOTONE_BOUND
    assert np.array_equal(objective.box_bound(low, high), objective(high))
    removed = np.array([0b11, 0b100000], dtype=np.int64)
    assert np.array_equal(objective.box_bound_without(0, 0b111111, removed), objective(0b111111 & ~removed))
    assert np.array_equal(objective.expert_classes(), np.arange(9))  # every expert its own class


def test_an_objective_without_structure_offers_no_bound_and_no_proof():
    rng = np.random.default_rng(1)
    inst = random_instance(rng, 8)
    objective = TopTwoAverage(inst, rng.normal(size=(30, 8)), rng.random((30, 8)))
    assert objective.bound_proof is None
    with pytest.raises(NotImplementedError, match="no bound"):
        objective.box_bound([0], [0b111])
    result = get_solver("brb").solve(Problem(inst, budgets_between(inst, 0.5, 0.6), objective))
    assert result.status is not Status.OPTIMAL  # brb falls back to assuming monotonicity, unproven
