"""`moe2 frontier`: the accuracy-energy-latency trade-off, swept on a grid or exact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from moe2_cli import api
from moe2_cli.cli.common import (
    FormatOpt,
    OutputFormat,
    SeedOpt,
    handles_errors,
    objective_cell,
    progress_bar,
    report,
)
from moe2_cli.cli.inspect import ScenarioArg
from moe2_cli.cli.render import Column, emit
from moe2_cli.cli.select import (
    BudgetOpt,
    CacheOpt,
    ConfidenceOpt,
    EnvelopeOpt,
    FoldsOpt,
    MetricOpt,
    OutcomesOpt,
    TimeLimitOpt,
    TimingOpt,
    TopKOpt,
)
from moe2_cli.errors import EXIT_UNMET, UsageError
from moe2_cli.fileio import check_writable
from moe2_cli.gating.confidence import DEFAULT_CONFIDENCE, Bootstrap
from moe2_cli.gating.crossfit import DEFAULT_FOLDS
from moe2_cli.pareto import FrontierPoint
from moe2_cli.problem import Problem
from moe2_cli.report import result_payload
from moe2_cli.session import Session, open_session
from moe2_cli.solvers import DEFAULT_SOLVER, SOLVERS, Limits

FRONTIER_SCHEMA = "moe2.frontier/1"
_BAR_WIDTH = 40


def _point_payload(point: FrontierPoint, session: Session, timing: bool, bootstrap: Bootstrap | None = None) -> dict:
    problem = Problem(instance=session.problem.instance, budgets=point.budgets, objective=session.problem.objective)
    payload = result_payload(point.result, problem, scenario=session.scenario.name,
                             seed=session.seed, metric=session.metric, timing=timing, notes=session.notes)
    payload["caps"] = point.caps
    payload["pareto"] = point.pareto
    if bootstrap is not None:
        payload.update(api.intervals(session, bootstrap, point.result, problem))
    return payload


def _worst(per_category: dict) -> float | None:
    """The worst case over categories; unknown (None) without a selection."""
    known = [v for v in per_category.values() if v is not None]
    return max(known) if known else None


def _chart(payloads: list[dict]) -> Text:
    """F against worst-case energy, one bar per Pareto point."""
    text = Text("F against worst-case energy (Pareto points)\n")
    front = [p for p in payloads if p["pareto"]]
    if not front:
        return text
    top = max(p["objective"] for p in front)
    cell = objective_cell(front[0]["metric"])
    for p in sorted(front, key=lambda p: max(p["energy_j"].values())):
        energy = max(p["energy_j"].values())
        bar = "█" * max(1, round(_BAR_WIDTH * p["objective"] / top))
        text.append(f"{energy:9.1f} J  {bar} {cell(p['objective'])}\n")
    return text


@handles_errors
def frontier(
    scenario: ScenarioArg = None,
    sweep: Annotated[list[str] | None, typer.Option(
        "--sweep", help="A swept cap LO:HI:STEP, e.g. energy=50:400:10 or latency.math=1:5:0.5; give two for "
                        "a grid.")] = None,
    budget: BudgetOpt = None,
    exact: Annotated[bool, typer.Option("--exact", help="Every corner of the F-energy trade-off, without a "
                                                         "grid (ε-constraint, exact solver).")] = False,
    exact_3d: Annotated[bool, typer.Option("--exact-3d", help="Every selection on the F-energy-latency front, "
                                                               "by enumeration (up to 16 experts).")] = False,
    solver: Annotated[str, typer.Option("--solver", "-s", help=f"One of: {', '.join(SOLVERS)}.")] = DEFAULT_SOLVER,
    top_k: TopKOpt = None,
    outcomes: OutcomesOpt = None,
    seed: SeedOpt = 0,
    time_limit: TimeLimitOpt = None,
    format: FormatOpt = OutputFormat.table,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a figure (.png or .svg); needs "
                                                                "matplotlib (pip install 'moe2\\[plot]').")] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Also solve every point with the baselines "
                                                            f"({', '.join(api.BASELINES)}) and plot them.")] = False,
    metric: MetricOpt = "accuracy",
    timing: TimingOpt = True,
    envelope: EnvelopeOpt = None,
    folds: FoldsOpt = DEFAULT_FOLDS,
    cache: CacheOpt = True,
    confidence: ConfidenceOpt = DEFAULT_CONFIDENCE,
) -> None:
    """Sweep budgets and mark the Pareto-optimal points (F up, energy down, latency down).

    Example: moe2 frontier --sweep energy=50:400:10 --budget latency=8 --format csv
    """
    api.check_frontier_kind(sweep or [], exact, exact_3d)
    if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
        raise UsageError(f"--plot must end in .png or .svg (got {plot.name!r})")
    if plot is not None:
        check_writable(plot, "--plot")
    session = open_session(scenario, budget, top_k=top_k, seed=seed, outcomes=outcomes, metric=metric,
                           envelope=envelope, time_limit=time_limit, folds=folds, use_cache=cache, solver=solver)
    limits = Limits(time_s=time_limit)
    with progress_bar("exact frontier" if exact else "frontier", total=None) as progress:
        points = api.trace_frontier(session, solver, sweeps=sweep or [], exact=exact, exact_3d=exact_3d,
                                    limits=limits, progress=progress)
    bootstrap = api.bootstrap_for(session, confidence)
    payloads = [_point_payload(p, session, timing, bootstrap) for p in points]
    baselines = {}
    if compare:
        with progress_bar("baselines", total=None) as progress:
            traced = api.baseline_frontiers(session, [] if exact or exact_3d else sweep or [], limits,
                                            progress=progress)
        baselines = {name: [_point_payload(p, session, False) for p in pts] for name, pts in traced.items()}
    if plot is not None:
        from moe2_cli.cli.plotting import plot_frontier

        plot_frontier(plot, payloads, baselines, session)
    _render(format, payloads, session)
    if not any(p["selection"] for p in payloads):
        report(f"no point of the frontier has a selection ({len(payloads)} budgets tried)")
        raise typer.Exit(EXIT_UNMET)


def _render(format: OutputFormat, payloads: list[dict], session) -> None:
    cats = session.problem.instance.categories
    rows = []
    for p in payloads:
        row = {**{f"cap.{k}": v for k, v in p["caps"].items()}, "objective": p["objective"],
               "ci": p["objective_ci"],
               "energy_j": _worst(p["energy_j"]), "status": p["status"], "selection": p["selection"],
               "evaluations": p["evaluations"], "pareto": p["pareto"]}
        row.update({f"latency_s.{c}": p["latency_s"][c] for c in cats})
        rows.append(row)
    cap_keys = list(dict.fromkeys(k for r in rows for k in r if k.startswith("cap.")))
    columns = [Column(k, k.removeprefix("cap.") + " cap") for k in cap_keys] + [
        Column("objective", "F", objective_cell(session.metric)),
        Column("ci", "F interval", lambda v: f"{objective_cell(session.metric)(v['low'])} to "
                                             f"{objective_cell(session.metric)(v['high'])}"),
        Column("energy_j", "energy J", lambda v: f"{v:.1f}"),
        *[Column(f"latency_s.{c}", f"{c} s", lambda v: f"{v:.2f}") for c in cats],
        Column("status", "status", no_wrap=True), Column("evaluations", "evals"),
        Column("pareto", "pareto", lambda v: "*" if v else ""),
        Column("selection", "selection", "\n".join, justify="left", no_wrap=True)]
    payload = {"schema": FRONTIER_SCHEMA, "scenario": session.scenario.name, "points": payloads}
    emit(format.value, payload=payload, rows=rows, columns=columns,
         title=f"{session.scenario.name}: frontier ({sum(p['pareto'] for p in payloads)} Pareto points)",
         extra=[_chart(payloads)])
