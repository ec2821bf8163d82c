"""The options several commands share. Choices are enums that typer checks and completes, and
ranges are typer's own, so a bad choice or an out-of-range number never reaches the core. What
depends on the scenario (budgets, k) is checked by the core, whose errors name the parameter;
the error boundary names the flag instead.

The choice enums list the core's registries (``SOLVERS``, ``METRICS``, ``RULES``, ``ROUTERS``,
``AGGREGATES``, ``ROUTE_ON``) by value rather than importing them, so that a command's help loads no numpy;
a test keeps the two in step.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from moe2_cli.scenario.caps import DEFAULT_MAX_TOKENS, FALLBACK_MAX_TOKENS
from moe2_cli.scenario.shipped import shipped_dir


class Choice(str, Enum):
    """A fixed set of names: typer offers them in help and completion, and a member is the
    plain string the core expects (``str()`` and f-strings give the value)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class OutputFormat(Choice):
    table = "table"
    json = "json"
    csv = "csv"


class SolverName(Choice):
    polyblock = "polyblock"
    brb = "brb"
    exhaustive = "exhaustive"
    exhaustive_all = "exhaustive-all"
    cpsat = "cpsat"
    cpsat_surrogate = "cpsat-surrogate"
    greedy = "greedy"
    best_single = "best-single"
    random = "random"
    all_feasible = "all-feasible"


class Metric(Choice):
    accuracy = "accuracy"
    neg_cross_entropy = "neg-cross-entropy"


class Rule(Choice):
    best = "best"
    parsimonious = "parsimonious"


class RouterName(Choice):
    gate = "gate"
    lookup = "lookup"
    label_lookup = "label-lookup"
    logreg = "logreg"


class Aggregate(Choice):
    top = "top"
    vote = "vote"


class RouteOn(Choice):
    last = "last"
    user = "user"
    all = "all"


DEFAULT_SOLVER = SolverName.brb


def shipped_scenarios() -> list[str]:
    """The names of the scenarios moe2 ships (``default``, ``large``, ...)."""
    return sorted(p.stem for p in shipped_dir("examples").glob("*.yaml"))


def complete_scenario(incomplete: str) -> list[str]:
    """Shell completion for a scenario: the shipped names, then YAML files, that start with what is typed."""
    folder, start = (Path(incomplete), "") if incomplete.endswith("/") else (Path(incomplete).parent,
                                                                             Path(incomplete).name)
    files = sorted(str(p) for p in folder.glob(start + "*") if p.suffix in (".yaml", ".yml"))
    return [name for name in shipped_scenarios() if name.startswith(incomplete)] + files


ScenarioArg = Annotated[
    Path | None,
    typer.Argument(help="Scenario YAML file, or a shipped scenario by name (default, large, llmrouter-edge); the "
                        "shipped default testbed when omitted.", show_default=False,
                   autocompletion=complete_scenario),
]
FormatOpt = Annotated[
    OutputFormat,
    typer.Option("--format", "-f", help="Output format: a table for people, json or csv for scripts."),
]
# CP-SAT takes a 32-bit seed; every other consumer takes any non-negative integer.
MAX_SEED = 2**31 - 1
SeedOpt = Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED,
                                      help="Seed for every random choice (0 to 2147483647); same seed, same output.")]
BudgetOpt = Annotated[
    list[str] | None,
    typer.Option("--budget", "-b", help="A cap, repeatable: energy=J, latency=S, or per category latency.math=S, "
                                        "energy.code=J; 'none' lifts a cap. Defaults come from the scenario."),
]
MaxTokensOpt = Annotated[
    list[str] | None,
    typer.Option("--max-tokens", metavar="CAT=N", help="Most tokens an answer may take, repeatable: math=256 for one "
                                                       "category, 256 for every category without its own cap in the "
                                                       "scenario. Defaults: "
                                                       + ", ".join(f"{c} {n}" for c, n in DEFAULT_MAX_TOKENS.items())
                                                       + f", others {FALLBACK_MAX_TOKENS}."),
]
# Ten names do not fit a help column as one metavar, so the help lists them where they can wrap.
SolverOpt = Annotated[SolverName, typer.Option("--solver", "-s", metavar="NAME", help="The level-1 solver: "
                                               f"{', '.join(s.value for s in SolverName)}.")]
# k's range depends on the scenario (1 to its number of experts), so the core checks it.
TopKOpt = Annotated[int | None, typer.Option("--top-k", "-k", help="Experts the gate sends each query to (default: "
                                                                   "the scenario's top_k).")]
OutcomesOpt = Annotated[Path | None, typer.Option(
    "--outcomes", help="Per-query outcomes (JSONL or CSV) to train the gate on, instead of the scenario's own or "
                       "synthetic ones.")]
MixOpt = Annotated[Path | None, typer.Option(
    "--mix", help="Plan for this traffic mix: a YAML/JSON mapping {categories: {NAME: SHARE}, tags: {NAME: SHARE}} "
                  "or an outcome file to take its queries' shares from. F and its interval are reweighted to it.")]
TimeLimitOpt = Annotated[float | None, typer.Option("--time-limit", help="Seconds; the solver returns its best "
                                                                          "selection and proven gap.")]
MetricOpt = Annotated[Metric, typer.Option("--metric", help="Objective F: accuracy (expected accuracy) or "
                                                            "neg-cross-entropy.")]
TimingOpt = Annotated[bool, typer.Option("--timing/--no-timing", help="Report wall time (json wall_s); --no-timing "
                                                                      "makes output byte-identical.")]
EnvelopeOpt = Annotated[bool | None, typer.Option(
    "--envelope/--no-envelope", help="Solve on the monotone envelope of F (exact for any F; tabulates all 2^N "
                                     "selections, up to 20 experts). Default: only where the solver's proof needs "
                                     "monotone F and the tabulation is cheap.", show_default=False)]
# Each fold trains a gate (about a second on the default scenario), so the count is bounded.
FoldsOpt = Annotated[int, typer.Option("--folds", min=1, max=20, help="Cross-fitting folds for F: each query is "
                                       "scored by a gate trained without it; 1 keeps one plain split.")]
CacheOpt = Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse trained gates from the cache (same bits "
                                                                   "as training); --no-cache retrains.")]
ConfidenceOpt = Annotated[float, typer.Option("--confidence", min=0.5, max=0.999,
                                              help="Level of the bootstrap intervals of F, the gain and the gap.")]
RuleOpt = Annotated[Rule, typer.Option("--rule", help="best: the exact maximiser of F; parsimonious: the least "
                                                      "worst-case energy selection within one standard error of it.")]
RouterOpt = Annotated[RouterName, typer.Option(
    "--router", help="The level-2 model restricted to S that defines F(S), recorded in the output for route and "
                     "serve to run: gate, lookup (per category), label-lookup (per query tags, else per category) "
                     "or logreg (per-LLM logistic regression).")]


CategoryPolicyOpt = Annotated[str | None, typer.Option(
    "--category-policy", help="What a query naming no category gets: infer (from its text, by a classifier fitted "
                              "on the outcomes' categories; needs outcomes with text), require (a refusal), or "
                              "default:NAME (that category). Default: infer where the outcomes have question "
                              "text, else require. The category's source is always reported.", show_default=False)]
RouteOnOpt = Annotated[RouteOn, typer.Option(
    "--route-on", help="What of a conversation is routed and categorised: last (the last user message), user "
                       "(every user turn joined) or all (every message). No multi-turn outcomes ship to compare "
                       "them with 'gating eval', so the default is last.")]
