"""The OR-Tools CP-SAT baseline, in two modes.

``exact``: enumerate every maximal feasible set with CP-SAT, then evaluate F on them in one batch
(exact for monotone F, whose optimum is attained on a maximal set). ``surrogate``: maximise an
additive score (each expert's standalone F) under the same constraints, then evaluate F on the
answer; the score is a surrogate, so the answer carries no proof.

Both models use the instance's integer units as they are: energy in mJ and latency in µs (scale
1), the same integers every other solver checks. Both run one worker with a fixed seed and a time
limit, and read values only after checking the status.
"""

from __future__ import annotations

import numpy as np
from ortools.sat.python import cp_model

from moe2_cli.problem import Problem, as_masks, bits_of, members
from moe2_cli.solvers.base import (
    Limits,
    ProgressCallback,
    SolveContext,
    Solver,
    SolveResult,
    Status,
    best_index,
    refuse_mean,
)
from moe2_cli.solvers.baselines import greedy_mask
from moe2_cli.solvers.feasibility import Row

# Surrogate scores are scaled to integers up to this value (objective coefficients stay exact).
_SCORE_SCALE = 1_000_000
SCALE_NOTE = "integer units: energy mJ, latency µs (scale 1)"


class CpSatSolver(Solver):
    """CP-SAT in ``exact`` (enumerate maximal feasible sets) or ``surrogate`` mode."""

    def __init__(self, *, seed: int = 0, mode: str = "exact"):
        super().__init__(seed=seed)
        if mode not in ("exact", "surrogate"):
            raise ValueError(f"mode must be exact or surrogate (got {mode})")
        self.mode = mode
        self.name = "cpsat" if mode == "exact" else "cpsat-surrogate"

    def solve(self, problem: Problem, limits: Limits = Limits(), *, incumbent: int | None = None,
              progress: ProgressCallback | None = None) -> SolveResult:
        refuse_mean(problem, self.name, "a top-k of the router per query is not in its model")
        ctx = SolveContext(problem, limits, progress)
        allowed = ctx.feas.singles()
        if allowed == 0:
            return ctx.result(self.name, Status.INFEASIBLE, 0)
        if self.mode == "exact":
            return self._exact(ctx, allowed)
        return self._surrogate(ctx, allowed, ctx.usable_incumbent(incumbent))

    # ------------------------------------------------------------ exact

    def _exact(self, ctx: SolveContext, allowed: int) -> SolveResult:
        try:
            model = _Model(ctx, allowed, determined=True)
            model.add_maximality()
        except _Stopped:
            return self._stopped(ctx, allowed)
        collector = _Collector(model.x, ctx)
        solver = self._solver(ctx, enumerate_all=True)
        status = solver.solve(model.model, collector)
        masks = as_masks(sorted(collector.masks), ctx.problem.instance.n_experts)  # dedupe: solutions may repeat
        notes: tuple[str, ...] = (
            f"{masks.size} maximal feasible sets enumerated (CP-SAT {solver.status_name(status)})", SCALE_NOTE)
        values, done = ctx.F_until_limit(masks)
        if done < masks.size:
            notes += (f"a limit stopped the scoring after {done} of {masks.size} sets",)
        scored = done == masks.size
        masks, values = masks[:done], values[:done]
        if done and scored and status == cp_model.OPTIMAL:
            best = int(masks[best_index(values, masks, ctx.problem)])
            return ctx.result(self.name, Status.OPTIMAL, ctx.drop_idle(best), iterations=masks.size, notes=notes,
                              assumes_monotone=True)
        # Cut short, often before a good set on wide instances: greedy's selection competes too.
        greedy = greedy_mask(ctx, allowed, lazy=True)
        masks = as_masks([*masks.tolist(), greedy], ctx.problem.instance.n_experts)
        values = np.append(values, ctx.F1(greedy))
        best = int(masks[best_index(values, masks, ctx.problem)])
        if best == greedy:
            notes += ("the answer is greedy's: no set enumerated within the limit was better",)
        # For monotone F nothing beats F(all experts that fit alone).
        return ctx.result(self.name, Status.LIMIT, best, bound=max(ctx.F1(allowed), float(values.max())),
                          iterations=done, notes=notes, assumes_monotone=True)

    # ------------------------------------------------------------ surrogate

    def _surrogate(self, ctx: SolveContext, allowed: int, warm: int | None) -> SolveResult:
        idx = members(allowed)
        singles = bits_of(idx, ctx.problem.instance.n_experts)
        weights = _integer_scores(ctx.F(singles))
        try:
            model = _Model(ctx, allowed, determined=False)
        except _Stopped:
            return self._stopped(ctx, allowed)
        model.model.maximize(sum(int(w) * model.x[i] for i, w in zip(idx, weights)))
        if warm is not None:
            for i in idx:
                model.model.add_hint(model.x[i], warm >> i & 1)
        solver = self._solver(ctx, enumerate_all=False)
        status = solver.solve(model.model)
        notes = (f"surrogate objective: sum of standalone F (CP-SAT {solver.status_name(status)})", SCALE_NOTE)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return ctx.result(self.name, Status.LIMIT, 0, notes=notes)
        mask = sum(1 << i for i in idx if solver.boolean_value(model.x[i]))
        return ctx.result(self.name, Status.FEASIBLE, mask, iterations=1, notes=notes)

    # ------------------------------------------------------------ shared

    def _stopped(self, ctx: SolveContext, allowed: int) -> SolveResult:
        """The limit ran out while the model was built (its sorting networks grow with N·k)."""
        bound = ctx.F1(allowed) if self.mode == "exact" else float("nan")
        return ctx.result(self.name, Status.LIMIT, 0, bound=bound, assumes_monotone=True,
                          notes=("a limit stopped CP-SAT while it built the model", SCALE_NOTE))

    def _solver(self, ctx: SolveContext, *, enumerate_all: bool) -> cp_model.CpSolver:
        solver = cp_model.CpSolver()
        solver.parameters.num_workers = 1  # parallel search is not deterministic
        solver.parameters.random_seed = self.seed
        solver.parameters.log_search_progress = False
        remaining = ctx.remaining_s()
        if remaining is not None:
            solver.parameters.max_time_in_seconds = max(remaining, 0.001)
        if enumerate_all:
            solver.parameters.enumerate_all_solutions = True
        else:
            # The LP relaxation closes the t/u encoding's bound at once; without it a single
            # worker can search for minutes on N = 16 (measured).
            solver.parameters.linearization_level = 2
        return solver


