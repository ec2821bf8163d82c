"""The Python entry point: choose experts, or trace the trade-off frontier, in one call.

>>> import moe2_cli
>>> record = moe2_cli.select("default", budgets={"energy": 400, "latency": 3})
>>> record.status.value, record.selection, record["objective_ci"]  # doctest: +SKIP

:func:`select`, :func:`frontier` and :func:`compare` take typed values (budgets as a mapping,
names as strings checked against the registries) and raise :class:`ValueError` (moe2's
:class:`~moe2_cli.errors.UsageError`) naming the parameter, never a command-line flag. Each
selection they report is a :class:`~moe2_cli.report.SelectionRecord`: the solve, and the very
object the command line prints with ``--format json``. The command line runs the same steps in two calls,
:func:`session_for` then :func:`choose`, :func:`frontier_records` or :func:`compare`, so that
it can show progress for each.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from moe2_cli.errors import UsageError
from moe2_cli.gating.confidence import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, Bootstrap, query_values
from moe2_cli.gating.crossfit import DEFAULT_FOLDS
from moe2_cli.gating.drift import prediction
from moe2_cli.gating.mix import coverage_note, sample_se
from moe2_cli.mean_cost import INTERVAL_NOTE, mean_intervals
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
from moe2_cli.report import FrontierRecord, SelectionRecord, explain_experts, result_payload
from moe2_cli.rules import DEFAULT_RULE, RULES, apply_rule, assess, confidence_record, significance_note
from moe2_cli.session import Session, check_choice, open_session
from moe2_cli.solvers import DEFAULT_SOLVER, SOLVERS, Limits, SolveResult, Status, get_solver

ScenarioRef = str | Path | None
# {"energy": 400, "latency.math": 4, "latency": None}, or the command line's ["energy=400", ...]
Budgets = Mapping[str, float | None] | Sequence[str] | None
# {"categories": {"math": 0.5, "mcq": 0.5}, "tags": {"gsm8k": 0.3, ...}}, or a mix or outcome file
MixSpec = Mapping[str, Mapping[str, float]] | str | Path | None
BASELINES = ("greedy", "best-single", "random")


def budget_specs(budgets: Budgets) -> list[str] | None:
    """Budgets as ``key=value`` specs; ``None`` in a mapping lifts a cap."""
    if budgets is None:
        return None
    if isinstance(budgets, str):
        return [budgets]
    if isinstance(budgets, Mapping):
        return [f"{key}={'none' if cap is None else cap}" for key, cap in budgets.items()]
    return list(budgets)


def session_for(scenario: ScenarioRef = None, budgets: Budgets = None, *, top_k: int | None = None, seed: int = 0,
                limits: Limits = Limits(), outcomes: str | Path | None = None, metric: str = "accuracy",
                envelope: bool | None = None, solver: str | None = None, folds: int = DEFAULT_FOLDS,
                router: str = "gate", cache: bool = True, mix: MixSpec = None,
                progress: ProgressCallback | None = None) -> Session:
    """The scenario loaded, budgets and k applied, and F built (see :func:`open_session`); ``solver``
    names the one that will run, if known (it decides whether the monotone envelope pays); ``mix``
    reweights F to a traffic mix (``{"tags": {"gsm8k": 0.3, ...}}``, or a file)."""
    return open_session(None if scenario is None else Path(scenario), budget_specs(budgets), top_k=top_k,
                        seed=seed, outcomes=None if outcomes is None else Path(outcomes), metric=metric,
                        envelope=envelope, time_limit=limits.time_s, solver=solver, folds=folds,
                        use_cache=cache, router=router, progress=progress,
                        mix=mix if mix is None or isinstance(mix, Mapping) else Path(mix))


def solve(session: Session, solver: str = DEFAULT_SOLVER, limits: Limits = Limits(), *,
          progress: ProgressCallback | None = None) -> SolveResult:
    """Solve the session's problem with the solver registered as ``solver``."""
    return get_solver(solver, seed=session.seed).solve(session.problem, limits, progress=progress)


def select(scenario: ScenarioRef = None, budgets: Budgets = None, solver: str = DEFAULT_SOLVER,
           top_k: int | None = None, seed: int = 0, limits: Limits = Limits(), *,
           outcomes: str | Path | None = None, metric: str = "accuracy", envelope: bool | None = None,
           folds: int = DEFAULT_FOLDS, rule: str = DEFAULT_RULE, router: str = "gate",
           confidence: float = DEFAULT_CONFIDENCE, cache: bool = True, timing: bool = True, mix: MixSpec = None,
           progress: ProgressCallback | None = None) -> SelectionRecord:
    """The experts that maximise F within the budgets, as ``moe2 select`` chooses and reports them.

    ``scenario`` is a file or a shipped name (``"large"``); ``None`` is the shipped default.
    ``budgets`` override the scenario's, e.g. ``{"energy": 400, "latency.math": 4}``.
    ``mix`` plans for a stated traffic mix: F and its interval are reweighted to it.
    """
    check_choice("rule", rule, RULES)
    _check_confidence(confidence)
    session = session_for(scenario, budgets, top_k=top_k, seed=seed, limits=limits, outcomes=outcomes,
                          metric=metric, envelope=envelope, solver=solver, folds=folds, router=router, cache=cache,
                          mix=mix, progress=progress)
    return choose(session, solver, limits, rule=rule, confidence=confidence, timing=timing, progress=progress)


