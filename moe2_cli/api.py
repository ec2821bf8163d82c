"""The Python entry point: choose experts, or trace the trade-off frontier, in one call.

>>> import moe2_cli
>>> result = moe2_cli.select("default", budgets={"energy": 400, "latency": 3})
>>> result.status.value, result.selection  # doctest: +SKIP

:func:`select` and :func:`frontier` load a scenario, train the gate and solve. The command line
runs the same steps in two calls, :func:`~moe2_cli.session.open_session` then :func:`solve` or
:func:`trace_frontier`, because it also reports on the session (scenario name, notes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moe2_cli.errors import UsageError
from moe2_cli.gating.confidence import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, Bootstrap
from moe2_cli.pareto import (
    FrontierPoint,
    check_grid,
    exact_energy_frontier,
    exact_tradeoff_front,
    parse_sweep,
    sweep_budgets,
)
from moe2_cli.problem import Problem
from moe2_cli.progress import ProgressCallback
from moe2_cli.rules import assess, confidence_record
from moe2_cli.session import Session, open_session
from moe2_cli.solvers import DEFAULT_SOLVER, SOLVERS, Limits, SolveResult, Status, get_solver

ScenarioRef = str | Path | None
# {"energy": 400, "latency.math": 4, "latency": None} or the command line's ["energy=400", ...]
Budgets = Mapping[str, float | None] | Sequence[str] | None
BASELINES = ("greedy", "best-single", "random")


def budget_specs(budgets: Budgets) -> list[str] | None:
    """Budgets as the command line's ``key=value`` specs; ``None`` in a mapping lifts a cap."""
    if budgets is None:
        return None
    if isinstance(budgets, str):
        return [budgets]
    if isinstance(budgets, Mapping):
        return [f"{key}={'none' if cap is None else cap}" for key, cap in budgets.items()]
    return list(budgets)


def session_for(scenario: ScenarioRef = None, budgets: Budgets = None, *, top_k: int | None = None, seed: int = 0,
                limits: Limits = Limits(), outcomes: str | Path | None = None, metric: str = "accuracy",
                envelope: bool | None = None, solver: str | None = None, router: str = "gate") -> Session:
    """The scenario loaded, budgets and k applied, and F built (see :func:`open_session`) for
    ``router`` restricted to S; ``solver`` names the one that will run, if known (it decides
    whether the monotone envelope pays)."""
    return open_session(None if scenario is None else Path(scenario), budget_specs(budgets), top_k=top_k,
                        seed=seed, outcomes=None if outcomes is None else Path(outcomes), metric=metric,
                        envelope=envelope, time_limit=limits.time_s, solver=solver, router=router)


def solve(session: Session, solver: str = DEFAULT_SOLVER, limits: Limits = Limits(), *,
          progress: ProgressCallback | None = None) -> SolveResult:
    """Solve the session's problem with the solver registered as ``solver``."""
    return get_solver(solver, seed=session.seed).solve(session.problem, limits, progress=progress)


def select(scenario: ScenarioRef = None, budgets: Budgets = None, solver: str = DEFAULT_SOLVER,
           top_k: int | None = None, seed: int = 0, limits: Limits = Limits(), *,
           outcomes: str | Path | None = None, metric: str = "accuracy", envelope: bool | None = None,
           progress: ProgressCallback | None = None) -> SolveResult:
    """The experts that maximise F within the budgets, as ``moe2 select`` chooses them.

    ``scenario`` is a file or a shipped name (``"large"``); ``None`` is the shipped default.
    ``budgets`` override the scenario's, e.g. ``{"energy": 400, "latency.math": 4}``.
    """
    session = session_for(scenario, budgets, top_k=top_k, seed=seed, limits=limits, outcomes=outcomes,
                          metric=metric, envelope=envelope, solver=solver)
    return solve(session, solver, limits, progress=progress)


@dataclass(frozen=True)
class Skipped:
    """A solver that refused the problem (exhaustive above its size limit, say), and why."""

    solver: str
    reason: str


def compare(session: Session, limits: Limits = Limits(), *,
            progress: ProgressCallback | None = None) -> list[SolveResult | Skipped]:
    """Every registered solver on the session's problem, in registry order; a solver that
    refuses the problem is :class:`Skipped` with its reason, and the others still run."""
    results: list[SolveResult | Skipped] = []
    for name in SOLVERS:
        try:
            results.append(solve(session, name, limits, progress=progress))
        except UsageError as err:
            results.append(Skipped(name, str(err)))
    return results


