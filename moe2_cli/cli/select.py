"""`moe2 select` and `moe2 compare`: choose the experts, or run every solver side by side."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.panel import Panel

from moe2_cli import api
from moe2_cli.cli.common import (
    accuracy_target,
    difference_cell,
    handles_errors,
    objective_cell,
    plural,
    progress_bar,
    report,
    solver_status,
)
from moe2_cli.cli.options import (
    DEFAULT_SOLVER,
    BudgetOpt,
    CacheOpt,
    ConfidenceOpt,
    EnvelopeOpt,
    FoldsOpt,
    FormatOpt,
    Metric,
    MetricOpt,
    MixOpt,
    OutcomesOpt,
    OutputFormat,
    RouterName,
    RouterOpt,
    Rule,
    RuleOpt,
    ScenarioArg,
    SeedOpt,
    SolverOpt,
    TimeLimitOpt,
    TimingOpt,
    TopKOpt,
)
from moe2_cli.cli.render import Column, emit
from moe2_cli.errors import EXIT_UNMET
from moe2_cli.gating.confidence import DEFAULT_CONFIDENCE
from moe2_cli.gating.crossfit import DEFAULT_FOLDS
from moe2_cli.report import SelectionRecord, best_feasible_single, unmet_reason
from moe2_cli.solvers import Limits

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
    lines += _mean_lines(payload)
    lines.append("binding: " + (", ".join(payload["binding"]) or "none"))
    lines.append(f"evaluations: {payload['evaluations']}, iterations: {payload['iterations']}"
                 + (f", wall: {payload['wall_s']:.3f} s" if payload["wall_s"] is not None else ""))
    lines += _interval_lines(payload)
    lines += [f"note: {n}" for n in payload["notes"]]
    return "\n".join(lines)


def _mean_lines(payload: dict) -> list[str]:
    """Under mean budgets, the selection's mean cost per category with its interval, next to
    the mean budget."""
    mean = payload.get("mean_cost")
    if not mean:
        return []
    lines = []
    for resource, unit in (("energy_j", "J"), ("latency_s", "s")):
        caps = payload["budgets"].get(resource.replace("_", "_mean_"), {})
        parts = []
        for cat, figure in mean[resource].items():
            cap = caps.get(cat)
            shown = "-" if figure is None else \
                f"{figure['estimate']:.3g}{unit} [{figure['low']:.3g}, {figure['high']:.3g}]"
            parts.append(f"{cat} {shown}" + (f"/{cap:g}{unit}" if cap is not None else ""))
        lines.append(f"{resource.split('_')[0]} (mean per query, interval / mean budget): " + ", ".join(parts))
    return lines + [f"note: {mean['note']}"]


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
    if payload["mix"] is not None:
        lines.append(f"mix ({payload['mix']['source']}, by {payload['mix']['by']}): " + ", ".join(
            f"{name} {100 * share:.1f}%" for name, share in payload["mix"]["shares"].items() if share > 0))
        if (sample := payload["mix"]["sample"]) is not None:
            lines.append(f"F on the {sample['queries']} queries of {payload['mix']['source']} themselves: "
                         f"{cell(sample['low'])} to {cell(sample['high'])} (the interval widened by their own "
                         f"sampling error, SE {diff(sample['se'])})")
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
    solver: SolverOpt = DEFAULT_SOLVER,
    outcomes: OutcomesOpt = None,
    seed: SeedOpt = 0,
    time_limit: TimeLimitOpt = None,
    format: FormatOpt = OutputFormat.table,
    min_accuracy: Annotated[str | None, typer.Option(
        "--min-accuracy", help="Exit 1 unless F reaches this accuracy, a fraction (0.75) or a percentage (75%): "
                               "a CI gate. NaN and values outside 0-1 are refused.")] = None,
    metric: MetricOpt = Metric.accuracy,
    timing: TimingOpt = True,
    envelope: EnvelopeOpt = None,
    folds: FoldsOpt = DEFAULT_FOLDS,
    cache: CacheOpt = True,
    confidence: ConfidenceOpt = DEFAULT_CONFIDENCE,
    rule: RuleOpt = Rule.best,
    router: RouterOpt = RouterName.gate,
    mix: MixOpt = None,
) -> None:
    """Choose the experts that maximise F within the energy and latency budgets.

    Example: moe2 select --budget energy=150 --budget latency=3 --format json
    Example: moe2 select examples/llmrouter-edge.yaml --mix next-month.yaml

    Exit codes: 0 a selection was found; 1 nothing meets the budgets, the time limit came before any
    selection, or F is below --min-accuracy; 2 bad usage or input.
    """
    target = accuracy_target(min_accuracy, metric)
    with progress_bar("cross-fitting the gate") as progress:
        session = api.session_for(scenario, budget, top_k=top_k, seed=seed, limits=Limits(time_s=time_limit),
                                  outcomes=outcomes, metric=metric, envelope=envelope, solver=solver, folds=folds,
                                  router=router, cache=cache, mix=mix, progress=progress)
    with solver_status(f"solving with {solver}") as progress:
        record = api.choose(session, solver, Limits(time_s=time_limit), rule=rule, confidence=confidence,
                            timing=timing, progress=progress)
    result = record.result
    _render_select(format, record)
    if not result.feasible:
        report(unmet_reason(result, session.problem))
        raise typer.Exit(EXIT_UNMET)
    if target is not None and (record.objective is None or record.objective < target):
        report(f"F = {objective_cell(metric)(record.objective or 0.0)} is below --min-accuracy {min_accuracy}")
        raise typer.Exit(EXIT_UNMET)


def _render_select(format: OutputFormat, record: SelectionRecord) -> None:
    """One record per expert: the table's rows, the CSV's rows (with the run's fields), and
    ``experts`` in the JSON."""
    payload = record.to_dict()
    rows = [{**{k: payload[k] for k in _CSV_RUN_KEYS}, **expert} for expert in payload["experts"]]
    if format is OutputFormat.csv:
        emit("csv", payload=payload, rows=rows, columns=[Column(k, k) for k in _CSV_RUN_KEYS + _EXPERT_KEYS])
        return
    columns = [Column("id", "expert", justify="left", no_wrap=True),
               Column("selected", "selected", lambda v: "yes" if v else ""),
               Column("f_alone", "F alone", objective_cell(payload["metric"])),
               Column("why", "why", justify="left")]
    emit(format.value, payload=payload, rows=rows, columns=columns,
         title=f"{payload['scenario']}: selection of {plural(len(payload['selection']), 'expert')}",
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
    metric: MetricOpt = Metric.accuracy,
    timing: TimingOpt = True,
    envelope: EnvelopeOpt = None,
    folds: FoldsOpt = DEFAULT_FOLDS,
    cache: CacheOpt = True,
    confidence: ConfidenceOpt = DEFAULT_CONFIDENCE,
    router: RouterOpt = RouterName.gate,
) -> None:
    """Run every solver on the same problem: F, gap to the best, evaluations and time.

    Example: moe2 compare examples/large.yaml --budget energy=200
    """
    with progress_bar("cross-fitting the gate") as progress:
        session = api.session_for(scenario, budget, top_k=top_k, seed=seed, limits=Limits(time_s=time_limit),
                                  outcomes=outcomes, metric=metric, envelope=envelope, folds=folds, router=router,
                                  cache=cache, progress=progress)
    with solver_status("solving with every solver") as progress:
        records = api.compare(session, Limits(time_s=time_limit), confidence=confidence, timing=timing,
                              progress=progress)
    payloads = [r.to_dict() for r in records]
    columns = [Column("solver", "solver", justify="left"), Column("status", "status", justify="left"),
               Column("objective", "F", objective_cell(metric)),
               Column("gap_to_best", "gap to best", difference_cell(metric)),
               Column("evaluations", "F evaluations"), Column("wall_s", "wall s", lambda v: f"{v:.3f}"),
               Column("selection", "selection", lambda v: plural(len(v), "expert") if v else "")]
    if any(isinstance(r, api.Skipped) for r in records):
        columns.append(Column("reason", "skipped because", justify="left"))
    emit(format.value, payload=payloads, rows=payloads, columns=columns,
         title=f"{session.scenario.name}: every solver on the same budgets")
    if not any(isinstance(r, SelectionRecord) and r.result.feasible for r in records):
        fits = best_feasible_single(session.problem) is not None
        report("no solver found a selection within its limits" if fits else
               "no selection meets the budgets: no single expert fits")
        raise typer.Exit(EXIT_UNMET)
