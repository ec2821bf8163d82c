"""brb over sets of LLMs: copies of one LLM are one decision.

F depends only on the classes a selection meets (``Objective.expert_classes``: its LLMs), so
the search runs over sets of classes, with boxes [P, Q] of class sets (P ⊆ L ⊆ Q), and a set
of classes L stands for its cheapest feasible placement (:class:`~moe2_cli.solvers.placement.
Placer`, exact and cached per set). Every selection with the classes L has F(L) and costs at
least that placement, so the best selection is the best placed set of classes, and a box
whose classes cannot be placed holds nothing feasible. Class sets that can be placed form a
down-set, as selections do.

A box is bounded by the objective's own box bound (``Objective.box_bound``, valid for F that
is not monotone) of the expert masks of one copy of each class of P and every copy of each
class of Q: it reads only the classes, so it bounds F on every selection of the box. The box is
reduced from above (classes that cannot be placed beside P leave Q) and from below (a class
whose absence bounds the box below the incumbent joins P), offers incumbents (the placements
of P, of Q, and of the classes added greedily to P), and is split on one class: out of Q, or
into P. One box per class replaces the one box per copy of an expert search, whose boxes of
different copies shared one bound.

Ties resolve toward the cheaper selection (:class:`~moe2_cli.solvers.base.Incumbent`): a box
bounded at exactly the incumbent's value is searched while the placement of its P (a lower
bound on the cost of every selection in it) costs less than the incumbent.
"""

from __future__ import annotations

import math

import numpy as np

from moe2_cli.problem import as_masks, members
from moe2_cli.solvers.base import SolveContext, SolveResult, Status, tie_key
from moe2_cli.solvers.baselines import greedy_mask
from moe2_cli.solvers.best_first import BestFirstBoxes
from moe2_cli.solvers.placement import PlacementStopped, Placer

# Free classes probed per box for reduction from below (the most valuable alone first).
_PROBES = 8


class LlmSetBrb(BestFirstBoxes):
    """The state of one run: open boxes of class sets in a max-heap by bound, and the incumbent."""

    def __init__(self, ctx: SolveContext, name: str, notes):
        super().__init__(ctx)
        self.name = name
        self.notes = notes
        self.objective = ctx.problem.objective
        self.n = ctx.problem.instance.n_experts
        classes = np.asarray(self.objective.expert_classes(), dtype=np.int64)
        self.allowed = ctx.feas.singles()
        self.placer = Placer(ctx.problem, ctx.feas, classes, self.allowed, stop=lambda: ctx.limit_hit() is not None)
        self.copies = {c: sum(1 << i for i in experts) for c, experts in self.placer.copies.items()}
        self.first = {c: experts[0] for c, experts in self.placer.copies.items()}
        alone = ctx.F(as_masks([1 << i for i in self.first.values()], self.n))
        self.alone = dict(zip(self.first, alone.tolist()))  # F of each class alone
        self.open_bound = -math.inf  # the bound of the box being visited: out of the heap meanwhile

    def run(self, warm: int | None) -> SolveResult:
        if self.allowed == 0:
            return self.ctx.result(self.name, Status.INFEASIBLE, 0)
        try:
            warm_start = greedy_mask(self.ctx, self.allowed, lazy=True, warm_up=True)
            self._offer_masks(warm_start, self.ctx.usable_incumbent(warm) or 0)
            done = self._settle(sum(1 << c for c in self.copies))
        except PlacementStopped:
            done = False
        return self._finish(Status.OPTIMAL if done else Status.LIMIT)

    def _settle(self, full: int) -> bool:
        self.open_bound = self._bound(0, full)
        self._push(self.open_bound, full, 0)
        return self._search()


    # ------------------------------------------------------------ bounds and order

    def _low(self, p: int) -> int:
        return sum(1 << self.first[c] for c in members(p))

    def _high(self, q: int) -> int:
        return sum(self.copies[c] for c in members(q))

    def _bound(self, p: int, q: int) -> float:
        low, high = as_masks([self._low(p)], self.n), as_masks([self._high(q)], self.n)
        return float(self.objective.box_bound(low, high)[0])

    def _may_beat(self, bound: float, p: int) -> bool:
        """Whether a box [P, ...] bounded by ``bound`` can hold a selection before the incumbent:
        better F, or equal F at a lower cost (none costs less than P's placement)."""
        if bound != self.val:
            return bound > self.val
        placed = self.placer.place(p)
        return placed is not None and (tie_key(self.ctx.problem, placed), placed) < (self.best.key, self.best.mask)

    def _offer_masks(self, *masks: int) -> None:
        masks = tuple(m for m in masks if m)
        if masks:
            self.ctx.F(as_masks(masks, self.n))  # one batch; the offers below hit the cache
            for m in masks:
                self.best.offer(self.ctx, m)

    def _offer(self, *class_sets: int) -> None:
        self._offer_masks(*(m for m in (self.placer.place(c) for c in class_sets) if m))

    # ------------------------------------------------------------ one box

    def _visit(self, p: int, q: int, bound: float) -> None:
        self.open_bound = bound  # a limit that stops the placement inside leaves this box open
        self._split(p, q)
        self.open_bound = -math.inf

    def _split(self, p: int, q: int) -> None:
        if self.placer.place(p) is None:
            return  # nothing in [P, Q] fits
        q = self._reduce_up(p, q)
        free = sorted(members(q & ~p), key=lambda c: (-self.alone[c], c))
        if not free:
            self._offer(p)
            return
        probed = free[:_PROBES]
        without = self.objective.box_bound_without(self._low(p), self._high(q),
                                                   as_masks([self.copies[c] for c in probed], self.n))
        # Reduce from below: a class whose absence bounds the box below the incumbent is in
        # every better selection.
        forced = [c for c, b in zip(probed, without.tolist()) if not self._may_beat(float(b), p)]
        if forced:
            p |= sum(1 << c for c in forced)
            if self.placer.place(p) is not None:
                self._push(self._bound(p, self._reduce_up(p, q)), q, p)
            return  # revisited with the larger P (and its smaller bound) when its turn comes
        best = np.lexsort((np.array(probed), without))  # the class whose absence lowers the bound most first
        order = [probed[j] for j in best] + free[len(probed):]
        self._offer(p, q, *self._prefixes(p, order))
        c = probed[int(best[0])]
        self._push(float(without[best[0]]), q & ~(1 << c), p)
        self._push(self._bound(p | (1 << c), q), q, p | (1 << c))

    def _reduce_up(self, p: int, q: int) -> int:
        """Drop from Q the classes that cannot be placed beside P."""
        return p | sum(1 << c for c in members(q & ~p) if self.placer.place(p | (1 << c)) is not None)

    def _prefixes(self, p: int, order: list[int]) -> list[int]:
        """Classes added to P in ``order`` while they can be placed: every set it passes
        through (F is not monotone, so an earlier one can be the best)."""
        steps = []
        for c in order:
            if self.placer.place(p | (1 << c)) is not None:
                p |= 1 << c
                steps.append(p)
        return steps

    def _finish(self, status: Status) -> SolveResult:
        bound = math.nan
        if status is Status.LIMIT:
            bound = max(self.val, self.open_bound, -self.heap[0][0] if self.heap else -math.inf)
            bound = bound if math.isfinite(bound) else math.nan
        notes = self.notes(status)
        return self.ctx.result(self.name, status, self.best.mask, bound=bound, iterations=self.iterations,
                               peak_vertices=self.peak, notes=notes)
