"""The contract every registered solver keeps, and the pieces they share."""

from __future__ import annotations

import math

import numpy as np
import pytest

from moe2_cli.errors import UsageError
from moe2_cli.objective import CoverageObjective
from moe2_cli.problem import Budgets, Problem, members
from moe2_cli.solvers import SOLVERS, Limits, Status, get_solver
from moe2_cli.solvers import base as solver_base
from moe2_cli.solvers.base import SolveContext, best_index
from moe2_cli.solvers.exhaustive import maximal_sets
from moe2_cli.solvers.feasibility import FeasibilityModel
from moe2_cli.solvers.polyblock import PolyblockSolver
from tests.solvers.cases import budgets_for, coverage_problem, random_instance

EXACT = ("polyblock", "brb", "cpsat", "exhaustive")


def truly_feasible(problem: Problem, mask: int) -> bool:
    return bool(problem.budgets.feasible(problem.instance.usage(np.array([mask], dtype=np.int64)))[0])


def fresh(problem: Problem) -> Problem:
    """The same problem with a new objective (no cache shared between solves)."""
    return Problem(problem.instance, problem.budgets, CoverageObjective(problem.instance))


def binding_problem() -> Problem:
    return coverage_problem(7, 10, energy_frac=0.6, latency_frac=0.7, servers=3, top_k=2)


def budgets_scaled(problem: Problem, energy: float, latency: float) -> Problem:
    inst = problem.instance
    return Problem(inst, Budgets.build(inst.categories, energy=energy, latency=latency), CoverageObjective(inst))


# ---------------------------------------------------------------- every solver


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_answer_is_feasible_and_within_budget(name):
    problem = binding_problem()
    result = get_solver(name).solve(problem, Limits(time_s=20))
    if name == "all-feasible":
        assert result.status is Status.INFEASIBLE and result.mask == 0
        return
    assert result.status in (Status.OPTIMAL, Status.FEASIBLE)
    assert result.mask and truly_feasible(problem, result.mask)
    assert result.selection == tuple(problem.instance.expert_ids[i] for i in members(result.mask))
    assert all(v >= 0 for v in result.slack.values())
    caps = problem.budgets
    for c, cat in enumerate(problem.instance.categories):
        assert result.energy_j[cat] <= caps.energy_j[c] + 1e-9
        assert result.latency_s[cat] <= caps.latency_s[c] + 1e-9
    assert result.objective == pytest.approx(problem.objective.value(result.mask))
    assert result.evaluations >= 1 and result.wall_s >= 0


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_deterministic(name):
    problem = binding_problem()
    first = get_solver(name, seed=3).solve(fresh(problem))
    second = get_solver(name, seed=3).solve(fresh(problem))
    assert (first.mask, first.status, first.evaluations) == (second.mask, second.status, second.evaluations)
    assert first.objective == second.objective or math.isnan(first.objective) and math.isnan(second.objective)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_nothing_fits(name):
    problem = budgets_scaled(binding_problem(), energy=0.5, latency=0.05)
    result = get_solver(name).solve(problem)
    assert result.status is Status.INFEASIBLE
    assert result.mask == 0 and result.selection == ()
    assert math.isnan(result.objective)
    assert result.binding  # says what keeps every expert out


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_everything_fits(name):
    problem = budgets_scaled(binding_problem(), energy=1e6, latency=1e6)
    result = get_solver(name).solve(problem)
    full = problem.instance.full_mask
    assert result.status in (Status.OPTIMAL, Status.FEASIBLE)
    assert truly_feasible(problem, result.mask)
    if name == "best-single":
        assert bin(result.mask).count("1") == 1
    else:  # coverage F grows with every expert, so every other solver takes them all
        assert result.mask == full and result.binding == ()
    if name in EXACT:
        assert result.status is Status.OPTIMAL and result.gap == 0


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_one_expert_too_expensive_is_fixed_out(name):
    problem = binding_problem()
    inst = problem.instance
    cheapest = float(inst.usage(np.array([1 << i for i in range(inst.n_experts)])).energy_j.max(axis=1).min())
    budgets = Budgets.build(inst.categories, energy=cheapest, latency=1e6)
    result = get_solver(name).solve(Problem(inst, budgets, CoverageObjective(inst)))
    if name != "all-feasible":
        assert result.mask and truly_feasible(Problem(inst, budgets, None), result.mask)


