"""From a scenario file and command-line choices to the Problem every solver works on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moe2_cli.errors import UsageError
from moe2_cli.gating.crossfit import DEFAULT_FOLDS
from moe2_cli.gating.ensemble import MonotoneEnvelope
from moe2_cli.gating.mix import read_mix
from moe2_cli.gating.pipeline import ROUTERS, Estimate, estimate_objective, read_with_task_map
from moe2_cli.mean_cost import Routing
from moe2_cli.objective import Objective
from moe2_cli.problem import Problem
from moe2_cli.progress import ProgressCallback
from moe2_cli.scenario.budgets import apply_budget_specs, own_caps_after
from moe2_cli.scenario.scenario import Scenario, load_scenario
from moe2_cli.solvers import NEEDS_MONOTONE, SOLVERS

METRICS = ("accuracy", "neg-cross-entropy")
# The monotone envelope tabulates F over all 2^N selections: never above this many experts.
ENVELOPE_LIMIT = 20
# Unasked, it is built only where it takes a few seconds at most: F's k <= 2 path does over
# 100,000 masks/s, the k >= 3 path 20,000-40,000 (benchmarks/objective_throughput.py).
_CHEAP_MASKS_K2, _CHEAP_MASKS_K3 = 1 << 20, 1 << 16


@dataclass(frozen=True)
class Session:
    scenario: Scenario
    problem: Problem
    seed: int
    metric: str
    notes: tuple[str, ...] = ()
    # Per resource, the categories with a cap of their own (scenario or a budget latency.CAT=):
    # a swept default cap (latency=...) leaves them alone, as a budget latency= does.
    own_caps: dict[str, frozenset[str]] = field(default_factory=dict)
    estimate: Estimate | None = None  # F out of fold, for the intervals
    folds: int = DEFAULT_FOLDS
    router: str = "gate"  # the level-2 model restricted to S that defines F(S)


def open_session(scenario_path: Path | None, budget_specs: list[str] | None = None, *, top_k: int | None = None,
                 seed: int = 0, outcomes: Path | None = None, metric: str = "accuracy",
                 envelope: bool | None = None, time_limit: float | None = None, folds: int = DEFAULT_FOLDS,
                 use_cache: bool = True, router: str = "gate", progress: ProgressCallback | None = None,
                 solver: str | None = None, mix: Path | Mapping[str, Any] | None = None) -> Session:
    """Load the scenario, apply budgets and k, and build the objective F (cross-fitted over
    ``folds`` folds, trained gates from the cache unless ``use_cache`` is False), reweighted to
    the traffic ``mix`` (a mapping, or a file: see :func:`~moe2_cli.gating.mix.read_mix`).

    A gate restricted to S is not monotone in S in general, and the polyblock, CP-SAT and
    exhaustive proofs need monotone F. ``envelope`` has the solvers maximise F-hat(S) = max over
    subsets S' of S of F(S'), which is monotone and has the same feasible optimum because
    dropping experts never breaks a budget; solvers drop idle experts, so the selection they
    return reaches F-hat with F itself. By default it is built only for ``solver`` (None: any
    solver may run) when that solver's proof needs monotone F and the tabulation is cheap; brb
    and exhaustive-all prove on F itself, and the heuristics prove nothing.
    """
    check_choice("metric", metric, METRICS)
    check_choice("router", router, ROUTERS)
    if solver is not None:
        check_choice("solver", solver, SOLVERS)
    if time_limit is not None and not time_limit > 0:
        raise UsageError(f"must be > 0 seconds (got {time_limit})", "time_limit")
    if folds < 1:
        raise UsageError(f"must be >= 1 (got {folds})", "folds")
    scenario = load_scenario(scenario_path)
    budgets = apply_budget_specs(scenario.budgets, budget_specs, scenario.own_caps)
    instance = scenario.instance if top_k is None else scenario.instance.with_top_k(top_k)
    # Read before the gate is trained: a bad mix file fails fast.
    target = None if mix is None else read_mix(mix, instance, lambda path: read_with_task_map(scenario, path))
    estimate = estimate_objective(scenario, top_k=instance.top_k, seed=seed, outcomes_path=outcomes, metric=metric,
                                  folds=folds, use_cache=use_cache, router=router, progress=progress, mix=target)
    gated = estimate.objective
    objective: Objective = gated
    notes: tuple[str, ...] = estimate.weighting.notes
    if budgets.has_mean and envelope:
        raise UsageError("cannot be used with mean budgets: a subset of a selection need not meet them", "envelope")
    if envelope is None:
        envelope = not budgets.has_mean and _envelope_pays(solver, instance.n_experts, instance.top_k)
    if envelope:
        if instance.n_experts > ENVELOPE_LIMIT:
            raise UsageError(f"needs at most {ENVELOPE_LIMIT} experts (got {instance.n_experts})", "envelope")
        objective = MonotoneEnvelope(gated)
        notes += (f"F tabulated over all {2 ** instance.n_experts} selections; solvers maximise its monotone "
                 f"envelope, exact for any F",)
    # The router's ranking of the queries F is computed on: what mean budgets are measured on.
    routing = Routing(order=gated.order, category=estimate.category, expert_columns=gated.expert_columns)
    problem = Problem(instance=instance, budgets=budgets, objective=objective, routing=routing)
    own_caps = own_caps_after(budget_specs, instance.categories, scenario.own_caps)
    return Session(scenario=scenario, problem=problem, seed=seed, metric=metric, notes=notes, own_caps=own_caps,
                   estimate=estimate, folds=folds, router=router)


def check_choice(name: str, value: object, choices: Iterable[str]) -> None:
    """UsageError unless ``value`` is one of ``choices``: checked before any work is done."""
    choices = list(choices)
    if value not in choices:
        raise UsageError(f"must be one of {', '.join(choices)} (got {value!r})", name)


def _envelope_pays(solver: str | None, n_experts: int, top_k: int) -> bool:
    """Whether the envelope is worth tabulating unasked: a proof needs it, and it is cheap."""
    if solver is not None and solver not in NEEDS_MONOTONE:
        return False
    return (1 << n_experts) <= (_CHEAP_MASKS_K2 if top_k <= 2 else _CHEAP_MASKS_K3)