def choose(session: Session, solver: str = DEFAULT_SOLVER, limits: Limits = Limits(), *, rule: str = DEFAULT_RULE,
           confidence: float = DEFAULT_CONFIDENCE, timing: bool = True,
           progress: ProgressCallback | None = None) -> SelectionRecord:
    """Solve the session's problem, apply ``rule`` and report the selection with its intervals."""
    check_choice("rule", rule, RULES)
    _check_confidence(confidence)
    began = time.perf_counter()  # the limit covers loading the solver (CP-SAT's import) and the runner-up too
    engine = get_solver(solver, seed=session.seed)
    result = engine.solve(session.problem, limits.left(began), progress=progress)
    bootstrap = bootstrap_for(session, confidence)
    result = apply_rule(session.problem, result, rule, bootstrap, engine, limits.left(began))
    return selection_record(session, result, intervals(session, bootstrap, result, limits=limits.left(began)),
                            rule=rule, timing=timing)


def selection_record(session: Session, result: SolveResult, interval_keys: Mapping[str, Any] | None, *,
                     problem: Problem | None = None, rule: str = DEFAULT_RULE, timing: bool = True,
                     extra: Mapping[str, Any] | None = None, cls: type[SelectionRecord] = SelectionRecord,
                     ) -> SelectionRecord:
    """The select object for ``result`` on ``problem`` (the session's, or one with other caps),
    with ``interval_keys`` from :func:`intervals` (None: unknown, null). ``extra`` keys follow."""
    problem = problem or session.problem
    payload = result_payload(result, problem, scenario=session.scenario.name, seed=session.seed,
                             metric=session.metric, timing=timing, notes=session.notes)
    payload.update({"folds": session.folds, "rule": rule, "router": session.router})
    payload.update(_NO_INTERVALS if interval_keys is None else interval_keys)
    payload["mix"] = _mix_record(session, result.mask, payload)
    if note := significance_note(payload):
        payload["notes"].append(note)
    if payload["objective_ci"] is not None:
        payload["notes"].append(coverage_note(payload["mix"]))
    payload["experts"] = explain_experts(problem, result.mask if result.feasible else 0)
    payload.update(extra or {})
    return cls.of(result, payload)