def test_unknown_solver_suggests_a_name():
    with pytest.raises(UsageError, match="did you mean 'polyblock'"):
        get_solver("polyblok")
    with pytest.raises(UsageError, match="does not take"):
        get_solver("greedy", time_limit=3)


def test_exhaustive_refuses_large_instances():
    problem = coverage_problem(1, 27)
    with pytest.raises(UsageError, match="at most 26 experts"):
        get_solver("exhaustive").solve(problem)


# ---------------------------------------------------------------- limits and warm starts


@pytest.mark.parametrize("name", ["polyblock", "brb"])
def test_evaluation_limit_returns_incumbent_and_gap(name):
    problem = coverage_problem(11, 16, energy_frac=0.45, latency_frac=0.9)
    exact = get_solver("exhaustive").solve(fresh(problem))
    result = get_solver(name).solve(problem, Limits(max_evaluations=3))
    assert result.status is Status.LIMIT
    assert result.mask and truly_feasible(problem, result.mask)
    assert result.bound >= exact.objective - 1e-12  # the bound is proven
    assert result.gap == pytest.approx(result.bound - result.objective)


@pytest.mark.parametrize("name", ["exhaustive", "exhaustive-all"])
def test_a_limit_stops_exhaustive_while_it_tabulates_feasibility(name):
    problem = coverage_problem(11, 16, energy_frac=0.45, latency_frac=0.9)
    result = get_solver(name).solve(problem, Limits(time_s=1e-9))  # past before the first row
    assert result.status is Status.LIMIT and result.mask == 0
    assert any("tabulated feasibility" in note for note in result.notes)


def test_many_masks_are_scored_in_batches_that_stop_at_a_limit():
    problem = coverage_problem(3, 12, energy_frac=0.5, latency_frac=0.8)
    ctx = SolveContext(problem, Limits(max_evaluations=100))
    masks = np.arange(1, 4001, dtype=np.int64)
    values, done = ctx.F_until_limit(masks)
    assert 100 <= done < masks.size and ctx.evaluations == done
    assert np.isnan(values[done:]).all() and np.array_equal(values[:done], problem.objective(masks[:done]))


def test_vertex_limit_stops_polyblock():
    problem = coverage_problem(11, 16, energy_frac=0.45, latency_frac=0.9)
    result = PolyblockSolver().solve(problem, Limits(max_vertices=1))
    assert result.status is Status.LIMIT and result.gap >= 0


@pytest.mark.parametrize("name", ["polyblock", "brb", "cpsat-surrogate"])
def test_warm_start_keeps_the_answer(name):
    problem = coverage_problem(5, 12, energy_frac=0.5, latency_frac=0.8)
    cold = get_solver(name).solve(fresh(problem))
    warm = get_solver(name).solve(fresh(problem), incumbent=cold.mask)
    assert warm.objective == cold.objective
    ignored = get_solver(name).solve(fresh(problem), incumbent=problem.instance.full_mask)  # infeasible
    assert ignored.objective == cold.objective


def test_progress_is_reported(monkeypatch):
    monkeypatch.setattr(solver_base, "PROGRESS_EVERY_S", 0.0)
    seen = []
    PolyblockSolver().solve(coverage_problem(11, 14, energy_frac=0.45), progress=seen.append)
    assert seen and seen[0].task == "solve" and seen[0].done >= 1
    assert {"objective", "bound", "wall_s"} <= set(seen[0].values)


def test_solve_leaves_inputs_alone():
    problem = binding_problem()
    before = (problem.budgets, problem.instance.energy_units.copy(), problem.instance.latency_units.copy())
    for name in SOLVERS:
        get_solver(name).solve(problem)
    assert problem.budgets == before[0]
    assert np.array_equal(problem.instance.energy_units, before[1])
    assert np.array_equal(problem.instance.latency_units, before[2])


# ---------------------------------------------------------------- shared pieces


