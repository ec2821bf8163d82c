"""`moe2 select` and `moe2 compare`: choose the experts, or run every solver side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel

from moe2_cli import api
from moe2_cli.cli.common import (
    FormatOpt,
    OutputFormat,
    SeedOpt,
    accuracy_target,
    difference_cell,
    handles_errors,
    objective_cell,
    progress_bar,
    report,
    solver_status,
)
from moe2_cli.cli.inspect import ScenarioArg
from moe2_cli.cli.render import Column, emit
from moe2_cli.errors import EXIT_UNMET, UsageError
from moe2_cli.gating.confidence import DEFAULT_CONFIDENCE
from moe2_cli.gating.crossfit import DEFAULT_FOLDS
from moe2_cli.report import best_feasible_single, explain_experts, result_payload, unmet_reason
from moe2_cli.rules import DEFAULT_RULE, RULES, apply_rule, significance_note
from moe2_cli.session import open_session
from moe2_cli.solvers import DEFAULT_SOLVER, SOLVERS, Limits, SolveResult, get_solver

BudgetOpt = Annotated[
    list[str] | None,
    typer.Option("--budget", "-b", help="A cap, repeatable: energy=J, latency=S, or per category latency.math=S, "
                                        "energy.code=J; 'none' lifts a cap. Defaults come from the scenario."),
]
TopKOpt = Annotated[int | None, typer.Option("--top-k", "-k", help="Experts the gate sends each query to "
                                                                        "(default: the scenario's top_k).")]
OutcomesOpt = Annotated[Path | None, typer.Option(
    "--outcomes", help="Per-query outcomes (JSONL or CSV) to train the gate on, instead of the scenario's own "
                       "or synthetic ones.")]
TimeLimitOpt = Annotated[float | None, typer.Option("--time-limit", help="Seconds; the solver returns its "
                                                                             "best selection and proven gap.")]
MetricOpt = Annotated[str, typer.Option("--metric", help="Objective F: accuracy (expected accuracy) or "
                                                         "neg-cross-entropy.")]
TimingOpt = Annotated[bool, typer.Option("--timing/--no-timing", help="Report wall time (json wall_s); "
                                                                      "--no-timing makes output byte-identical.")]
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
RuleOpt = Annotated[str, typer.Option("--rule", help="best: the exact maximiser of F; parsimonious: the least "
                                                     "worst-case energy selection within one standard error of it.")]
RouterOpt = Annotated[str, typer.Option(
    "--router", help="The level-2 model restricted to S that defines F(S), recorded in the output for route and "
                     "serve to run: gate, lookup (per category), label-lookup (per query tags, else per category) "
                     "or logreg (per-LLM logistic regression).")]
# The run-level fields every per-expert CSV row repeats, so one row stands on its own.
_CSV_RUN_KEYS = ("scenario", "solver", "status", "objective")
_EXPERT_KEYS = ("id", "selected", "f_alone", "why")


def _summary(payload: dict) -> str:
    refs, cell = payload["references"], objective_cell(payload["metric"])

    def fmt(value):
        return "-" if value is None else cell(value)

    lines = [f"status: {payload['status']} ({payload['solver']}); F = {fmt(payload['objective'])}"
             f" vs best single expert that fits {fmt(refs.get('best_single_feasible'))}"
             f", oracle of the selection {fmt(refs.get('oracle'))}"]
    budgets = payload["budgets"]
    for resource, unit in (("energy_j", "J"), ("latency_s", "s")):
        parts = []
        for cat, used in payload[resource].items():
            cap = budgets[resource].get(cat)
            shown = "-" if used is None else f"{used:.3g}{unit}"
            parts.append(f"{cat} {shown}" + (f"/{cap:g}{unit}" if cap is not None else ""))
        lines.append(f"{resource.split('_')[0]} (worst case / budget): " + ", ".join(parts))
    lines.append("binding: " + (", ".join(payload["binding"]) or "none"))
    lines.append(f"evaluations: {payload['evaluations']}, iterations: {payload['iterations']}"
                 + (f", wall: {payload['wall_s']:.3f} s" if payload["wall_s"] is not None else ""))
    lines += _interval_lines(payload)
    lines += [f"note: {n}" for n in payload["notes"]]
    return "\n".join(lines)


def _interval_lines(payload: dict) -> list[str]:
    """The summary's lines on the intervals (empty when the selection is empty)."""
    if payload.get("objective_ci") is None:
        return []
    metric = payload["metric"]
    cell, diff = objective_cell(metric), difference_cell(metric)

    def signed(value: float) -> str:
        return ("+" if value >= 0 else "-") + diff(abs(value))

    level, ci = f"at level {payload['confidence']:g}", payload["objective_ci"]
    lines = [f"F interval {level}: {cell(ci['low'])} to {cell(ci['high'])} (SE {diff(ci['se'])}; "
             f"{payload['folds']}-fold cross-fitted, rule {payload['rule']}, router {payload['router']})"]
    gain = payload["gain_over_best_single"]
    if gain is not None:
        lines.append(f"gain over the best single expert that fits ({gain['expert']}): {signed(gain['estimate'])}, "
                     f"interval {signed(gain['low'])} to {signed(gain['high'])}")
    runner = payload["runner_up"]
    if runner is not None:
        gap = runner["gap"]
        lines.append(f"runner-up {{{', '.join(runner['selection'])}}}: F {cell(runner['objective'])}, gap "
                     f"{signed(gap['estimate'])}, interval {signed(gap['low'])} to {signed(gap['high'])}")
    return lines


