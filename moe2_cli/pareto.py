"""Trade-off frontiers: budget sweeps with warm starts, exact ε-constraint fronts, Pareto marking.

Pure computation: progress goes out through a progress callback and nothing is printed.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from moe2_cli.errors import UsageError
from moe2_cli.problem import ENERGY_UNITS_PER_J, Budgets, Problem
from moe2_cli.progress import ProgressCallback, step_counter
from moe2_cli.scenario.budgets import FIELDS, MAXIMA, caps_of, split_key
from moe2_cli.solvers import Limits, Solver, SolveResult, Status
from moe2_cli.solvers.base import SolveContext
from moe2_cli.yamlio import did_you_mean

MAX_SWEEP_POINTS = 1_000  # a frontier plot shows no more; each point is a solve with intervals
EXACT_3D_LIMIT = 16


@dataclass(frozen=True)
class Sweep:
    """One swept cap: ``resource`` (a kind of cap: energy, latency, energy.mean or latency.mean),
    optional category, the values in order."""

    resource: str
    category: str | None
    values: tuple[float, ...]

    @property
    def label(self) -> str:
        return self.resource + (f".{self.category}" if self.category else "")


def parse_sweep(spec: str, categories: Sequence[str] | None) -> Sweep:
    """``energy=50:400:10`` (LO:HI:STEP, HI included) or ``latency.math=1:5:0.5``. With
    ``categories`` None, a category name is not checked (to refuse bad specs before any work)."""
    key, sep, rng = spec.partition("=")
    parts = rng.split(":")
    if not sep or len(parts) != 3:
        raise UsageError(f"must look like energy=50:400:10 (got {spec!r})", "sweep")
    resource, category = split_key(key, "sweep")
    if category and categories is not None and category not in categories:
        raise UsageError(f"names unknown category {category!r}{did_you_mean(category, categories)}", "sweep")
    try:
        lo, hi, step = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"{key} needs numbers LO:HI:STEP (got {rng!r})", "sweep") from None
    if not all(math.isfinite(v) for v in (lo, hi, step)) or lo <= 0 or hi < lo or step <= 0:
        raise UsageError(f"{key} needs 0 < LO <= HI and STEP > 0 (got {rng!r})", "sweep")
    if hi > MAXIMA[resource]:
        raise UsageError(f"{key} must stay at most {MAXIMA[resource]:g} (got {rng!r})", "sweep")
    span = (hi - lo) / step  # may overflow to inf for a tiny step: compared, never converted first
    if not span < MAX_SWEEP_POINTS:
        raise UsageError(f"{key} has more than {MAX_SWEEP_POINTS} points (got {rng!r})", "sweep")
    count = int(math.floor(span + 1e-9)) + 1
    return Sweep(resource, category or None, tuple(round(lo + i * step, 12) for i in range(count)))


def check_grid(sweeps: list[Sweep]) -> int:
    """The number of points of the grid; UsageError above MAX_SWEEP_POINTS in all (a grid
    multiplies its dimensions, so bounding each one would not bound the work)."""
    total = math.prod(len(s.values) for s in sweeps)
    if total > MAX_SWEEP_POINTS:
        raise UsageError(f"grid has {total} points ({' x '.join(str(len(s.values)) for s in sweeps)}); "
                         f"at most {MAX_SWEEP_POINTS} in all", "sweep")
    return total


def with_cap(budgets: Budgets, sweep: Sweep, value: float, own: frozenset[str] = frozenset()) -> Budgets:
    """``budgets`` with the swept cap set to ``value``: one category's, or the default cap of
    every category not in ``own`` (those with a cap of their own, as for a budget ``latency=``)."""
    field = FIELDS[sweep.resource]
    caps = list(caps_of(budgets, sweep.resource))
    for j, cat in enumerate(budgets.categories):
        if sweep.category == cat or (sweep.category is None and cat not in own):
            caps[j] = value
    return replace(budgets, **{field: tuple(caps)})  # type: ignore[arg-type]


@dataclass(frozen=True)
class FrontierPoint:
    budgets: Budgets
    caps: dict[str, float]  # swept label -> value
    result: SolveResult
    pareto: bool = False


def sweep_budgets(problem: Problem, solver: Solver, sweeps: list[Sweep], limits: Limits = Limits(),
                  progress: ProgressCallback | None = None,
                  own_caps: Mapping[str, frozenset[str]] | None = None) -> list[FrontierPoint]:
    """Solve every grid point. Points are visited with every cap non-decreasing along the last
    sweep, and the previous optimum warm-starts the next: it stays feasible under larger caps.
    ``own_caps`` names, per resource, the categories a swept default cap leaves alone."""
    points = []
    step = step_counter("frontier", check_grid(sweeps), progress)
    outer = [s.values for s in sweeps[:-1]]
    for prefix in itertools.product(*outer):
        incumbent = None
        for value in sweeps[-1].values:
            budgets = problem.budgets
            caps = dict(zip((s.label for s in sweeps), prefix + (value,)))
            for s, v in zip(sweeps, prefix + (value,)):
                budgets = with_cap(budgets, s, v, (own_caps or {}).get(s.resource, frozenset()))
            sub = replace(problem, budgets=budgets)
            result = _at_least_incumbent(sub, solver, limits, incumbent)
            if result.feasible:
                incumbent = result.mask
            points.append(FrontierPoint(budgets=budgets, caps=caps, result=result))
            step()
    return mark_pareto(points)


def _at_least_incumbent(problem: Problem, solver: Solver, limits: Limits, incumbent: int | None) -> SolveResult:
    """Solve with a warm start; a heuristic that ignores it may do worse than the incumbent, and
    then the incumbent is the answer, so F never falls as a budget grows."""
    result = solver.solve(problem, limits, incumbent=incumbent)
    if incumbent is None:
        return result
    value = problem.objective.value(incumbent)
    if result.feasible and result.objective >= value:
        return result
    kept = SolveContext(problem, limits).result(solver.name, Status.FEASIBLE, incumbent,
                                                notes=("kept the smaller budget's selection",))
    return replace(kept, evaluations=result.evaluations, iterations=result.iterations, wall_s=result.wall_s)


def resource_vector(result: SolveResult) -> np.ndarray:
    """What a point costs, to be minimised: its worst-case energy and latency over categories."""
    return np.array([max(result.energy_j.values()), max(result.latency_s.values())])


def pareto_mask(objective: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """True where no other point has objective >= and every cost <=, with one strict.

    Equal points (same F and costs, e.g. one selection found at several budgets) do not dominate
    each other, so only the first of them is kept: the smallest budget that reaches it.
    """
    n = objective.size
    keep = np.zeros(n, dtype=bool)
    order = np.lexsort((costs.sum(axis=1), -objective))  # best F first, then cheapest
    front_f, front_c = np.empty(0), np.empty((0, costs.shape[1]))
    for i in order:
        if not math.isfinite(objective[i]):
            continue
        weakly = (front_f >= objective[i]) & (front_c <= costs[i]).all(axis=1)
        if weakly.any():
            continue
        keep[i] = True
        front_f = np.append(front_f, objective[i])
        front_c = np.vstack([front_c, costs[i]])
    return keep


def mark_pareto(points: list[FrontierPoint]) -> list[FrontierPoint]:
    if not points:
        return points
    objective = np.array([p.result.objective if p.result.status is not Status.INFEASIBLE else -math.inf
                          for p in points], dtype=float)
    objective[np.isnan(objective)] = -math.inf  # an empty selection is on no front
    costs = np.array([resource_vector(p.result) for p in points])
    flags = pareto_mask(objective, costs)
    # The first occurrence wins ties because points come in budget order and lexsort is stable.
    return [replace(p, pareto=bool(f)) for p, f in zip(points, flags)]


def exact_energy_frontier(problem: Problem, solver: Solver, limits: Limits = Limits(),
                          progress: ProgressCallback | None = None, *, floor: float | None = None,
                          whole_trace: bool = False) -> list[FrontierPoint]:
    """Every corner of the F-energy trade-off under the fixed latency budgets (ε-constraint).

    Solve max F with energy <= cap, record the optimum, lower the cap to one unit (1 mJ) below
    its worst-case energy, and repeat until nothing fits. Each step is exact, so every corner
    of the front is visited; dominated records (same F at more energy) are filtered at the end.
    ``floor`` stops the trace at the first corner with F below it (every later one is lower
    still); ``whole_trace`` makes ``limits`` cover the whole trace rather than each step.
    """
    budgets = problem.budgets
    cap_units: int | None = None
    points = []
    step = step_counter("frontier", None, progress)
    began = time.perf_counter()
    while True:
        energy: tuple[float | None, ...] = tuple(
            None if cap_units is None else cap_units / ENERGY_UNITS_PER_J for _ in budgets.categories)
        sub_budgets = replace(budgets, energy_j=tuple(
            _min_cap(e, b) for e, b in zip(energy, budgets.energy_j)))
        sub = replace(problem, budgets=sub_budgets)
        result = solver.solve(sub, limits.left(began) if whole_trace else limits)
        step()
        if result.status is Status.INFEASIBLE or not result.mask:
            break
        used = int(problem.usage([result.mask]).energy.max())
        points.append(FrontierPoint(budgets=sub_budgets, caps={"energy": used / ENERGY_UNITS_PER_J}, result=result))
        cap_units = used - 1
        if cap_units <= 0 or (floor is not None and result.objective < floor):
            break
    points.reverse()  # ascending energy
    marked = mark_pareto(points)
    return [p for p in marked if p.pareto]


def exact_tradeoff_front(problem: Problem, max_experts: int = EXACT_3D_LIMIT) -> list[FrontierPoint]:
    """Every selection on the (F up, worst energy down, worst latency down) front, by enumeration.

    The budgets still bound the region; within it no grid is needed because every selection is
    scored. Equal points keep the smaller mask.
    """
    inst = problem.instance
    if inst.n_experts > max_experts:
        raise UsageError(f"the exact 3-D frontier enumerates every selection: at most {max_experts} experts "
                         f"(got {inst.n_experts}); sweep a grid instead")
    masks = np.arange(1, 1 << inst.n_experts, dtype=np.int64)
    masks = masks[problem.feasible(masks)]
    usage = problem.usage(masks)
    costs = np.stack([usage.energy.max(axis=1), usage.latency.max(axis=1)], axis=1).astype(float)
    flags = pareto_mask(problem.objective(masks), costs)
    context = SolveContext(problem, Limits())
    points = [FrontierPoint(budgets=problem.budgets, caps={}, pareto=True,
                            result=context.result("enumeration", Status.OPTIMAL, int(m))) for m in masks[flags]]
    return sorted(points, key=lambda p: (max(p.result.energy_j.values()), max(p.result.latency_s.values())))


def _min_cap(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
