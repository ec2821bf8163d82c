"""Frontiers: Pareto flags vs brute force, monotone sweeps, exact fronts vs enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from moe2_cli.errors import UsageError
from moe2_cli.objective import CoverageObjective
from moe2_cli.pareto import (
    exact_energy_frontier,
    pareto_mask,
    parse_sweep,
    sweep_budgets,
)
from moe2_cli.problem import ENERGY_UNITS_PER_J, Budgets, Problem
from moe2_cli.solvers import get_solver
from tests.solvers.cases import budgets_for, random_instance


def brute_pareto(objective, costs):
    n = objective.size
    keep = np.ones(n, dtype=bool)
    for i, j in itertools.product(range(n), range(n)):
        if i == j:
            continue
        no_worse = objective[j] >= objective[i] and (costs[j] <= costs[i]).all()
        strictly = objective[j] > objective[i] or (costs[j] < costs[i]).any()
        if no_worse and strictly:
            keep[i] = False
    # among exact duplicates the first one stays
    for i, j in itertools.combinations(range(n), 2):
        if keep[i] and keep[j] and objective[i] == objective[j] and (costs[i] == costs[j]).all():
            keep[j] = False
    return keep


@pytest.mark.parametrize("seed", range(8))
def test_pareto_flags_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 40
    objective = rng.integers(0, 6, n).astype(float)  # coarse values force ties and duplicates
    costs = rng.integers(0, 5, (n, 2)).astype(float)
    assert pareto_mask(objective, costs).tolist() == brute_pareto(objective, costs).tolist()


def test_parse_sweep_includes_both_ends_and_rejects_bad_specs():
    sweep = parse_sweep("energy=50:100:25", ("mcq",))
    assert sweep.values == (50.0, 75.0, 100.0)
    assert parse_sweep("latency.mcq=1:2:0.5", ("mcq",)).category == "mcq"
    for bad in ("energy=5:1:1", "energy=1:2", "power=1:2:1", "energy=0:2:1", "latency.x=1:2:1", "energy=1:2:0"):
        with pytest.raises(UsageError):
            parse_sweep(bad, ("mcq",))


def _problem(seed, n=10, latency_frac=0.8):
    inst = random_instance(np.random.default_rng(seed), n)
    budgets = budgets_for(inst, 1.0, latency_frac)
    return Problem(instance=inst, budgets=budgets, objective=CoverageObjective(inst))


@pytest.mark.parametrize("solver", ["polyblock", "greedy"])
@pytest.mark.parametrize("seed", range(3))
def test_energy_sweep_is_non_decreasing_with_warm_starts(solver, seed):
    problem = _problem(seed)
    top = float(problem.usage([problem.instance.full_mask]).energy_j.max())
    sweep = parse_sweep(f"energy={top / 20}:{top}:{top / 20}", problem.instance.categories)
    points = sweep_budgets(problem, get_solver(solver), [sweep])
    values = [p.result.objective if p.result.feasible else 0.0 for p in points]
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:])), values
    for p in points:
        if p.result.feasible:
            assert problem.budgets.__class__ is Budgets
            assert Problem(problem.instance, p.budgets, problem.objective).feasible([p.result.mask])[0]


@pytest.mark.parametrize("seed", range(4))
def test_exact_frontier_matches_enumerated_front(seed):
    problem = _problem(seed, n=9)
    inst = problem.instance
    masks = np.arange(1, 1 << inst.n_experts, dtype=np.int64)
    # energy is swept, so enumerate under the latency caps only
    latency_only = Budgets(inst.categories, energy_j=(None,) * len(inst.categories),
                           latency_s=problem.budgets.latency_s)
    usage = inst.usage(masks)
    feasible = latency_only.feasible(usage)
    values = problem.objective(masks[feasible])
    energy = usage.energy[feasible].max(axis=1).astype(float)
    keep = brute_pareto(values, energy[:, None]) if values.size < 400 else pareto_mask(values, energy[:, None])
    expected = sorted(zip(energy[keep] / ENERGY_UNITS_PER_J, np.round(values[keep], 12)))
    sub = Problem(inst, latency_only, problem.objective)
    front = exact_energy_frontier(sub, get_solver("exhaustive"))
    got = sorted((max(p.result.energy_j.values()), round(p.result.objective, 12)) for p in front)
    assert [g[1] for g in got] == [e[1] for e in expected]
    assert [g[0] for g in got] == pytest.approx([e[0] for e in expected])


def test_infeasible_points_are_never_pareto():
    problem = _problem(0)
    sweep = parse_sweep("energy=0.001:0.003:0.001", problem.instance.categories)
    points = sweep_budgets(problem, get_solver("polyblock"), [sweep])
    assert not any(p.result.feasible for p in points)
    assert not any(p.pareto for p in points)


@pytest.mark.parametrize("seed", range(3))
def test_exact_3d_front_matches_brute_force(seed):
    from moe2_cli.pareto import exact_tradeoff_front

    problem = _problem(seed, n=8, latency_frac=1.0)
    inst = problem.instance
    masks = np.arange(1, 1 << inst.n_experts, dtype=np.int64)
    masks = masks[problem.feasible(masks)]
    usage = problem.usage(masks)
    costs = np.stack([usage.energy.max(axis=1), usage.latency.max(axis=1)], axis=1).astype(float)
    keep = brute_pareto(problem.objective(masks), costs)
    front = exact_tradeoff_front(problem)
    assert sorted(p.result.mask for p in front) == sorted(masks[keep].tolist())


def test_exact_3d_refuses_large_instances():
    from moe2_cli.pareto import exact_tradeoff_front

    with pytest.raises(UsageError, match="at most 16 experts"):
        exact_tradeoff_front(_problem(0, n=17))