@handles_errors
def select(
    scenario: ScenarioArg = None,
    budget: BudgetOpt = None,
    top_k: TopKOpt = None,
    solver: Annotated[str, typer.Option("--solver", "-s", help=f"One of: {', '.join(SOLVERS)}.")] = DEFAULT_SOLVER,
    outcomes: OutcomesOpt = None,
    seed: SeedOpt = 0,
    time_limit: TimeLimitOpt = None,
    format: FormatOpt = OutputFormat.table,
    min_accuracy: Annotated[str | None, typer.Option(
        "--min-accuracy", help="Exit 1 unless F reaches this accuracy, a fraction (0.75) or a percentage (75%): "
                               "a CI gate. NaN and values outside 0-1 are refused.")] = None,
    metric: MetricOpt = "accuracy",
    timing: TimingOpt = True,
    envelope: EnvelopeOpt = None,
    folds: FoldsOpt = DEFAULT_FOLDS,
    cache: CacheOpt = True,
    confidence: ConfidenceOpt = DEFAULT_CONFIDENCE,
    rule: RuleOpt = DEFAULT_RULE,
    router: RouterOpt = "gate",
) -> None:
    """Choose the experts that maximise F within the energy and latency budgets.

    Example: moe2 select --budget energy=150 --budget latency=3 --format json

    Exit codes: 0 a selection was found; 1 nothing meets the budgets, the time limit came before any
    selection, or F is below --min-accuracy; 2 bad usage or input.
    """
    if rule not in RULES:
        raise UsageError(f"--rule must be one of {', '.join(RULES)} (got {rule!r})")
    target = accuracy_target(min_accuracy, metric)
    with progress_bar("cross-fitting the gate") as progress:
        session = open_session(scenario, budget, top_k=top_k, seed=seed, outcomes=outcomes, metric=metric,
                               envelope=envelope, time_limit=time_limit, folds=folds, use_cache=cache,
                               router=router, progress=progress, solver=solver)
    with solver_status(f"solving with {solver}") as progress:
        result = api.solve(session, solver, Limits(time_s=time_limit), progress=progress)
    bootstrap = api.bootstrap_for(session, confidence)
    result = apply_rule(session.problem, result, rule, bootstrap, get_solver(solver, seed=seed))
    payload = result_payload(result, session.problem, scenario=session.scenario.name, seed=seed, metric=metric,
                             timing=timing, notes=session.notes)
    payload.update({"folds": folds, "rule": rule, "router": router, **api.intervals(session, bootstrap, result)})
    if note := significance_note(payload):
        payload["notes"].append(note)
    payload["experts"] = explain_experts(session.problem, result.mask if result.feasible else 0)
    _render_select(format, payload)
    if not result.feasible:
        report(unmet_reason(result, session.problem))
        raise typer.Exit(EXIT_UNMET)
    if target is not None and (payload["objective"] is None or payload["objective"] < target):
        report(f"F = {objective_cell(metric)(payload['objective'] or 0.0)} is below --min-accuracy {min_accuracy}")
        raise typer.Exit(EXIT_UNMET)


