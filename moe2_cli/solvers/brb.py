"""Binary branch-reduce-and-bound (BRB) over boxes [p, q] of selections (p ⊆ S ⊆ q).

For monotone F a box's bound is F(q). An objective that is not monotone but offers a box bound
of its own (``Objective.box_bound``, named by ``bound_proof``) is bounded by it, so an
``optimal`` answer is proven on F itself (see :class:`BoundedBrb`). Any other non-monotone F
gets no proof. The best box is taken first. It is reduced from above (experts that cannot join
p are dropped from q) and from below (experts without which F cannot beat the incumbent are
forced into p), a greedy completion of p inside q offers an incumbent, and the box is split on
one free expert. A box whose p is infeasible holds nothing feasible and is discarded: branching
"expert in" can make p infeasible, and without that check infeasible selections would come
back as optima.

Reference: Tuy, Al-Khayyal, Thach (2005), Monotonic optimization: branch and cut methods.
"""

from __future__ import annotations

import math

import numpy as np

from moe2_cli.errors import UsageError
from moe2_cli.objective import MONOTONE_BOUND, Objective
from moe2_cli.problem import Problem, as_masks, bits_of, mask_of, members
from moe2_cli.solvers.base import (
    Limits,
    ProgressCallback,
    SolveContext,
    Solver,
    SolveResult,
    Status,
    tie_key,
)
from moe2_cli.solvers.baselines import greedy_mask
from moe2_cli.solvers.best_first import BestFirstBoxes
from moe2_cli.solvers.llm_sets import LlmSetBrb
from moe2_cli.solvers.mean_bound import MeanBound, exact_only

# Free experts probed per box for reduction from below (the most valuable alone first).
_PROBES = 8


def has_own_bound(objective: Objective) -> bool:
    """Whether the objective bounds boxes without relying on monotonicity."""
    return objective.bound_proof not in (None, MONOTONE_BOUND)


def bound_notes(objective: Objective, status: Status) -> tuple[str, ...]:
    """The notes of a solve proven (or bounded, under a limit) with the objective's own box bound."""
    if status is Status.OPTIMAL:
        if objective.bound_proof == MONOTONE_BOUND:
            return (f"proof: {objective.monotone_proof}, each box bounded by F of its largest set",)
        return (f"proof: {objective.bound_proof} on F itself (valid for non-monotone F)",)
    return (f"the bound is the {objective.bound_proof}",)


class BrbSolver(Solver):
    """BRB: exact for monotone F and for F with a box bound of its own; anytime under time,
    open-box and evaluation limits."""

    name = "brb"

    def solve(self, problem: Problem, limits: Limits = Limits(), *, incumbent: int | None = None,
              progress: ProgressCallback | None = None) -> SolveResult:
        ctx = SolveContext(problem, limits, progress)
        if problem.has_mean:
            # Under mean budgets the copy that answers changes the cost, so copies are not one
            # decision: the expert-level search with the mean bound stays exact.
            if problem.objective.bound_proof is None:
                raise UsageError("brb needs F to be monotone or to bound boxes of selections under mean "
                                 "budgets", "budget")
            return BoundedBrb(ctx, self.name).run(incumbent)
        if has_own_bound(problem.objective):
            objective = problem.objective
            return LlmSetBrb(ctx, self.name, lambda status: bound_notes(objective, status)).run(incumbent)
        return _Brb(ctx, self.name).run(incumbent)