@pytest.mark.parametrize("avoid", [False, True])
@pytest.mark.parametrize("seed", range(12))
def test_fast_feasibility_matches_instance_usage(seed, avoid):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 11))
    inst = random_instance(rng, n, servers=int(rng.integers(1, 5)), top_k=int(rng.integers(1, 4)))
    budgets = budgets_for(inst, rng.uniform(0.1, 1.1), rng.uniform(0.2, 1.1),
                          math_latency=float(rng.uniform(0.2, 2.0)) if seed % 2 else None)
    problem = Problem(inst, budgets, None)
    masks = np.arange(1 << n, dtype=np.int64)
    expected = budgets.feasible(inst.usage(masks))
    if avoid:  # a selection must miss one of a few random masks
        others = rng.integers(1, 1 << n, size=int(rng.integers(1, 4))).tolist()
        problem = problem.avoiding_one_of(others)
        expected &= np.array([any(not m & o for o in others) for m in masks.tolist()])
        assert np.array_equal(problem.feasible(masks), expected)
    model = FeasibilityModel(problem)
    assert np.array_equal(model.feasible(masks), expected)
    assert np.array_equal(model.all_masks(), expected)
    assert [model.fits(int(m)) for m in masks] == expected.tolist()
    for m in masks[expected][:40].tolist():
        packer = model.packer(m)
        for i in range(n):
            if not m >> i & 1:
                assert packer.can_add(i) == expected[m | 1 << i]


def test_maximal_sets_brute_force():
    rng = np.random.default_rng(0)
    problem = coverage_problem(3, 9, energy_frac=0.5)
    feasible = FeasibilityModel(problem).all_masks()
    maximal = maximal_sets(feasible)
    for m in rng.choice(1 << 9, 200, replace=False).tolist():
        extensions = [feasible[m | 1 << i] for i in range(9) if not m >> i & 1]
        assert maximal[m] == (feasible[m] and not any(extensions))


def test_result_reports_slack_and_binding():
    problem = binding_problem()
    result = get_solver("polyblock").solve(problem)
    cats = problem.instance.categories
    assert set(result.slack) == {f"energy.{c}" for c in cats} | {f"latency.{c}" for c in cats}
    assert result.binding and set(result.binding) <= set(result.slack)
    # Relaxing the binding constraints is what lets another expert in.
    ctx = SolveContext(problem, Limits())
    blocked = [set(ctx.feas.blocking(result.mask, i)) for i in range(problem.instance.n_experts)
               if not result.mask >> i & 1]
    assert any(b <= set(result.binding) for b in blocked if b)


def test_canonical_tie_break():
    values = np.array([0.5, 0.7, 0.7, 0.7])
    masks = np.array([1, 0b111, 0b1010, 0b0110])
    assert best_index(values, masks) == 3  # two experts, then the smaller mask


def test_containment_check_matches_pairwise():
    from moe2_cli.solvers.polyblock import _below_any

    rng = np.random.default_rng(2)
    weights = np.left_shift(np.int64(1), np.arange(40, dtype=np.int64))
    others = (rng.random((3000, 40)) < 0.6).astype(np.int64) @ weights
    masks = (rng.random((400, 40)) < 0.3).astype(np.int64) @ weights
    pairwise = ((masks[:, None] & ~others[None, :]) == 0).any(axis=1)
    assert 0 < pairwise.sum() < masks.size  # both answers occur
    assert np.array_equal(_below_any(masks, others, lambda: False), pairwise)  # bitset path


def test_a_warm_up_greedy_stops_at_the_limit_after_its_first_expert():
    from moe2_cli.solvers.baselines import greedy_mask

    problem = coverage_problem(7, 10, energy_frac=0.9, latency_frac=0.9, servers=3, top_k=2)
    unlimited = SolveContext(problem, Limits())
    whole = greedy_mask(unlimited, unlimited.feas.singles(), lazy=True)
    spent = SolveContext(problem, Limits(time_s=0.0))
    for lazy in (True, False):
        first = greedy_mask(spent, spent.feas.singles(), lazy=lazy, warm_up=True)
        assert len(members(first)) == 1 and first & whole == first, "greedy's own first pick, and no more"
        assert greedy_mask(spent, spent.feas.singles(), lazy=lazy) == whole, "only a warm-up stops"
    assert len(members(whole)) > 1


def test_cpsat_cut_short_answers_at_least_greedys_selection():
    problem = coverage_problem(7, 10, energy_frac=0.9, latency_frac=0.9, servers=3, top_k=2)
    cut = get_solver("cpsat").solve(fresh(problem), Limits(max_evaluations=1))
    greedy = get_solver("greedy").solve(fresh(problem))
    assert cut.status is Status.LIMIT and cut.iterations == 1
    assert cut.objective >= greedy.objective and truly_feasible(problem, cut.mask)
