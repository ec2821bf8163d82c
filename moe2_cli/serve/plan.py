"""What ``route`` and ``serve`` run: the scenario, the selection S and its k, the router S was
planned with (fitted on every query), the classifier that infers a category a query does not
name (fitted on every query's text, when the category policy infers), and the budgets each
request is checked against.

S and its router come from a saved ``moe2 select --format json`` file, or S is solved from the
budgets for a named router. Nothing here knows a concrete router: the registry builds it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from moe2_cli import api
from moe2_cli.errors import Diagnostic, InfeasibleError, InputError, UsageError
from moe2_cli.gating.category import CategoryClassifier
from moe2_cli.gating.pipeline import deployed_router
from moe2_cli.gating.registry import DEFAULT_ROUTER, ROUTERS
from moe2_cli.gating.router import Router
from moe2_cli.jsontext import load_record
from moe2_cli.problem import Budgets, mask_of
from moe2_cli.progress import ProgressCallback, ProgressEvent, no_progress
from moe2_cli.report import SELECT_SCHEMA
from moe2_cli.scenario.budgets import apply_budget_specs
from moe2_cli.scenario.scenario import Scenario, load_scenario
from moe2_cli.serve.categories import CategoryPolicy, infer_missing
from moe2_cli.serve.queries import Query
from moe2_cli.serve.routing import ROUTE_BATCH, Route, check_readable, route_queries
from moe2_cli.solvers import DEFAULT_SOLVER


@dataclass(frozen=True, eq=False)
class Choice:
    """The selection S to run, its k, the router it was planned with, and the budgets requests
    are checked against."""

    scenario: Scenario
    mask: int
    k: int
    budgets: Budgets
    router_name: str
    seed: int  # the router is fitted with the seed the plan was made with

    @property
    def selection(self) -> list[str]:
        return [e for i, e in enumerate(self.scenario.instance.expert_ids) if self.mask >> i & 1]


@dataclass(frozen=True, eq=False)
class Plan(Choice):
    """A choice with its router fitted: what routes inside S; ``classifier`` (None when
    categories are not inferred) gives a query without a category the likeliest one."""

    router: Router
    classifier: CategoryClassifier | None = None
    category_policy: CategoryPolicy | None = None  # what a query naming no category gets

    def route(self, queries: Sequence[Query], source: str = "queries",
              progress: ProgressCallback | None = None) -> list[Route]:
        """The routing core on ``queries`` with this plan's router, S and k, once the queries
        that name no category have one inferred (each route carries its query so completed)."""
        return [r for batch in self.route_batches(queries, source, progress) for r in batch]

    def route_batches(self, queries: Sequence[Query], source: str = "queries",
                      progress: ProgressCallback | None = None) -> Iterator[list[Route]]:
        """:meth:`route`, :data:`ROUTE_BATCH` queries at a time, so that a large file is routed
        and written in bounded memory; ``progress`` gets a ``routing`` event per batch."""
        # Every query is checked before the first batch: all problems at once, none after output.
        check_readable(self.router, [q for q in queries if q.category is not None], source)
        if self.classifier is None:
            infer_missing(queries, None, source)  # refuses every query that names no category
        report = progress or no_progress
        for start in range(0, len(queries), ROUTE_BATCH):
            known = infer_missing(queries[start:start + ROUTE_BATCH], self.classifier, source)
            yield route_queries(self.router, self.scenario.instance, self.mask, self.k, known, source)
            report(ProgressEvent("routing", min(start + ROUTE_BATCH, len(queries)), len(queries)))

    def warm(self) -> None:
        """One routing call per category: it loads the router's lazy imports (scikit-learn,
        scipy, the featuriser), which the first request would otherwise wait for."""
        categories = self.scenario.instance.categories
        self.route([Query(id=f"warm-up-{c}", category=c, text="warm up") for c in categories], source="warm-up")


def choose(scenario_path: Path | None, *, budget_specs: list[str] | None = None, selection: Path | None = None,
           seed: int = 0, outcomes: Path | None = None, router: str | None = None) -> Choice:
    """Load the scenario and take S, k and the router from ``selection``, or solve the budgets
    for S with ``router`` (default: the gate). A ``router`` that contradicts the selection
    file's is a usage error."""
    scenario = load_scenario(scenario_path)
    budgets = apply_budget_specs(scenario.budgets, budget_specs)
    if selection is None:
        name = router or DEFAULT_ROUTER
        if name not in ROUTERS:
            raise UsageError(f"must be one of {', '.join(ROUTERS)} (got {name!r})", "router")
        mask, k = solve_selection(scenario_path, budget_specs, seed=seed, outcomes=outcomes, router=name)
        return Choice(scenario=scenario, mask=mask, k=k, budgets=budgets, router_name=name, seed=seed)
    read = read_selection(selection, scenario)
    if router is not None and router != read.router:
        raise UsageError(f"{router} contradicts {selection}, planned with router {read.router!r}", "router")
    return Choice(scenario=scenario, mask=read.mask, k=read.k, budgets=budgets, router_name=read.router,
                  seed=seed if read.seed is None else read.seed)