class _Brb(BestFirstBoxes):
    """The state of one BRB run: open boxes in a max-heap by bound, and the incumbent."""

    def __init__(self, ctx: SolveContext, name: str):
        super().__init__(ctx)
        self.name = name

    def run(self, warm: int | None) -> SolveResult:
        ctx = self.ctx
        full = ctx.feas.singles()
        if full == 0:
            return ctx.result(self.name, Status.INFEASIBLE, 0)
        if ctx.feas.fits(full):
            return self._finish(Status.OPTIMAL, full)
        self._offer(greedy_mask(ctx, full, lazy=True, warm_up=True))
        if (warm := ctx.usable_incumbent(warm)) is not None:
            self._offer(warm)
        self._push(ctx.F1(full), full, 0)
        return self._finish(Status.OPTIMAL if self._search() else Status.LIMIT, self.best.mask)

    def _may_beat(self, bound: float, p: int) -> bool:
        return bound > self.val  # F is monotone here: no tie needs a search

    def _offer(self, mask: int) -> None:
        self.best.offer(self.ctx, mask)

    def _visit(self, p: int, q: int, bound: float) -> None:
        feas = self.ctx.feas
        if not feas.fits(p):
            return  # REQUIRED: nothing in [p, q] is feasible
        packer = feas.packer(p)
        q = p | sum(1 << i for i in members(q & ~p) if packer.can_add(i))  # reduce from above
        top = self.ctx.F1(q)
        self.ctx.check_edges(np.array([bound]), np.array([top]))
        if top <= self.val:
            return
        if feas.fits(q):
            self._offer(q)
            return
        free = np.array(members(q & ~p), dtype=np.int64)
        drops = q & ~bits_of(free, self.ctx.problem.instance.n_experts)
        values = self.ctx.F(drops)
        self.ctx.check_edges(np.full(free.size, top), values)
        forced = values <= self.val  # every improving S in the box holds these experts
        if forced.any():
            p |= mask_of(free[forced])
            if not feas.fits(p):
                return
        free, values = free[~forced], values[~forced]
        order = np.lexsort((free, values))  # most important expert first (largest drop of F)
        self._offer(_complete(feas.packer(p), free[order].tolist()))
        if free.size:
            i = int(free[order[0]])
            self._push(float(values[order[0]]), q & ~(1 << i), p)
            self._push(top, q, p | (1 << i))

    def _finish(self, status: Status, mask: int) -> SolveResult:
        bound = math.nan
        if status is Status.LIMIT:
            bound = max(self.val, -self.heap[0][0]) if self.heap else self.val
        mask = self.ctx.drop_idle(mask) if status is Status.OPTIMAL else mask
        return self.ctx.result(self.name, status, mask, bound=bound, iterations=self.iterations,
                               peak_vertices=self.peak, assumes_monotone=True)