class _Stopped(Exception):
    """The time limit ran out while the model was built."""


class _Collector(cp_model.CpSolverSolutionCallback):
    """Collects the selection mask of every solution (reported as progress); stops once there
    are as many as the evaluation limit allows."""

    def __init__(self, x: dict[int, cp_model.IntVar], ctx: SolveContext):
        super().__init__()
        self._x = x
        self._ctx = ctx
        self.masks: set[int] = set()

    def on_solution_callback(self) -> None:
        self.masks.add(sum(1 << i for i, var in self._x.items() if self.boolean_value(var)))
        self._ctx.report(len(self.masks), float("nan"), float("nan"))
        cap = self._ctx.limits.max_evaluations
        if cap is not None and len(self.masks) >= cap:
            self.stop_search()


class _Model:
    """Selection literals and the integer resource constraints of a problem.

    ``determined=True`` uses auxiliaries that the selection fixes uniquely (a sorting network
    for the k largest costs), so enumerating solutions enumerates selections; otherwise the
    compact t/u encoding of the sum of the k largest is used.
    """

    def __init__(self, ctx: SolveContext, allowed: int, *, determined: bool):
        self.model = cp_model.CpModel()
        self.k = ctx.problem.instance.top_k
        self.allowed = members(allowed)
        self.x = {i: self.model.new_bool_var(f"x{i}") for i in self.allowed}
        self.rows = ctx.feas.rows
        self.servers = ctx.problem.instance.expert_server
        self.used: dict[int, cp_model.IntVar] = {}
        self._blockers: dict[tuple[int, int, int], cp_model.IntVar] = {}
        # For each (row, group): the sum of the k largest minus the k-th (determined mode).
        self.below_kth: dict[tuple[int, int], cp_model.LinearExpr] = {}
        self.stop = lambda: ctx.limit_hit() is not None
        for r, row in enumerate(self.rows):
            for g, (group, cap) in enumerate(zip(row.groups, row.caps)):
                if self.stop():
                    raise _Stopped
                items = [int(i) for i in group if int(i) in self.x]
                if items:
                    self._constrain(r, g, row, items, cap, determined)
        self.meets = self._avoid(ctx.feas.avoid)

    def _avoid(self, avoid: tuple[int, ...]) -> list[tuple[int, cp_model.IntVar]]:
        """Problem.avoid: per mask a literal equal to "the selection meets it" (determined by the
        selection, so enumeration sees each selection once), and one of them false."""
        groups = [[self.x[i] for i in members(other) if i in self.x] for other in avoid]
        if not all(groups):
            return []  # a mask without an allowed expert: every selection misses it
        meets = []
        for a, (other, items) in enumerate(zip(avoid, groups)):
            m = self.model.new_bool_var(f"meets{a}")
            for x in items:
                self.model.add_implication(x, m)
            self.model.add_bool_or(items).only_enforce_if(m)
            meets.append((other, m))
        if meets:
            self.model.add_bool_or([~m for _, m in meets])
        return meets

    def _server_used(self, s: int, items: list[int]) -> cp_model.IntVar:
        if s not in self.used:
            y = self.model.new_bool_var(f"used{s}")
            for i in items:
                self.model.add_implication(self.x[i], y)
            self.model.add_bool_or([self.x[i] for i in items]).only_enforce_if(y)
            self.used[s] = y
        return self.used[s]

    def _constrain(self, r: int, g: int, row: Row, items: list[int], cap: int, determined: bool) -> None:
        values = [int(row.cost[i]) * self.x[i] for i in items]
        if determined:
            top = _largest(self.model, values, self.k, max(int(row.cost[i]) for i in items), f"r{r}g{g}")
            total = sum(top)
            self.below_kth[(r, g)] = total - top[-1] if len(top) == self.k else total
        else:
            total = _top_k_bound(self.model, values, self.k, max(int(row.cost[i]) for i in items), f"r{r}g{g}")
        constraint = self.model.add(total <= cap)
        if row.per_server:
            constraint.only_enforce_if(self._server_used(int(self.servers[items[0]]), items))

    def add_maximality(self) -> None:
        """Every expert left out must break some row when added (fully reified)."""
        for i in self.allowed:
            if self.stop():
                raise _Stopped
            blockers = []
            for r, row in enumerate(self.rows):
                g = int(row.group_of(len(row.cost))[i])
                # Adding i to a feasible S breaks the row iff (k-1 largest of S) + cost_i > cap.
                threshold = row.caps[g] - int(row.cost[i]) + 1
                blockers.append(self._at_least(r, g, threshold))
            blockers.append(self._meets_all_with(i))
            self.model.add_bool_or([self.x[i]] + [b for b in blockers if b is not None])

    def _meets_all_with(self, i: int):
        """A literal equal to "the selection plus expert i meets every mask of Problem.avoid",
        or None without such masks."""
        if not self.meets:
            return None
        others = [m for mask, m in self.meets if not mask >> i & 1]
        b = self.model.new_bool_var(f"avoid_blocks{i}")
        self.model.add_bool_and(others).only_enforce_if(b)
        self.model.add_bool_or([~m for m in others] + [b])
        return b

    def _at_least(self, r: int, g: int, threshold: int):
        """A literal equal to "(k-1 largest of group g in row r) >= threshold", or None if never."""
        if (r, g) not in self.below_kth or threshold > self._upper(r, g):
            return None
        key = (r, g, threshold)
        if key not in self._blockers:
            expr = self.below_kth[(r, g)]
            b = self.model.new_bool_var(f"block_r{r}g{g}_{threshold}")
            self.model.add(expr >= threshold).only_enforce_if(b)
            self.model.add(expr <= threshold - 1).only_enforce_if(~b)
            self._blockers[key] = b
        return self._blockers[key]

    def _upper(self, r: int, g: int) -> int:
        row = self.rows[r]
        costs = sorted((int(row.cost[i]) for i in row.groups[g] if int(i) in self.x), reverse=True)
        return sum(costs[: max(self.k - 1, 0)]) if len(costs) >= self.k else sum(costs)


