"""The solver interface, the one result type, and the bookkeeping every solver shares.

A solver maximises F(S) over the selections S that meet the budgets. It gets a
:class:`~moe2_cli.problem.Problem` and :class:`Limits` and returns a frozen :class:`SolveResult`.
:class:`SolveContext` holds what one solve needs: a per-solve evaluation counter around the
objective (the objective's own cache may be shared between solves, so its counter is not used),
fast feasibility, the clock and the limits, and :meth:`SolveContext.result`, which builds every
result the same way (usage, slack, binding constraints, references).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from enum import Enum

import numpy as np

from moe2_cli.errors import UsageError
from moe2_cli.mean_cost import mean_use
from moe2_cli.problem import (
    ENERGY_UNITS_PER_J,
    LATENCY_UNITS_PER_S,
    UNLIMITED,
    Problem,
    Usage,
    as_masks,
    members,
    popcount,
)
from moe2_cli.progress import ProgressCallback as ProgressCallback  # re-exported for the solver modules
from moe2_cli.progress import ProgressEvent
from moe2_cli.solvers.feasibility import AVOID, FeasibilityModel

# F(S \ {i}) above F(S) by more than this counts as a monotonicity violation; it is far above
# float round-off of a mean over queries and far below any difference a user would act on.
MONOTONE_TOL = 1e-12
# How often long solves report progress, in seconds.
PROGRESS_EVERY_S = 0.25
# Many masks are scored in batches sized to take about this long, so a time limit is checked
# often whatever F costs per mask (a fixed 65,536-mask batch once overran a 60 s limit by 84 s).
_BATCH_S = 0.1
_FIRST_BATCH, _MAX_BATCH = 256, 1 << 16


class Status(str, Enum):
    OPTIMAL = "optimal"  # proven best on F itself; the notes name the proof
    FEASIBLE = "feasible"  # a feasible answer without proof of optimality
    INFEASIBLE = "infeasible"  # no expert fits the budgets
    LIMIT = "limit"  # a limit stopped the search; the answer is the incumbent, gap proven


@dataclass(frozen=True)
class Limits:
    """Stopping rules; ``None`` means no limit. ``time_s`` holds for every solver (checked
    between steps, so a solve may overrun it by one step); ``max_vertices`` caps polyblock's
    vertices and brb's open boxes; ``max_evaluations`` caps distinct F evaluations (for cpsat
    exact: the number of enumerated sets)."""

    time_s: float | None = None
    max_vertices: int | None = None
    max_evaluations: int | None = None

    def left(self, since: float) -> Limits:
        """These limits with the time spent since ``since`` (a ``time.perf_counter()``) taken off."""
        if self.time_s is None:
            return self
        return replace(self, time_s=max(0.0, self.time_s - (time.perf_counter() - since)))


@dataclass(frozen=True)
class SolveResult:
    """What every solver returns. Resource figures are worst case, in J and s."""

    solver: str
    status: Status
    mask: int
    selection: tuple[str, ...]  # expert ids
    objective: float  # F(mask); nan if infeasible or empty
    bound: float  # proven upper bound on the optimum (== objective when optimal); nan if unknown
    gap: float  # bound - objective
    energy_j: dict[str, float]  # per category
    latency_s: dict[str, float]  # per category
    binding: tuple[str, ...]  # constraints that block adding any further expert
    slack: dict[str, float]  # "energy.<cat>" (J) / "latency.<cat>" (s) -> budget - use, capped only
    references: dict[str, float]  # from objective.references(mask)
    evaluations: int  # distinct masks whose F this solve asked for
    iterations: int
    peak_vertices: int
    wall_s: float
    monotonicity_violations: int = 0
    max_violation: float = 0.0
    notes: tuple[str, ...] = ()
    # Under mean budgets: the mean cost per query, "energy_j"/"latency_s" -> category -> value.
    mean: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return self.status is not Status.INFEASIBLE and self.mask != 0


class Solver(ABC):
    """Maximise F over the feasible selections of a problem.

    ``progress``, when given, is called now and then with a ``ProgressEvent`` of task ``solve``:
    ``done`` is the iteration count and ``values`` holds ``objective`` (the incumbent's F),
    ``bound`` and ``wall_s``. Solvers never print.
    """

    name: str = "solver"

    def __init__(self, *, seed: int = 0):
        self.seed = seed

    @abstractmethod
    def solve(self, problem: Problem, limits: Limits = Limits(), *, incumbent: int | None = None,
              progress: ProgressCallback | None = None) -> SolveResult:
        """Solve ``problem``; ``incumbent`` is a feasible mask known from elsewhere (a warm start)."""


# -------------------------------------------------------------------- per-solve bookkeeping


class SolveContext:
    """Counters, clock, limits and feasibility for one solve of one problem."""

    def __init__(self, problem: Problem, limits: Limits, progress: ProgressCallback | None = None):
        self.problem = problem
        self.limits = limits
        self.feas = FeasibilityModel(problem)
        self._progress = progress
        self._seen: set[int] = set()
        self._start = time.perf_counter()
        self._last_report = self._start
        self.violations = 0
        self.max_violation = 0.0

    # ------------------------------------------------------------ objective

    def F(self, masks: object) -> np.ndarray:
        """F of a batch of masks; counts distinct masks asked for in this solve."""
        masks = as_masks(masks, self.problem.instance.n_experts).reshape(-1)
        self._seen.update(masks.tolist())
        return np.asarray(self.problem.objective(masks), dtype=float)

    def F1(self, mask: int) -> float:
        return float(self.F([mask])[0])

    def F_until_limit(self, masks: np.ndarray) -> tuple[np.ndarray, int]:
        """F of many masks in batches of about _BATCH_S seconds, checking the limits between
        batches; also how many were scored before a limit hit (the rest are NaN)."""
        values = np.full(masks.size, np.nan)
        start, size = 0, _FIRST_BATCH
        while start < masks.size:
            if start and self.limit_hit() is not None:
                return values, start
            began = time.perf_counter()
            values[start:start + size] = self.F(masks[start:start + size])
            took = time.perf_counter() - began
            start += size
            size = int(min(_MAX_BATCH, max(_FIRST_BATCH, size * _BATCH_S / max(took, 1e-6))))
            self.report(start, float(np.nanmax(values)), math.nan)
        return values, masks.size

    @property
    def evaluations(self) -> int:
        return len(self._seen)

    def check_edges(self, parent_values: np.ndarray, child_values: np.ndarray) -> None:
        """Record monotonicity violations on edges parent -> child (child a subset of parent)."""
        excess = np.asarray(child_values) - np.asarray(parent_values)
        bad = excess > MONOTONE_TOL
        if bad.any():
            self.violations += int(bad.sum())
            self.max_violation = max(self.max_violation, float(excess[bad].max()))

    # ------------------------------------------------------------ clock and limits

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def limit_hit(self, vertices: int = 0) -> str | None:
        """The name of the first limit reached, or None."""
        lim = self.limits
        if lim.time_s is not None and self.elapsed >= lim.time_s:
            return "time"
        if lim.max_vertices is not None and vertices > lim.max_vertices:
            return "vertices"
        if lim.max_evaluations is not None and self.evaluations >= lim.max_evaluations:
            return "evaluations"
        return None

    def remaining_s(self) -> float | None:
        if self.limits.time_s is None:
            return None
        return max(0.0, self.limits.time_s - self.elapsed)

    def report(self, iterations: int, objective: float, bound: float) -> None:
        """Call the progress callback, at most every PROGRESS_EVERY_S."""
        if self._progress is None:
            return
        now = time.perf_counter()
        if now - self._last_report >= PROGRESS_EVERY_S:
            self._last_report = now
            values = {"objective": objective, "bound": bound, "wall_s": now - self._start}
            self._progress(ProgressEvent("solve", iterations, None, values))

    # ------------------------------------------------------------ warm start and ties

    def usable_incumbent(self, incumbent: int | None) -> int | None:
        """The warm start if it is a non-empty feasible mask, else None."""
        if incumbent is None or int(incumbent) == 0:
            return None
        inc = int(incumbent)
        return inc if self.feas.fits(inc) else None

    def drop_idle(self, mask: int) -> int:
        """Remove experts whose removal leaves F no lower (highest index first), so that among
        equal F the answer has fewer experts and a smaller mask. The edges it evaluates are
        checked for monotonicity too."""
        if mask == 0:
            return mask
        value = self.F1(mask)
        for i in reversed(members(mask)):
            smaller = mask & ~(1 << i)
            if not smaller:
                continue
            if self.feas.mean and not self.feas.fits(smaller):
                continue  # under mean budgets a subset need not fit
            below = self.F1(smaller)
            self.check_edges(np.array([value]), np.array([below]))
            if below >= value:
                mask, value = smaller, below
        return mask

    # ------------------------------------------------------------ result

    def result(self, solver: str, status: Status, mask: int, *, bound: float = math.nan,
               iterations: int = 0, peak_vertices: int = 0, notes: tuple[str, ...] = (),
               assumes_monotone: bool = False) -> SolveResult:
        """The result for ``mask``: F, usage, slack, binding constraints and references.

        ``assumes_monotone``: the solver's proof relies on F being monotone. Then a violation
        seen during the solve withdraws the proof (OPTIMAL becomes FEASIBLE, the bound unknown).
        """
        mask = self.problem.objective.deployable(int(mask)) if mask else 0
        value = self.F1(mask) if mask else math.nan
        wall = self.elapsed
        evaluations = self.evaluations
        if status is Status.OPTIMAL:
            bound = value
        if assumes_monotone and (self.violations or not self.problem.objective.monotone):
            # The proof needs monotone F: never claim it for an F not known to be monotone.
            status = Status.FEASIBLE if status is Status.OPTIMAL else status
            bound = math.nan
        notes = notes + self._monotone_notes(assumes_monotone, status)
        inst = self.problem.instance
        usage = self.problem.usage([mask])
        mean = self.mean_costs(mask)
        return SolveResult(
            solver=solver,
            status=status,
            mask=mask,
            selection=tuple(inst.expert_ids[i] for i in members(mask)),
            objective=value,
            bound=float(bound),
            gap=float(bound - value) if mask else math.nan,
            energy_j=dict(zip(inst.categories, usage.energy_j[0].tolist())),
            latency_s=dict(zip(inst.categories, usage.latency_s[0].tolist())),
            binding=self.binding(mask),
            slack=self.slack(usage, mean),
            references={k: float(v) for k, v in self.problem.objective.references(mask).items()},
            evaluations=evaluations,
            iterations=iterations,
            peak_vertices=peak_vertices,
            wall_s=wall,
            monotonicity_violations=self.violations,
            max_violation=self.max_violation,
            notes=notes,
            mean=mean,
        )

    def mean_costs(self, mask: int) -> dict[str, dict[str, float]]:
        """The selection's mean energy (J) and latency (s) per query by category, under mean
        budgets (empty otherwise)."""
        problem = self.problem
        if not problem.has_mean or problem.routing is None:
            return {}
        inst = problem.instance
        use = mean_use(problem.routing, inst, np.array([mask], dtype=np.int64))
        counts = np.maximum(problem.routing.counts(len(inst.categories)), 1)
        return {"energy_j": dict(zip(inst.categories, (use.energy[0] / counts / ENERGY_UNITS_PER_J).tolist())),
                "latency_s": dict(zip(inst.categories, (use.latency[0] / counts / LATENCY_UNITS_PER_S).tolist()))}

    def _monotone_notes(self, assumes_monotone: bool, status: Status) -> tuple[str, ...]:
        objective = self.problem.objective
        if objective.monotone and not self.violations:
            if assumes_monotone and status is Status.OPTIMAL:
                return (f"proof: {objective.monotone_proof}",)
            return ()
        if self.violations:
            found = (f"F is not monotone: {self.violations} evaluated subset(s) beat their superset "
                     f"(by up to {self.max_violation:.3g})")
            return (found + ("; optimality not proven" if assumes_monotone else ""),)
        if assumes_monotone:
            return ("F is not known to be monotone: this solver's proof does not apply",)
        return ()

    def slack(self, usage: Usage, mean: dict[str, dict[str, float]] | None = None) -> dict[str, float]:
        """Budget minus use, in J and s, for the capped categories, and minus ``mean`` (the
        selection's :meth:`mean_costs`) for the mean budgets."""
        budgets, inst = self.problem.budgets, self.problem.instance
        energy_slack, latency_slack = budgets.slack(usage)
        out = {}
        for c, cat in enumerate(inst.categories):
            if budgets.energy_units[c] < UNLIMITED:
                out[f"energy.{cat}"] = float(energy_slack[0, c]) / ENERGY_UNITS_PER_J
        for c, cat in enumerate(inst.categories):
            if budgets.latency_units[c] < UNLIMITED:
                out[f"latency.{cat}"] = float(latency_slack[0, c]) / LATENCY_UNITS_PER_S
        return out | self._mean_slack(mean or {})

    def _mean_slack(self, mean: dict[str, dict[str, float]]) -> dict[str, float]:
        """Mean budget minus mean cost, "energy.mean.<cat>" (J) / "latency.mean.<cat>" (s)."""
        if not mean:
            return {}
        budgets, cats = self.problem.budgets, self.problem.instance.categories
        out = {}
        for resource, caps in (("energy", budgets.energy_mean_j), ("latency", budgets.latency_mean_s)):
            key = "energy_j" if resource == "energy" else "latency_s"
            for cat, cap in zip(cats, caps or (None,) * len(cats)):
                if cap is not None:
                    out[f"{resource}.mean.{cat}"] = cap - mean[key][cat]
        return out

    def binding(self, mask: int) -> tuple[str, ...]:
        """The constraints that keep further experts out: those whose relaxation alone would
        let some expert in, or else the smallest sets of constraints that block an expert."""
        # Every expert left out, including those that cannot fit even alone: the budgets keep them out too.
        outside = ((1 << self.problem.instance.n_experts) - 1) & ~mask
        blocked = [set(self.feas.blocking(mask, i)) for i in members(outside)]
        blocked = [b for b in blocked if b]
        if not blocked:
            return ()
        fewest = min(len(b) for b in blocked)
        names = set().union(*(b for b in blocked if len(b) == fewest))
        order = [row.name for row in self.feas.rows] + list(self.feas.mean_names) + [AVOID]
        return tuple(sorted(names, key=order.index))


def tie_costs(problem: Problem, masks: object) -> np.ndarray:
    """(B, 2) the cost order among selections of equal F: traffic-weighted worst-case energy
    (mJ per query), then traffic-weighted worst-case latency (µs). Both only grow with S, so a
    selection's costs bound those of every selection holding it."""
    usage = problem.usage(as_masks(masks, problem.instance.n_experts).reshape(-1))
    shares = np.asarray(problem.instance.shares, dtype=float)
    return np.stack([usage.energy @ shares, usage.latency @ shares], axis=1)


def tie_key(problem: Problem, mask: int) -> tuple[float, float, int]:
    """The cost order of one selection: energy, latency (see :func:`tie_costs`), then experts."""
    energy, latency = tie_costs(problem, [mask])[0].tolist()
    return energy, latency, int(mask).bit_count()


class Incumbent:
    """The best feasible selection found so far; among equal F the cheaper one (least energy,
    then latency, then fewer experts, then the smaller mask)."""

    def __init__(self) -> None:
        self.mask, self.value = 0, -math.inf
        self.key: tuple[float, float, int] = (math.inf, math.inf, 0)

    def offer(self, ctx: SolveContext, mask: int) -> bool:
        """Keep the feasible ``mask`` if it beats the incumbent; say whether it was kept."""
        if mask == 0:
            return False
        value = ctx.F1(mask)
        if value < self.value:
            return False
        key = tie_key(ctx.problem, mask)
        if value == self.value and (key, mask) >= (self.key, self.mask):
            return False
        self.mask, self.value, self.key = mask, value, key
        return True


def refuse_mean(problem: Problem, solver: str, why: str) -> None:
    """UsageError when ``problem`` has mean budgets, which ``solver`` cannot handle exactly."""
    if problem.has_mean:
        raise UsageError(f"{solver} cannot handle mean budgets exactly ({why}); use brb or exhaustive-all",
                         "solver")


def best_index(values: np.ndarray, masks: np.ndarray, problem: Problem | None = None) -> int:
    """Index of the canonical best: largest value, then (with ``problem``) the cheaper by
    :func:`tie_costs`, then fewer experts, then the smaller mask."""
    values = np.asarray(values, dtype=float)
    top = np.flatnonzero(values == values.max())
    if top.size == 1:
        return int(top[0])
    tied = np.asarray(masks)[top]
    keys = [tied, popcount(tied)]
    if problem is not None:
        costs = tie_costs(problem, tied)
        keys += [costs[:, 1], costs[:, 0]]
    return int(top[np.lexsort(keys)[0]])