def _render_select(format: OutputFormat, payload: dict) -> None:
    """One record per expert: the table's rows, the CSV's rows (with the run's fields), and
    ``experts`` in the JSON."""
    rows = [{**{k: payload[k] for k in _CSV_RUN_KEYS}, **expert} for expert in payload["experts"]]
    if format is OutputFormat.csv:
        emit("csv", payload=payload, rows=rows, columns=[Column(k, k) for k in _CSV_RUN_KEYS + _EXPERT_KEYS])
        return
    columns = [Column("id", "expert", justify="left", no_wrap=True),
               Column("selected", "selected", lambda v: "yes" if v else ""),
               Column("f_alone", "F alone", objective_cell(payload["metric"])),
               Column("why", "why", justify="left")]
    emit(format.value, payload=payload, rows=rows, columns=columns,
         title=f"{payload['scenario']}: selection of {len(payload['selection'])} experts",
         extra=[Panel(_summary(payload), title="result", expand=False)])


@handles_errors
def compare(
    scenario: ScenarioArg = None,
    budget: BudgetOpt = None,
    top_k: TopKOpt = None,
    outcomes: OutcomesOpt = None,
    seed: SeedOpt = 0,
    time_limit: TimeLimitOpt = 60.0,
    format: FormatOpt = OutputFormat.table,
    metric: MetricOpt = "accuracy",
    timing: TimingOpt = True,
    envelope: EnvelopeOpt = None,
) -> None:
    """Run every solver on the same problem: F, gap to the best, evaluations and time.

    Example: moe2 compare examples/large.yaml --budget energy=200
    """
    session = open_session(scenario, budget, top_k=top_k, seed=seed, outcomes=outcomes, metric=metric,
                           envelope=envelope, time_limit=time_limit)
    with solver_status("solving with every solver") as progress:
        results = api.compare(session, Limits(time_s=time_limit), progress=progress)
    payloads: list[dict[str, Any]] = [
        {"solver": r.solver, "status": "skipped", "reason": r.reason} if isinstance(r, api.Skipped) else
        result_payload(r, session.problem, scenario=session.scenario.name, seed=seed, metric=metric, timing=timing,
                       notes=session.notes) for r in results]
    best = max((p["objective"] for p in payloads if p.get("objective") is not None), default=None)
    for p in payloads:
        p["gap_to_best"] = None if best is None or p.get("objective") is None else best - p["objective"]
    columns = [Column("solver", "solver", justify="left"), Column("status", "status", justify="left"),
               Column("objective", "F", objective_cell(metric)),
               Column("gap_to_best", "gap to best", difference_cell(metric)),
               Column("evaluations", "F evaluations"), Column("wall_s", "wall s", lambda v: f"{v:.3f}"),
               Column("selection", "selection", lambda v: f"{len(v)} experts" if v else "")]
    if any(isinstance(r, api.Skipped) for r in results):
        columns.append(Column("reason", "skipped because", justify="left"))
    emit(format.value, payload=payloads, rows=payloads, columns=columns,
         title=f"{session.scenario.name}: every solver on the same budgets")
    if not any(isinstance(r, SolveResult) and r.feasible for r in results):
        fits = best_feasible_single(session.problem) is not None
        report("no solver found a selection within its limits" if fits else
               "no selection meets the budgets: no single expert fits")
        raise typer.Exit(EXIT_UNMET)