def _mix_record(session: Session, mask: int, payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``mix`` key; a mix taken from a file of queries also gets the interval F on those
    queries themselves should fall in (the plan's, widened by their own sampling error)."""
    estimate = session.estimate
    record = None if estimate is None else estimate.weighting.record
    ci = payload["objective_ci"]
    if record is None or ci is None or estimate is None:
        return record
    se = sample_se(query_values(estimate.objective, [mask])[0], estimate.weighting)
    if se is None:
        return record
    assert estimate.weighting.sample_counts is not None
    expected = prediction(ci, se, payload["confidence"])
    sample = {"queries": int(estimate.weighting.sample_counts.sum()), "se": se, **expected}
    return {**record, "sample": sample}


_NO_INTERVALS = {"confidence": None, "objective_ci": None, "gain_over_best_single": None, "runner_up": None}


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise UsageError(f"must lie strictly between 0 and 1 (got {confidence})", "confidence")


@dataclass(frozen=True)
class Skipped:
    """A solver that refused the problem (exhaustive above its size limit, say), and why."""

    solver: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"solver": self.solver, "status": "skipped", "reason": self.reason}


def compare(session: Session, limits: Limits = Limits(), *, confidence: float = DEFAULT_CONFIDENCE,
            timing: bool = True, progress: ProgressCallback | None = None) -> list[SelectionRecord | Skipped]:
    """Every registered solver on the session's problem, in registry order, each reported as
    :func:`select` reports it plus ``gap_to_best`` (the best F found minus its own). A solver that
    refuses the problem is :class:`Skipped` with its reason, and the others still run."""
    _check_confidence(confidence)
    results: list[SolveResult | Skipped] = []
    for name in SOLVERS:
        try:
            results.append(solve(session, name, limits, progress=progress))
        except UsageError as err:
            results.append(Skipped(name, str(err)))
    solved = [r for r in results if isinstance(r, SolveResult)]
    best = max((r.objective for r in solved if r.feasible), default=None)
    bootstrap = bootstrap_for(session, confidence)
    assessed: dict[int, dict[str, Any]] = {}  # solvers often agree: each selection is assessed once
    records: list[SelectionRecord | Skipped] = []
    for r in results:
        if isinstance(r, Skipped):
            records.append(r)
            continue
        if r.mask not in assessed:
            assessed[r.mask] = intervals(session, bootstrap, r, limits=limits)
        gap = None if best is None or not r.feasible else best - r.objective
        records.append(selection_record(session, r, assessed[r.mask], timing=timing, extra={"gap_to_best": gap}))
    return records


def bootstrap_for(session: Session, confidence: float = DEFAULT_CONFIDENCE,
                  resamples: int = DEFAULT_RESAMPLES) -> Bootstrap:
    """The paired bootstrap of the session's F (seeded by the session's seed)."""
    estimate = session.estimate
    if estimate is None:
        raise ValueError("the session was built without an out-of-fold estimate of F")
    return Bootstrap(estimate.objective, estimate.weighting.strata, resamples=resamples, confidence=confidence,
                     seed=session.seed, fold=estimate.fold, shares=estimate.weighting.shares)


def intervals(session: Session, bootstrap: Bootstrap, result: SolveResult,
              problem: Problem | None = None, *, limits: Limits = Limits()) -> dict[str, Any]:
    """The interval keys of a select or frontier record: F's interval, the gain over the best
    single expert that fits and the runner-up (all None without a selection; the runner-up
    also when ``limits``, what is left of a time limit, stop its search)."""
    problem = problem or session.problem
    if result.status is Status.INFEASIBLE or not result.mask:
        return {"confidence": bootstrap.confidence, "objective_ci": None, "gain_over_best_single": None,
                "runner_up": None} | ({"mean_cost": None} if problem.has_mean else {})
    return confidence_record(problem, assess(problem, result.mask, bootstrap, limits)) | mean_cost_record(
        problem, result.mask, bootstrap)


def mean_cost_record(problem: Problem, mask: int, bootstrap: Bootstrap) -> dict[str, Any]:
    """Under mean budgets, ``mean_cost``: the selection's mean cost per query by category with
    its interval, from the resamples of F's interval, and what it covers."""
    if not problem.has_mean or problem.routing is None:
        return {}
    figures = mean_intervals(problem.routing, problem.instance, mask, bootstrap.weights, bootstrap.confidence)
    return {"mean_cost": {**figures, "note": INTERVAL_NOTE}}


def check_frontier_kind(sweeps: Sequence[str], exact: bool, exact_3d: bool) -> None:
    """UsageError unless exactly one kind of frontier is asked for, with at most two well-formed swept caps
    and at most MAX_SWEEP_POINTS points in all."""
    if sum((bool(sweeps), exact, exact_3d)) != 1:
        raise UsageError("give exactly one kind of frontier: sweeps (energy=LO:HI:STEP, optionally with a "
                         "latency sweep), exact or exact_3d")
    if len(sweeps) > 2:
        raise UsageError(f"takes at most two dimensions (got {len(sweeps)})", "sweep")
    check_grid([parse_sweep(s, None) for s in sweeps])  # before any work; categories are checked later


def envelope_for_sweeps(sweeps: Sequence[str], envelope: bool | None) -> bool | None:
    """No envelope unasked when a mean budget is swept: a subset of a selection need not meet it."""
    if envelope is None and any(parse_sweep(s, None).resource.endswith(".mean") for s in sweeps):
        return False
    return envelope


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
             metric: str = "accuracy", envelope: bool | None = None, folds: int = DEFAULT_FOLDS,
             confidence: float = DEFAULT_CONFIDENCE, cache: bool = True, timing: bool = True,
             progress: ProgressCallback | None = None) -> list[FrontierRecord]:
    """The trade-off frontier as ``moe2 frontier`` traces and reports it: one record per point,
    each the select object plus ``caps`` and ``pareto``."""
    sweeps = list(sweeps)
    check_frontier_kind(sweeps, exact, exact_3d)  # before the gate is trained
    _check_confidence(confidence)
    envelope = envelope_for_sweeps(sweeps, envelope)
    session = session_for(scenario, budgets, top_k=top_k, seed=seed, limits=limits, outcomes=outcomes,
                          metric=metric, envelope=envelope, solver=solver, folds=folds, cache=cache,
                          progress=progress)
    points = trace_frontier(session, solver, sweeps=sweeps, exact=exact, exact_3d=exact_3d, limits=limits,
                            progress=progress)
    return frontier_records(session, points, bootstrap_for(session, confidence), timing=timing)


def frontier_records(session: Session, points: Sequence[FrontierPoint], bootstrap: Bootstrap | None, *,
                     timing: bool = True) -> list[FrontierRecord]:
    """Each point as the select object of its solve, at its caps, plus ``caps`` and ``pareto``;
    without a bootstrap (baselines drawn for comparison) the intervals are null."""
    records = []
    for point in points:
        problem = replace(session.problem, budgets=point.budgets)
        keys = None if bootstrap is None else intervals(session, bootstrap, point.result, problem)
        record = selection_record(session, point.result, keys, problem=problem, timing=timing,
                                  extra={"caps": point.caps, "pareto": point.pareto}, cls=FrontierRecord)
        records.append(cast(FrontierRecord, record))
    return records


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