class BoundedBrb(BestFirstBoxes):
    """BRB on an F that is not monotone, with the objective's own box bounds.

    A box [p, q] is bounded by ``Objective.box_bound``. It is reduced from above: experts that
    cannot join p leave q, and so do experts whose class (``Objective.expert_classes``: F
    depends only on the classes a selection meets, e.g. its LLMs) p already holds; they change
    nothing, so a selection with them has the same F and costs more. p, q and a greedy
    completion of p inside q are offered as incumbents; a box is split on the class whose
    absence lowers its bound most: no expert of it, or one of them forced in. Unlike the
    monotone case a feasible q does not close its box: a subset of q can still be better, and
    only the bound can rule that out.

    Ties resolve as exhaustive search resolves them (larger F, then the cheaper: see
    :class:`~moe2_cli.solvers.base.Incumbent`): a box bounded at exactly the incumbent's value
    is still searched while its p costs less, since a selection of the box can then tie F and
    win the tie.
    """

    def __init__(self, ctx: SolveContext, name: str):
        super().__init__(ctx)
        self.name = name
        self.objective = ctx.problem.objective
        self.classes = np.asarray(self.objective.expert_classes(), dtype=np.intp)
        self.class_of = self.classes.tolist()
        # Per class, the mask of its experts.
        n = ctx.problem.instance.n_experts
        self.n = n
        self.class_mask = as_masks([mask_of(np.flatnonzero(self.classes == c))
                                    for c in range(int(self.classes.max()) + 1)], n)
        self.alone = ctx.F(bits_of(range(n), n))  # F of each expert alone
        self.mean = MeanBound(ctx.problem)

    def run(self, warm: int | None) -> SolveResult:
        ctx = self.ctx
        full = ctx.feas.singles()
        if full == 0:
            return ctx.result(self.name, Status.INFEASIBLE, 0)
        self._offer(greedy_mask(ctx, full, lazy=True, warm_up=True), ctx.usable_incumbent(warm) or 0)
        return self._finish(Status.OPTIMAL if self.settle(0, full) else Status.LIMIT)

    def settle(self, p: int, q: int) -> bool:
        """Search the box [p, q] until no open box can beat the incumbent; False if a limit
        stopped it (the open boxes stay in the heap)."""
        self._push(self._bound(p, q), q, p)
        return self._search()

    def _bound(self, p: int, q: int) -> float:
        return float(self.objective.box_bound([p], [q])[0])

    def _may_beat(self, bound: float, p: int) -> bool:
        """Whether a box [p, ...] bounded by ``bound`` can hold a selection before the incumbent
        in the canonical order: every selection of the box holds p, so none costs less than p."""
        if bound != self.val:
            return bound > self.val
        return (tie_key(self.ctx.problem, p), p) < (self.best.key, self.best.mask)

    def _offer(self, *masks: int) -> None:
        masks = exact_only(self.ctx.problem, tuple(m for m in masks if m))
        if masks:
            self.ctx.F(list(masks))  # one batch; the offers below hit the cache
            for m in masks:
                self.best.offer(self.ctx, m)

    def _visit(self, p: int, q: int, bound: float) -> None:
        feas = self.ctx.feas
        if not feas.fits_worst(p):
            return  # nothing in [p, q] is feasible
        q = self._reduce_up(p, q)
        if not self.mean.may_fit(p, q):
            return
        free = np.array(members(q & ~p), dtype=np.int64)
        if free.size == 0:
            self._offer(p)
            return
        # Probe classes, not experts: F depends only on the classes S meets, so leaving out one
        # expert of a class that has others in the box changes no bound. One probe takes every
        # free expert of a class out of q; only the classes best alone are probed, as each
        # costs a bound.
        free = free[np.lexsort((free, -self.alone[free]))]
        _, first = np.unique(self.classes[free], return_index=True)
        probed = free[np.sort(first)][:_PROBES]  # one expert per class, best alone first
        copies = self.class_mask[self.classes[probed]] & (q & ~p)
        without = self.objective.box_bound_without(p, q, copies)
        # Reduce from below: a class whose absence bounds the box below the incumbent is in
        # every better selection; with one expert of it left, that expert joins p.
        beaten = np.array([not self._may_beat(float(b), p) for b in without.tolist()], dtype=bool)
        forced = beaten & (copies == bits_of(probed, self.n))
        if forced.any():
            p |= mask_of(probed[forced])
            if not feas.fits_worst(p):
                return
            self._push(self._bound(p, self._reduce_up(p, q)), q, p)
            return  # revisited with the larger p (and its smaller bound) when its turn comes
        best = np.lexsort((probed, without))  # the class whose absence lowers the bound most first
        order = np.concatenate([probed[best], free[~np.isin(free, probed)]])
        self._offer(p, q if feas.fits(q) else 0, *_prefixes(feas.packer(p, exact=False), order.tolist()))
        self._branch(p, q, int(copies[best[0]]), float(without[best[0]]))

    def _branch(self, p: int, q: int, copies: int, without: float) -> None:
        """Split [p, q] on one class: none of its experts, or its j-th free expert in p and the
        earlier ones out of q. The boxes are disjoint and cover [p, q]; the ones holding the
        class meet the same classes and hence have one bound."""
        self._push(without, q & ~copies, p)
        first = members(copies)[0]
        inside = self._bound(p | (1 << first), q)
        for i in members(copies):
            self._push(inside, q, p | (1 << i))
            q &= ~(1 << i)

    def _reduce_up(self, p: int, q: int) -> int:
        """Drop from q the experts that cannot join p, and those whose class p already holds.
        Under mean budgets only copies after p's own copy go: an earlier one would answer in
        its place, at its own cost."""
        packer = self.ctx.feas.packer(p, exact=False)
        held: dict[int, int] = {}
        for i in members(p):
            held.setdefault(self.class_of[i], i)
        none, before = self.ctx.problem.instance.n_experts, self.mean.active

        def kept(i: int) -> bool:
            own = held.get(self.class_of[i], none)
            return (own == none or (before and i < own)) and packer.can_add(i)

        return p | sum(1 << i for i in members(q & ~p) if kept(i))

    def _finish(self, status: Status) -> SolveResult:
        if status is Status.OPTIMAL and not self.best.mask:
            # Only under mean budgets: experts fit the worst cases, but the search proved no
            # selection meets the means.
            return self.ctx.result(self.name, Status.INFEASIBLE, 0, iterations=self.iterations,
                                   peak_vertices=self.peak, notes=self.mean.note())
        bound = math.nan
        if status is Status.LIMIT:
            bound = max(self.val, -self.heap[0][0]) if self.heap else self.val
        mask = self.ctx.drop_idle(self.best.mask) if status is Status.OPTIMAL else self.best.mask
        return self.ctx.result(self.name, status, mask, bound=bound, iterations=self.iterations,
                               peak_vertices=self.peak, notes=bound_notes(self.objective, status) + self.mean.note())


def _prefixes(packer, order: list[int]) -> list[int]:
    """Greedy completion step by step: every set it passes through. F is not monotone, so the
    best of them (one batch) can beat the completed set."""
    steps = []
    for i in order:
        if packer.try_add(i):
            steps.append(packer.mask)
    return steps


def _complete(packer, order: list[int]) -> int:
    """Greedy completion: add experts in ``order`` while the set stays feasible."""
    for i in order:
        packer.try_add(i)
    return packer.mask
