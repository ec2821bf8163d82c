"""Exhaustive search: the ground truth.

Feasibility of all 2^N masks comes from doubling (no mask is enumerated one by one). With
monotone F the optimum is attained on a maximal feasible set, so by default F is evaluated only
on the maximal antichain. ``all_feasible=True`` evaluates F on every feasible mask instead: the
ground truth for any F, which also counts the monotonicity violations among feasible masks.
"""

from __future__ import annotations

import math

import numpy as np

from moe2_cli.errors import UsageError
from moe2_cli.problem import Problem
from moe2_cli.solvers.base import (
    Limits,
    ProgressCallback,
    SolveContext,
    Solver,
    SolveResult,
    Status,
    best_index,
)

MAX_EXPERTS = 26  # 2^26 masks: about 1.5 GB of working arrays


class ExhaustiveSolver(Solver):
    """All masks; refuses more than :data:`MAX_EXPERTS` experts. ``all_feasible``: F on every
    feasible set (``exhaustive-all``, exact for any F), else on the maximal ones (monotone F)."""

    def __init__(self, *, seed: int = 0, all_feasible: bool = False):
        super().__init__(seed=seed)
        self.all_feasible = all_feasible
        self.name = "exhaustive-all" if all_feasible else "exhaustive"

    def solve(self, problem: Problem, limits: Limits = Limits(), *, incumbent: int | None = None,
              progress: ProgressCallback | None = None) -> SolveResult:
        n = problem.instance.n_experts
        if n > MAX_EXPERTS:
            raise UsageError(f"exhaustive search handles at most {MAX_EXPERTS} experts (got {n}); "
                             f"use the brb solver")
        ctx = SolveContext(problem, limits, progress)
        feasible = ctx.feas.all_masks(stop=lambda: ctx.limit_hit() is not None)
        if feasible is None:
            return ctx.result(self.name, Status.LIMIT, 0,
                              notes=("a limit stopped the search while it tabulated feasibility",))
        feasible[0] = False  # the empty selection is not an answer
        if not feasible.any():
            return ctx.result(self.name, Status.INFEASIBLE, 0)
        # Under mean budgets the feasible sets are no down-set: the maximal ones prove nothing.
        every = self.all_feasible or problem.has_mean
        candidates = np.flatnonzero(feasible if every else maximal_sets(feasible))
        values, done = ctx.F_until_limit(candidates)
        scored = candidates[:done]
        best = int(scored[best_index(values[:done], scored, ctx.problem)]) if done else 0
        if done < candidates.size:
            # For monotone F nothing beats the set of every expert that fits alone.
            seen = float(values[:done].max(initial=-math.inf))
            bound = math.nan if every else max(ctx.F1(ctx.feas.singles()), seen)
            return ctx.result(self.name, Status.LIMIT, best, bound=bound, iterations=done,
                              assumes_monotone=not every,
                              notes=(f"a limit stopped the search after {done} of {candidates.size} candidates",))
        if every:
            _count_violations(ctx, feasible, candidates, values)
            return ctx.result(self.name, Status.OPTIMAL, best, iterations=candidates.size,
                              notes=(f"proof: F evaluated on all {candidates.size} feasible sets (exact for any F)",))
        return ctx.result(self.name, Status.OPTIMAL, ctx.drop_idle(best), iterations=candidates.size,
                          assumes_monotone=True,
                          notes=(f"F evaluated on the {candidates.size} maximal feasible sets",))


def maximal_sets(feasible: np.ndarray) -> np.ndarray:
    """Feasible masks none of whose one-expert extensions is feasible (a boolean (2^N,) table)."""
    maximal = feasible.copy()
    n = feasible.size.bit_length() - 1
    for i in range(n):
        # View masks as (high bits, bit i, low bits): a mask without i is not maximal when
        # the same mask with i is feasible.
        lo = maximal.reshape(-1, 2, 1 << i)
        lo[:, 0, :] &= ~feasible.reshape(-1, 2, 1 << i)[:, 1, :]
    return maximal


def _count_violations(ctx: SolveContext, feasible: np.ndarray, masks: np.ndarray, values: np.ndarray) -> None:
    """Monotonicity violations on every edge S -> S \\ {i} between non-empty feasible masks."""
    table = np.full(feasible.size, np.nan)
    table[masks] = values
    for i in range(feasible.size.bit_length() - 1):
        view = table.reshape(-1, 2, 1 << i)
        parent, child = view[:, 1, :].ravel(), view[:, 0, :].ravel()
        both = ~np.isnan(parent) & ~np.isnan(child)
        ctx.check_edges(parent[both], child[both])
