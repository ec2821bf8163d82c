"""The runner-up (the best selection without some chosen LLM) solved by brb equals the one
found by scoring every selection; forbidden experts are honoured by every exact solver; and
brb resolves ties in F exactly as exhaustive search does."""

from __future__ import annotations

import numpy as np
import pytest

from moe2_cli.gating.ensemble import GatedObjective, share_weights
from moe2_cli.problem import Problem, members, popcount
from moe2_cli.rules import runner_up
from moe2_cli.session import open_session
from moe2_cli.solvers import SOLVERS, Status, get_solver
from moe2_cli.solvers.base import tie_costs, tie_key
from tests.conftest import ROOT
from tests.solvers.cases import budgets_between, random_instance


def enumerated_runner_up(problem: Problem, mask: int, gated: GatedObjective) -> int | None:
    """Every feasible selection scored: the best that does not offer every LLM of ``mask``
    (on ties the cheaper: least energy, then latency, then fewest experts, then lowest mask)."""
    masks = np.arange(1, 1 << problem.instance.n_experts, dtype=np.int64)
    masks = masks[problem.feasible(masks)]
    chosen = gated.column_masks(np.array([mask]))[0]
    other = (gated.column_masks(masks) & chosen) != chosen
    if not other.any():
        return None
    masks, values = masks[other], gated(masks[other])
    costs = tie_costs(problem, masks)
    return int(masks[np.lexsort((masks, popcount(masks), costs[:, 1], costs[:, 0], -values))[0]])


def gated_problem(seed: int, n: int, top_k: int, metric: str = "accuracy", llms: int | None = None,
                  frac: float = 0.5) -> Problem:
    """A random fleet; with ``llms`` the experts host that many LLMs, so copies tie in F."""
    rng = np.random.default_rng(seed)
    inst = random_instance(rng, n, servers=3, top_k=top_k)
    columns = np.arange(n) % (llms or n)
    probs = rng.beta(1.0, 1.5, (80, int(columns.max()) + 1))
    logits = np.round(3 * probs + rng.normal(0, 1, probs.shape), 1)  # rounding makes ties
    weights = share_weights(rng.integers(0, len(inst.categories), 80), inst.shares)
    objective = GatedObjective(inst, logits, probs, weights, expert_columns=columns, metric=metric)
    return Problem(inst, budgets_between(inst, frac, frac + 0.1), objective)


def dyadic_problem(seed: int, frac: float) -> Problem:
    """Right-or-wrong scores, 32 equally weighted queries and k = 1: every F is a multiple of
    1/32, so box bounds meet F exactly and copies of one LLM tie to the last bit."""
    rng = np.random.default_rng(seed)
    inst = random_instance(rng, 10, servers=3, top_k=1, categories=("mcq",))
    scores = (rng.random((32, 4)) < 0.5).astype(float)
    logits = np.round(2 * scores + rng.normal(0, 1, scores.shape), 0)
    objective = GatedObjective(inst, logits, scores, np.full(32, 1 / 32), expert_columns=np.arange(10) % 4)
    return Problem(inst, budgets_between(inst, frac, frac), objective)


def _check_runner_up(problem: Problem) -> None:
    best = get_solver("brb").solve(problem)
    if not best.mask:
        return
    gated = problem.objective
    assert isinstance(gated, GatedObjective)
    found, truth = runner_up(problem, best.mask, gated), enumerated_runner_up(problem, best.mask, gated)
    assert (found is None) == (truth is None)
    if truth is not None:  # equally cheap placements of one set of LLMs may differ in mask
        assert found is not None and gated.value(found) == gated.value(truth)
        assert tie_key(problem, found) == tie_key(problem, truth)


@pytest.mark.parametrize(("seed", "n", "top_k", "metric", "llms", "frac"), [
    (0, 9, 1, "accuracy", None, 0.5), (1, 10, 2, "accuracy", 4, 0.4), (2, 11, 3, "neg-cross-entropy", 5, 0.6),
    (3, 12, 2, "accuracy", 6, 0.3), (4, 10, 4, "accuracy", None, 0.7), (5, 12, 1, "neg-cross-entropy", 3, 0.5),
    (6, 13, 2, "accuracy", 7, 0.8), (7, 8, 8, "accuracy", 4, 0.5),
])
def test_the_runner_up_matches_enumeration_on_random_fleets(seed, n, top_k, metric, llms, frac):
    _check_runner_up(gated_problem(seed, n, top_k, metric, llms, frac))


@pytest.mark.parametrize("seed", [47, 54, *range(6)])
@pytest.mark.parametrize("frac", [0.2, 0.4, 0.6])
def test_brb_and_the_runner_up_break_exact_ties_like_exhaustive_search(seed, frac):
    truth = get_solver("exhaustive-all").solve(dyadic_problem(seed, frac))
    result = get_solver("brb").solve(dyadic_problem(seed, frac))
    assert result.status is Status.OPTIMAL and result.objective == truth.objective
    problem = dyadic_problem(seed, frac)
    assert tie_key(problem, result.mask) == tie_key(problem, truth.mask)  # the cheaper of tied selections
    _check_runner_up(dyadic_problem(seed, frac))


SCENARIOS = sorted([*(ROOT / "examples").glob("*.yaml"), *(ROOT / "examples").glob("*/*.yaml")])


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_the_runner_up_matches_enumeration_on_shipped_scenarios(path):
    session = open_session(path, solver="brb")
    gated = session.estimate.objective
    problem = Problem(session.problem.instance, session.problem.budgets, gated)
    best = get_solver("brb").solve(problem)
    other = runner_up(problem, best.mask, gated)
    assert other is not None and other == enumerated_runner_up(problem, best.mask, gated)


@pytest.mark.parametrize("name", SOLVERS)
def test_every_solver_honours_masks_to_avoid(name):
    problem = gated_problem(8, 10, 2, llms=5, frac=0.6)
    best = get_solver("exhaustive-all").solve(problem).mask
    avoid = [1 << i for i in members(best)]  # miss at least one expert of the optimum
    others = problem.avoiding_one_of(avoid)
    masks = np.arange(1, 1 << 10, dtype=np.int64)
    allowed = masks[problem.feasible(masks) & np.array([m & best != best for m in masks.tolist()])]
    assert np.array_equal(allowed, masks[others.feasible(masks)])
    result = get_solver(name).solve(others)
    assert result.mask or name == "all-feasible"  # it answers only when every expert fits
    if result.mask:
        assert result.mask & best != best and others.feasible([result.mask])[0]
    if result.status is Status.OPTIMAL:
        assert result.objective == problem.objective(allowed).max()
    if name in ("brb", "exhaustive-all"):  # proofs on F itself
        assert result.status is Status.OPTIMAL


def test_cpsat_enumerates_the_maximal_sets_that_miss_a_mask():
    problem = gated_problem(9, 10, 2, frac=0.5)
    others = problem.avoiding_one_of([0b1010, 0b10000001])

    def maximal(p: Problem) -> int:
        feasible = p.feasible(np.arange(1 << 10, dtype=np.int64))
        return sum(not any(feasible[m | 1 << i] for i in range(10) if not m >> i & 1)
                   for m in np.flatnonzero(feasible).tolist())

    assert maximal(others) != maximal(problem)  # the masks change which sets are maximal
    assert get_solver("cpsat").solve(others).iterations == maximal(others)