def _largest(model: cp_model.CpModel, values: list, k: int, upper: int, tag: str) -> list:
    """Determined variables t_1 >= ... >= t_m (m = min(k, len)) equal to the m largest values:
    an insertion network where each step keeps the max and carries the min down."""
    top: list = []
    for j, v in enumerate(values):
        carry = v
        for pos in range(len(top)):
            hi = model.new_int_var(0, upper, f"{tag}_hi{j}_{pos}")
            lo = model.new_int_var(0, upper, f"{tag}_lo{j}_{pos}")
            model.add_max_equality(hi, [top[pos], carry])
            model.add(lo == top[pos] + carry - hi)  # min = sum - max
            top[pos], carry = hi, lo
        if len(top) < k:
            top.append(carry)
    return top


def _top_k_bound(model: cp_model.CpModel, values: list, k: int, upper: int, tag: str):
    """An expression that can be made equal to the sum of the k largest values and never less
    (k·t + sum max(0, v_i - t) minimised over t), so "expr <= cap" encodes "k largest <= cap"."""
    if k >= len(values):
        return sum(values)
    t = model.new_int_var(0, upper, f"{tag}_t")
    excess = []
    for j, v in enumerate(values):
        e = model.new_int_var(0, upper, f"{tag}_u{j}")
        model.add(e >= v - t)
        excess.append(e)
    return k * t + sum(excess)


def _integer_scores(values: np.ndarray) -> np.ndarray:
    """Positive integer objective coefficients ordered like ``values``."""
    values = np.asarray(values, dtype=float)
    spread = float(values.max() - values.min())
    if values.min() <= 0:
        values = values - values.min() + max(1e-9, 0.01 * spread)
    top = float(values.max())
    if not top > 0:
        return np.ones(values.size, dtype=np.int64)
    return np.maximum(1, np.round(values / top * _SCORE_SCALE)).astype(np.int64)
