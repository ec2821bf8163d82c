"""The baselines a reader of the MoE² paper expects, and the greedy step the exact solvers reuse.

- ``greedy``: repeatedly add the expert with the largest F gain per joule of added worst-case
  energy (traffic-weighted over categories), keeping the set feasible, until nothing helps;
- ``best-single``: the best expert alone;
- ``random``: a random maximal feasible set (experts packed in a seeded random order);
- ``all-feasible``: every expert, when they all fit together.

None of them proves anything: a found set has status FEASIBLE and an unknown bound.
"""

from __future__ import annotations

import heapq
from abc import abstractmethod

import numpy as np

from moe2_cli.problem import ENERGY_UNITS_PER_J, Problem, bits_of, members
from moe2_cli.rng import stream
from moe2_cli.solvers.base import (
    Limits,
    ProgressCallback,
    SolveContext,
    Solver,
    SolveResult,
    Status,
    best_index,
)

# Energy steps below this (J) count as this much, so a free gain ranks first but stays finite.
_MIN_ENERGY_STEP_J = 1.0 / ENERGY_UNITS_PER_J


def greedy_mask(ctx: SolveContext, allowed: int, *, lazy: bool = False, warm_up: bool = False) -> int:
    """Greedy by marginal F gain per joule of added worst-case energy (traffic-weighted) among
    the experts in ``allowed``, kept feasible, until no expert helps; ties to the lower index.

    ``lazy`` re-scores only the expert on top of a queue of stale ratios (accelerated greedy):
    far fewer evaluations, the same answer when ratios only shrink as the set grows, a
    heuristic otherwise. ``warm_up`` stops adding experts once a limit of ``ctx`` is reached
    (after the first): a warm start for an exact search must not spend the search's time limit.
    """
    shares = np.asarray(ctx.problem.instance.shares, dtype=float)
    packer = ctx.feas.packer()
    state = {"value": 0.0, "energy": 0.0}

    def ratios(candidates: list[int]) -> np.ndarray:
        masks = [packer.mask | (1 << i) for i in candidates]
        values = ctx.F(masks)
        if packer.mask:
            ctx.check_edges(values, np.full(values.size, state["value"]))  # S below S + i
        gains = values - state["value"]
        steps = np.maximum(ctx.problem.usage(masks).energy_j @ shares - state["energy"], _MIN_ENERGY_STEP_J)
        # The first expert is taken even when F is negative: the empty set is not an answer.
        return np.where(gains > 0, gains / steps, -np.inf) if packer.mask else gains

    def take(i: int) -> None:
        packer.add(i)
        state["value"] = ctx.F1(packer.mask)
        state["energy"] = float(ctx.problem.usage([packer.mask]).energy_j[0] @ shares)

    def spent() -> bool:
        return warm_up and packer.mask != 0 and ctx.limit_hit() is not None

    return (_lazy_greedy if lazy else _plain_greedy)(packer, members(allowed), ratios, take, spent)


def _plain_greedy(packer, candidates, ratios, take, spent) -> int:
    while not spent() and (candidates := [i for i in candidates if packer.can_add(i)]):
        scores = ratios(candidates)
        best = int(np.argmax(scores))
        if not np.isfinite(scores[best]):
            break
        take(candidates.pop(best))
    return packer.mask


def _lazy_greedy(packer, candidates, ratios, take, spent) -> int:
    queue = [(-float(r), i, 0) for r, i in zip(ratios(candidates), candidates) if np.isfinite(r)]
    heapq.heapify(queue)
    size = 0  # how many experts the set had when an entry was scored
    while queue and not spent():
        neg, i, scored_at = heapq.heappop(queue)
        if not packer.can_add(i):
            continue  # it only gets harder to fit as the set grows
        if scored_at == size:
            take(i)
            size += 1
            continue
        fresh = float(ratios([i])[0])
        if np.isfinite(fresh):
            heapq.heappush(queue, (-fresh, i, size))
    return packer.mask


class _Baseline(Solver):
    """Shared driver: find the infeasible case, otherwise delegate to :meth:`pick`."""

    def solve(self, problem: Problem, limits: Limits = Limits(), *, incumbent: int | None = None,
              progress: ProgressCallback | None = None) -> SolveResult:
        ctx = SolveContext(problem, limits, progress)
        allowed = ctx.feas.singles()
        if allowed == 0:
            return ctx.result(self.name, Status.INFEASIBLE, 0)
        mask, notes = self.pick(ctx, allowed)
        status = Status.FEASIBLE if mask else Status.INFEASIBLE
        return ctx.result(self.name, status, mask, iterations=1, notes=notes)

    @abstractmethod
    def pick(self, ctx: SolveContext, allowed: int) -> tuple[int, tuple[str, ...]]:
        """The chosen mask (0 if none) and notes about it."""


class GreedySolver(_Baseline):
    """Best marginal F gain per joule, kept feasible."""

    name = "greedy"

    def pick(self, ctx, allowed):
        return greedy_mask(ctx, allowed), ("heuristic: marginal F gain per joule",)


class BestSingleSolver(_Baseline):
    """The single expert with the highest F."""

    name = "best-single"

    def pick(self, ctx, allowed):
        singles = bits_of(members(allowed), ctx.problem.instance.n_experts)
        singles = singles[ctx.feas.feasible(singles)]  # under mean budgets some fit only in company
        if not singles.size:
            return 0, ("no expert fits alone",)
        return int(singles[best_index(ctx.F(singles), singles, ctx.problem)]), ("one expert only",)


class RandomSolver(_Baseline):
    """A random maximal feasible set, seeded."""

    name = "random"

    def pick(self, ctx, allowed):
        rng = stream(self.seed, "random-solver")
        packer = ctx.feas.packer()
        for i in rng.permutation(np.array(members(allowed))).tolist():
            packer.try_add(i)
        return packer.mask, (f"random maximal feasible set (seed {self.seed})",)


class AllFeasibleSolver(_Baseline):
    """Every expert, if all of them fit together."""

    name = "all-feasible"

    def pick(self, ctx, allowed):
        everyone = ctx.problem.instance.full_mask
        if ctx.feas.fits(everyone):
            return everyone, ("every expert",)
        return 0, ("the experts do not all fit together",)
