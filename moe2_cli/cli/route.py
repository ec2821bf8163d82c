"""`moe2 route`: where the router restricted to the selection sends each query of a file."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from moe2_cli.cli.common import handles_errors, plural, progress_bar
from moe2_cli.cli.options import BudgetOpt, CategoryPolicyOpt, OutcomesOpt, RouteOn, RouteOnOpt, ScenarioArg, SeedOpt
from moe2_cli.cli.render import Column, emit
from moe2_cli.scenario.scenario import load_scenario
from moe2_cli.serve.categories import parse_policy
from moe2_cli.serve.plan import make_plan
from moe2_cli.serve.queries import read_queries
from moe2_cli.serve.routing import Route

SelectionOpt = Annotated[Path | None, typer.Option(
    "--selection", help="A saved 'moe2 select --format json' output: route to its experts with the router it was "
                        "planned with, instead of solving the budgets.")]
PlanRouterOpt = Annotated[str | None, typer.Option(
    "--router", help="Without --selection: the router to solve the budgets for and to route with (gate, lookup, "
                     "label-lookup or logreg; default gate). A selection file names its own.", show_default=False)]


class RouteFormat(str, Enum):
    jsonl = "jsonl"
    csv = "csv"
    table = "table"


def route_record(route: Route) -> dict:
    """One query's routing: its category and where that came from (with the classifier's
    probability when inferred), the top-k experts with their weights, then the rest of S in order."""
    q = route.query
    probability = None if q.category_probability is None else round(q.category_probability, 4)
    return {"id": q.id, "category": q.category, "category_source": q.category_source,
            "category_probability": probability, "tags": list(q.tags),
            "experts": [{"expert": p.expert, "weight": p.weight} for p in route.chosen],
            "fallbacks": [p.expert for p in route.fallbacks]}


@handles_errors
def route(
    queries: Annotated[Path, typer.Option("--queries", "-q", help="JSONL: one query a line with id, text (or "
                                                                   "messages, a chat conversation), optional "
                                                                   "category and optional tags; - for stdin.")],
    scenario: ScenarioArg = None,
    budget: BudgetOpt = None,
    selection: SelectionOpt = None,
    router: PlanRouterOpt = None,
    outcomes: OutcomesOpt = None,
    seed: SeedOpt = 0,
    format: Annotated[RouteFormat, typer.Option("--format", "-f", help="jsonl, csv or table.")] = RouteFormat.jsonl,
    category_policy: CategoryPolicyOpt = None,
    route_on: RouteOnOpt = RouteOn.last,
) -> None:
    """Print the experts the router restricted to the selection calls for each query, with weights.

    Example: moe2 route --queries queries.jsonl --selection select.json --format table
    """
    # The query file is checked before the router is fitted: a typo costs no waiting.
    categories = load_scenario(scenario).instance.categories
    policy = parse_policy(category_policy or "infer", categories)
    asked = read_queries(queries, categories, policy, route_on.value)
    # The classifier is fitted only when some query leaves its category to be inferred.
    needs = policy if any(q.category is None for q in asked) else None
    plan = make_plan(scenario, budget_specs=budget, selection=selection, seed=seed, outcomes=outcomes, router=router,
                     category_policy=needs)
    with progress_bar("routing", len(asked)) as progress:
        batches = plan.route_batches(asked, source=str(queries), progress=progress)
        if format is RouteFormat.jsonl:  # written batch by batch: a large file in bounded memory
            for batch in batches:
                sys.stdout.writelines(json.dumps(route_record(r)) + "\n" for r in batch)
            return
        records = [route_record(r) for batch in batches for r in batch]
    rows = [{"id": r["id"], "category": r["category"], "source": r["category_source"],
             "experts": [e["expert"] for e in r["experts"]],
             "weights": [e["weight"] for e in r["experts"]], "fallbacks": r["fallbacks"], "tags": r["tags"]}
            for r in records]
    columns = [Column("id", "id", justify="left"), Column("category", "category", justify="left"),
               Column("source", "source", justify="left"),
               Column("experts", "experts", justify="left"),
               Column("weights", "weights", lambda ws: ", ".join(f"{w:.3f}" for w in ws)),
               Column("fallbacks", "fallbacks", justify="left"), Column("tags", "tags", justify="left")]
    emit(format.value, payload=records, rows=rows, columns=columns,
         title=f"{plan.scenario.name}: top-{plan.k} {plan.router_name} routing inside "
               f"{plural(len(plan.selection), 'selected expert')}")
