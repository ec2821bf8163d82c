"""Mean budgets: the vectorised mean cost matches its definition, the box bound is a lower
bound, and brb agrees with exhaustive search on random instances."""

from __future__ import annotations

import numpy as np
import pytest

from moe2_cli.errors import UsageError
from moe2_cli.gating.ensemble import GatedObjective, share_weights
from moe2_cli.mean_cost import Routing, box_lower, mean_use
from moe2_cli.problem import Budgets, Problem, members
from moe2_cli.solvers import Status, get_solver
from tests.solvers.cases import budgets_between, random_instance

INSTANCES = 200


def gated_mean_problem(seed: int, n: int | None = None) -> Problem:
    """A random gated F with copies of LLMs and mean budgets (sometimes per category, sometimes
    with worst-case budgets beside them) between the cheapest single expert and the full set."""
    rng = np.random.default_rng(seed)
    n = n or int(rng.integers(3, 12))
    inst = random_instance(rng, n, servers=int(rng.integers(1, 4)), top_k=int(min(n, rng.integers(1, 4))))
    columns = rng.integers(0, max(1, n - int(rng.integers(0, 3))), n)  # some LLMs on two servers
    columns = np.unique(columns, return_inverse=True)[1]
    m, queries = int(columns.max()) + 1, 12
    probs = rng.beta(1.0, 1.5, (queries, m))
    logits = np.round(probs * 3 + rng.normal(0, 1, probs.shape), 1)  # rounding makes ties
    category = rng.integers(0, len(inst.categories), queries)
    objective = GatedObjective(inst, logits, probs, share_weights(category, inst.shares), expert_columns=columns)
    routing = Routing(order=objective.order, category=category, expert_columns=columns)
    worst = budgets_between(inst, 0.9, 0.9) if rng.random() < 0.3 else Budgets.build(inst.categories)
    base = Problem(inst, worst, objective, routing=routing)
    return Problem(inst, _mean_budgets(rng, base), objective, routing=routing)


def _mean_budgets(rng: np.random.Generator, problem: Problem) -> Budgets:
    inst, routing = problem.instance, problem.routing
    assert routing is not None
    counts = np.maximum(routing.counts(len(inst.categories)), 1)
    singles = np.left_shift(1, np.arange(inst.n_experts, dtype=np.int64))
    use = mean_use(routing, inst, np.concatenate([singles, [inst.full_mask]]))
    energy, latency = use.energy / counts / 1e3, use.latency / counts / 1e6
    frac = rng.choice([0.1, 0.3, 0.5, 0.7])

    def cap(values: np.ndarray) -> float:
        return float(values.min() + frac * (values.max() - values.min())) or 1.0

    energy_mean: list[float | None] = [cap(energy[:, c]) for c in range(len(inst.categories))]
    latency_mean: list[float | None] = [None] * len(inst.categories)
    if rng.random() < 0.5:  # one shared cap, as energy.mean=...
        energy_mean = [max(e for e in energy_mean if e is not None)] * len(inst.categories)
    if rng.random() < 0.4:
        c = int(rng.integers(len(inst.categories)))
        latency_mean[c] = cap(latency[:, c])
    return Budgets(inst.categories, problem.budgets.energy_j, problem.budgets.latency_s,
                   energy_mean_j=tuple(energy_mean), latency_mean_s=tuple(latency_mean))


def _reference_use(problem: Problem, mask: int) -> tuple[np.ndarray, np.ndarray]:
    """Summed energy and latency per category, query by query, straight from the definition."""
    inst, routing = problem.instance, problem.routing
    assert routing is not None
    energy = np.zeros(len(inst.categories), dtype=np.int64)
    latency = np.zeros_like(energy)
    for q, c in enumerate(routing.category.tolist()):
        first: dict[int, int] = {}
        for i in members(mask):
            first.setdefault(int(routing.expert_columns[i]), i)
        top = [first[col] for col in routing.order[q].tolist() if col in first][: inst.top_k]
        energy[c] += sum(int(inst.energy_units[i, c]) for i in top)
        per_server: dict[int, int] = {}
        for i in top:
            s = int(inst.expert_server[i])
            per_server[s] = per_server.get(s, int(inst.transmission_units[s])) + int(inst.latency_units[i, c])
        latency[c] += max(per_server.values()) + inst.aggregation_units if top else 0
    return energy, latency


@pytest.mark.parametrize("seed", range(8))
def test_mean_use_matches_its_definition(seed):
    problem = gated_mean_problem(seed)
    masks = np.arange(1 << problem.instance.n_experts, dtype=np.int64)
    use = mean_use(problem.routing, problem.instance, masks)
    for mask in masks[:: max(1, masks.size // 64)].tolist():
        energy, latency = _reference_use(problem, mask)
        assert use.energy[mask].tolist() == energy.tolist()
        assert use.latency[mask].tolist() == latency.tolist()


@pytest.mark.parametrize("seed", range(12))
def test_box_lower_bounds_every_selection_of_the_box(seed):
    problem = gated_mean_problem(seed)
    inst, rng = problem.instance, np.random.default_rng(seed)
    use = mean_use(problem.routing, inst, np.arange(1 << inst.n_experts, dtype=np.int64))
    for _ in range(10):
        high = int(rng.integers(1, 1 << inst.n_experts))
        low = high & int(rng.integers(0, 1 << inst.n_experts))
        inside = np.array([s for s in range(1 << inst.n_experts) if s & low == low and s & ~high == 0])
        bound = box_lower(problem.routing, inst, low, high)
        assert (bound.energy[0] <= use.energy[inside].min(axis=0)).all()
        assert (bound.latency[0] <= use.latency[inside].min(axis=0)).all()
        if low == high:  # one selection: energy is exact
            assert bound.energy[0].tolist() == use.energy[low].tolist()


def test_brb_agrees_with_exhaustive_search_under_mean_budgets():
    brb, truth_solver = get_solver("brb"), get_solver("exhaustive-all")
    statuses = {Status.OPTIMAL: 0, Status.INFEASIBLE: 0}
    for seed in range(INSTANCES):
        problem = gated_mean_problem(seed)
        truth, found = truth_solver.solve(problem), brb.solve(problem)
        assert found.status is truth.status, seed
        statuses[found.status] += 1
        if truth.status is Status.OPTIMAL:
            assert found.objective == truth.objective, seed
            assert problem.feasible([found.mask])[0], seed
    assert min(statuses.values()) > 0  # both outcomes occur: the budgets bind


@pytest.mark.parametrize("name", ["polyblock", "cpsat"])
def test_solvers_that_assume_a_down_set_refuse_mean_budgets(name):
    with pytest.raises(UsageError, match="cannot handle mean budgets exactly"):
        get_solver(name).solve(gated_mean_problem(3))


@pytest.mark.parametrize("name", ["greedy", "random", "best-single", "all-feasible"])
def test_baselines_return_only_selections_that_meet_the_means(name):
    answered = 0
    for seed in range(30):
        problem = gated_mean_problem(seed)
        result = get_solver(name).solve(problem)
        if result.mask:
            answered += 1
            assert problem.feasible([result.mask])[0], seed
            assert all(v >= 0 for key, v in result.slack.items() if ".mean." in key), seed
    assert answered > 0
