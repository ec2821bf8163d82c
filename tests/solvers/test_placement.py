"""Copies of one LLM are one decision: the cheapest placement of a set of LLMs matches brute
force, brb over sets of LLMs agrees with exhaustive search on fleets with many copies, and
ties in F go to the cheaper selection in every exact solver."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from moe2_cli.gating.ensemble import GatedObjective, share_weights
from moe2_cli.problem import Instance, Problem, mask_of
from moe2_cli.solvers import Limits, Status, get_solver
from moe2_cli.solvers.base import SolveContext, tie_costs, tie_key
from moe2_cli.solvers.placement import Placer
from tests.solvers.cases import budgets_between, random_instance


def fleet(seed: int, n: int, llms: int, top_k: int, frac: float, *, twins: bool = False) -> Problem:
    """n experts over ``llms`` LLMs on n // 2 servers of two kinds; copies of an LLM on servers of
    one kind cost the same (so servers are interchangeable). ``twins``: LLMs 0 and 1 have the
    same gate logits and scores, so sets with one or the other tie in F exactly."""
    rng = np.random.default_rng(seed)
    base = random_instance(rng, n, servers=max(2, n // 2), top_k=top_k)
    columns = rng.permutation(np.arange(n) % llms)
    kind = np.asarray(base.expert_server) % 2
    energy = np.round(rng.uniform(2, 6, (llms, 2, 3)), 3)[columns, kind]
    latency = np.round(rng.uniform(0.2, 0.6, (llms, 2, 3)), 3)[columns, kind]
    inst = Instance(name="fleet", expert_ids=base.expert_ids, expert_llms=tuple(f"llm-{c}" for c in columns),
                    expert_server=base.expert_server, server_names=base.server_names,
                    transmission_s=np.full(len(base.server_names), 0.02), categories=base.categories,
                    shares=base.shares, latency_s=latency, energy_j=energy, accuracy=base.accuracy[:, :3],
                    top_k=top_k, aggregation_s=0.05)
    probs = rng.beta(1.0, 1.5, (60, llms))
    logits = np.round(3 * probs + rng.normal(0, 1, probs.shape), 1)
    if twins:
        probs[:, 1], logits[:, 1] = probs[:, 0], logits[:, 0]
    weights = share_weights(rng.integers(0, 3, 60), inst.shares)
    objective = GatedObjective(inst, logits, probs, weights, expert_columns=columns)
    return Problem(inst, budgets_between(inst, frac, frac + 0.1), objective)


def brute_force_placement(problem: Problem, classes: np.ndarray, llm_set: list[int]) -> tuple | None:
    """The cost of the cheapest feasible choice of one copy per LLM, trying every choice."""
    copies = [np.flatnonzero(classes == c).tolist() for c in llm_set]
    masks = np.array([mask_of(choice) for choice in itertools.product(*copies)], dtype=np.int64)
    masks = masks[problem.feasible(masks)]
    if masks.size == 0:
        return None
    return min(tuple(cost) for cost in tie_costs(problem, masks).tolist())


@pytest.mark.parametrize(("seed", "top_k", "frac"), [(0, 2, 0.7), (1, 2, 0.5), (2, 2, 0.4), (3, 3, 0.7)])
def test_the_cheapest_placement_matches_brute_force(seed, top_k, frac):
    problem = fleet(seed, 14, 4, top_k, frac)
    classes = np.asarray(problem.objective.expert_classes())
    ctx = SolveContext(problem, Limits())
    placer = Placer(problem, ctx.feas, classes, ctx.feas.singles(), stop=lambda: False)
    placed = 0
    for llm_set in range(1, 16):
        members = [c for c in range(4) if llm_set >> c & 1]
        allowed = [c for c in members if any(ctx.feas.singles() >> i & 1 for i in np.flatnonzero(classes == c))]
        truth = brute_force_placement(problem, classes, members) if allowed == members else None
        found = placer.place(llm_set)
        assert (found is None) == (truth is None), llm_set
        if found is not None:
            placed += 1
            assert problem.feasible([found])[0] and sorted(classes[[i for i in range(14) if found >> i & 1]]) == members
            assert tuple(tie_costs(problem, [found])[0]) == pytest.approx(truth, rel=1e-12)
    assert placed >= 3  # the budgets leave several sets placeable


@pytest.mark.parametrize(("seed", "n", "llms", "top_k", "frac"),
                         [(4, 16, 4, 2, 0.4), (5, 16, 5, 3, 0.5), (6, 15, 3, 2, 0.6), (7, 16, 6, 4, 0.6)])
def test_brb_over_llm_sets_agrees_with_exhaustive_search(seed, n, llms, top_k, frac):
    truth = get_solver("exhaustive-all").solve(fleet(seed, n, llms, top_k, frac))
    problem = fleet(seed, n, llms, top_k, frac)
    result = get_solver("brb").solve(problem)
    assert result.status is Status.OPTIMAL and result.objective == truth.objective
    assert tie_key(problem, result.mask) == tie_key(problem, truth.mask)
    assert result.notes[0].startswith("proof: gated box bound on F itself")


@pytest.mark.parametrize("seed", range(8))
def test_ties_in_f_go_to_the_cheaper_selection(seed):
    problem = fleet(seed, 12, 4, 2, 0.5, twins=True)
    masks = np.arange(1, 1 << 12, dtype=np.int64)
    masks = masks[problem.feasible(masks)]
    values = problem.objective(masks)
    best = masks[values == values.max()]
    costs = tie_costs(problem, best)
    cheapest = min((tuple(c) + (int(m).bit_count(),) for c, m in zip(costs.tolist(), best.tolist())))
    for name in ("brb", "exhaustive-all"):
        result = get_solver(name).solve(fleet(seed, 12, 4, 2, 0.5, twins=True))
        assert result.objective == values.max(), name
        assert tie_key(problem, result.mask) == pytest.approx(cheapest, rel=1e-12), name