def bootstrap_for(session: Session, confidence: float = DEFAULT_CONFIDENCE,
                  resamples: int = DEFAULT_RESAMPLES) -> Bootstrap:
    """The paired bootstrap of the session's F (seeded by the session's seed)."""
    estimate = session.estimate
    if estimate is None:
        raise ValueError("the session was built without an out-of-fold estimate of F")
    return Bootstrap(estimate.objective, estimate.category, resamples=resamples, confidence=confidence,
                     seed=session.seed, fold=estimate.fold)


def intervals(session: Session, bootstrap: Bootstrap, result: SolveResult,
              problem: Problem | None = None) -> dict[str, Any]:
    """The interval keys of a select or frontier record: F's interval, the gain over the best
    single expert that fits and the runner-up (all None without a selection)."""
    problem = problem or session.problem
    if result.status is Status.INFEASIBLE or not result.mask:
        return {"confidence": bootstrap.confidence, "objective_ci": None, "gain_over_best_single": None,
                "runner_up": None}
    return confidence_record(problem, assess(problem, result.mask, bootstrap))


def check_frontier_kind(sweeps: Sequence[str], exact: bool, exact_3d: bool) -> None:
    """UsageError unless exactly one kind of frontier is asked for, with at most two well-formed swept caps
    and at most MAX_SWEEP_POINTS points in all."""
    if sum((bool(sweeps), exact, exact_3d)) != 1:
        raise UsageError("give one of --sweep energy=LO:HI:STEP (optionally with a latency sweep), --exact "
                         "or --exact-3d")
    if len(sweeps) > 2:
        raise UsageError(f"--sweep takes at most two dimensions (got {len(sweeps)})")
    check_grid([parse_sweep(s, None) for s in sweeps])  # before any work; categories are checked later


def trace_frontier(session: Session, solver: str = DEFAULT_SOLVER, *, sweeps: Iterable[str] = (),
                   exact: bool = False, exact_3d: bool = False, limits: Limits = Limits(),
                   progress: ProgressCallback | None = None) -> list[FrontierPoint]:
    """The frontier of one kind: a sweep of one or two caps (``energy=50:400:10``), the exact
    F-energy front (``exact``), or the exact F-energy-latency front (``exact_3d``)."""
    sweeps = list(sweeps)
    check_frontier_kind(sweeps, exact, exact_3d)
    if exact_3d:
        return exact_tradeoff_front(session.problem)
    engine = get_solver(solver, seed=session.seed)
    if exact:
        return exact_energy_frontier(session.problem, engine, limits, progress)
    parsed = [parse_sweep(s, session.problem.instance.categories) for s in sweeps]
    return sweep_budgets(session.problem, engine, parsed, limits, progress, session.own_caps)


def frontier(scenario: ScenarioRef = None, sweeps: Iterable[str] = (), budgets: Budgets = None,
             solver: str = DEFAULT_SOLVER, top_k: int | None = None, seed: int = 0, limits: Limits = Limits(), *,
             exact: bool = False, exact_3d: bool = False, outcomes: str | Path | None = None,
             metric: str = "accuracy", envelope: bool | None = None,
             progress: ProgressCallback | None = None) -> list[FrontierPoint]:
    """The trade-off frontier as ``moe2 frontier`` traces it; points carry ``pareto`` flags."""
    session = session_for(scenario, budgets, top_k=top_k, seed=seed, limits=limits, outcomes=outcomes,
                          metric=metric, envelope=envelope, solver=solver)
    return trace_frontier(session, solver, sweeps=sweeps, exact=exact, exact_3d=exact_3d, limits=limits,
                          progress=progress)


def baseline_frontiers(session: Session, sweeps: Sequence[str] = (), limits: Limits = Limits(), *,
                       progress: ProgressCallback | None = None) -> dict[str, list[FrontierPoint]]:
    """The same sweep for every baseline heuristic, to draw beside the exact frontier. Without a
    sweep, energy runs from 1/40 of the largest possible worst case up to it in 40 steps."""
    sweeps = list(sweeps) or [f"energy={_energy_range(session)}"]
    return {name: trace_frontier(session, name, sweeps=sweeps, limits=limits, progress=progress)
            for name in BASELINES}


def _energy_range(session: Session) -> str:
    top = float(session.problem.instance.energy_j.max()) * session.problem.instance.top_k
    return f"{top / 40:.6g}:{top:.6g}:{top / 40:.6g}"