def with_router(choice: Choice, *, outcomes: Path | None = None, category_policy: CategoryPolicy | None = None,
                strict: bool = True) -> Plan:
    """The choice with its router fitted on every query of the scenario's outcomes (cached),
    with the seed the plan was made with. A policy that infers categories fits the classifier
    too; outcomes without question text are then a UsageError, or, unless ``strict`` (the policy
    was not asked for by name), turn the policy into ``require``: never a silent guess."""
    infer = category_policy is not None and category_policy.kind == "infer"
    fitted, classifier = deployed_router(choice.scenario, choice.router_name, top_k=choice.k, seed=choice.seed,
                                         outcomes_path=outcomes, categories=infer if strict or not infer else None)
    if infer and classifier is None:
        category_policy = CategoryPolicy("require")
    return Plan(scenario=choice.scenario, mask=choice.mask, k=choice.k, budgets=choice.budgets,
                router_name=choice.router_name, seed=choice.seed, router=fitted, classifier=classifier,
                category_policy=category_policy)


def make_plan(scenario_path: Path | None, *, budget_specs: list[str] | None = None, selection: Path | None = None,
              seed: int = 0, outcomes: Path | None = None, router: str | None = None,
              category_policy: CategoryPolicy | None = None) -> Plan:
    """:func:`choose`, then the router (and the classifier, for a policy that infers)."""
    choice = choose(scenario_path, budget_specs=budget_specs, selection=selection, seed=seed, outcomes=outcomes,
                    router=router)
    return with_router(choice, outcomes=outcomes, category_policy=category_policy)


def solve_selection(scenario_path: Path | None, budget_specs: list[str] | None, *, seed: int = 0,
                    outcomes: Path | None = None, router: str = DEFAULT_ROUTER) -> tuple[int, int]:
    """S by the default solver under the budgets, F(S) that of ``router``; exit 1 when nothing fits."""
    session = api.session_for(scenario_path, budget_specs, seed=seed, outcomes=outcomes,
                              solver=DEFAULT_SOLVER, router=router)
    result = api.solve(session)
    if not result.feasible:
        raise InfeasibleError("no selection meets the budgets (no single expert fits)")
    return int(result.mask), session.problem.instance.top_k


class Selected(NamedTuple):
    """What a saved selection file says: S as a mask, its k, and the router and seed it was
    planned with (``seed`` None when the file has none)."""

    mask: int
    k: int
    router: str
    seed: int | None = None


def read_selection(path: Path, scenario: Scenario) -> Selected:
    """S, k and the router from a ``moe2 select --format json`` file written for this scenario
    (a file without ``router`` was planned with the gate)."""
    shown = str(path)
    data = selection_record(path)
    return Selected(_mask(data, scenario, shown), _top_k(data, scenario.instance.top_k, shown), _router(data, shown),
                    _seed(data, shown))


def selection_record(path: Path) -> dict:
    """The record of a ``moe2 select --format json`` file, checked as far as it can be without
    its scenario: the schema, the selection (a non-empty list of expert ids, unless nothing met
    the budgets), top_k, the router and the seed."""
    shown = str(path)
    data = load_record(path, "the selection")
    if not isinstance(data, dict) or data.get("schema") != SELECT_SCHEMA:
        raise InputError(Diagnostic(shown, None, None, f"not the JSON record of moe2 select "
                                                       f"(schema {SELECT_SCHEMA} expected)"))
    chosen = data.get("selection")
    listed = isinstance(chosen, list) and bool(chosen) and all(isinstance(e, str) for e in chosen)
    if not listed and not (data.get("status") == "infeasible" and chosen in ([], None)):
        raise InputError(Diagnostic(shown, None, None, f"selection must be a non-empty list of expert ids "
                                                       f"(got {chosen!r})"))
    _top_k(data, 1, shown)
    _router(data, shown)
    _seed(data, shown)
    return data


def _mask(data: dict, scenario: Scenario, shown: str) -> int:
    experts = scenario.instance.expert_ids
    if data.get("scenario") != scenario.name:
        raise InputError(Diagnostic(shown, None, None, f"the selection is for scenario {data.get('scenario')!r}, "
                                                       f"not {scenario.name!r}"))
    chosen = data.get("selection")
    if not isinstance(chosen, list) or not chosen:
        if data.get("status") == "infeasible":
            raise InfeasibleError(f"the selection in {shown} is empty: nothing met its budgets")
        raise InputError(Diagnostic(shown, None, None, f"selection must be a non-empty list of experts "
                                                       f"(got {chosen!r})"))
    unknown = [e for e in chosen if e not in experts]
    if unknown:
        raise InputError(Diagnostic(shown, None, None, f"selection names {unknown[0]!r}, not an expert of "
                                                       f"{scenario.name!r}"))
    return mask_of(experts.index(e) for e in chosen)


def _top_k(data: dict, default: int, shown: str) -> int:
    k = data.get("top_k", default)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InputError(Diagnostic(shown, None, None, f"top_k must be a positive integer (got {k!r})"))
    return k


def _router(data: dict, shown: str) -> str:
    name = data.get("router", DEFAULT_ROUTER)
    if not isinstance(name, str) or name not in ROUTERS:  # a list or an object cannot be looked up
        raise InputError(Diagnostic(shown, None, None, f"router must be one of {', '.join(ROUTERS)} "
                                                       f"(got {name!r})"))
    return name


def _seed(data: dict, shown: str) -> int | None:
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31):
        raise InputError(Diagnostic(shown, None, None, f"seed must be an integer in [0, 2147483647] (got {seed!r})"))
    return seed
