"""`moe2 frontier`: the accuracy-energy-latency trade-off, swept on a grid or exact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from moe2_cli import api
from moe2_cli.cli.common import handles_errors, objective_cell, plural, progress_bar, report
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
    OutcomesOpt,
    OutputFormat,
    ScenarioArg,
    SeedOpt,
    SolverOpt,
    TimeLimitOpt,
    TimingOpt,
    TopKOpt,
)
from moe2_cli.cli.render import Column, emit
from moe2_cli.errors import EXIT_UNMET, UsageError
from moe2_cli.fileio import check_writable
from moe2_cli.gating.confidence import DEFAULT_CONFIDENCE
from moe2_cli.gating.crossfit import DEFAULT_FOLDS
from moe2_cli.session import Session
from moe2_cli.solvers import Limits

FRONTIER_SCHEMA = "moe2.frontier/1"
_BAR_WIDTH = 40


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


def _check_kind(sweep: list[str], exact: bool, exact_3d: bool, plot: Path | None) -> None:
    """The frontier asked for, in the command line's words, before any work is done."""
    if sum((bool(sweep), exact, exact_3d)) != 1:
        raise UsageError("give one of --sweep energy=LO:HI:STEP (optionally with a latency sweep), --exact "
                         "or --exact-3d")
    api.check_frontier_kind(sweep, exact, exact_3d)
    if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
        raise UsageError(f"must end in .png or .svg (got {plot.name!r})", "plot")
    if plot is not None:
        check_writable(plot, "plot")


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
    solver: SolverOpt = DEFAULT_SOLVER,
    top_k: TopKOpt = None,
    outcomes: OutcomesOpt = None,
    seed: SeedOpt = 0,
    time_limit: TimeLimitOpt = None,
    format: FormatOpt = OutputFormat.table,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a figure (.png or .svg); needs "
                                                                "matplotlib (pip install 'moe2\\[plot]').")] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Also solve every point with the baselines "
                                                            f"({', '.join(api.BASELINES)}) and plot them.")] = False,
    metric: MetricOpt = Metric.accuracy,
    timing: TimingOpt = True,
    envelope: EnvelopeOpt = None,
    folds: FoldsOpt = DEFAULT_FOLDS,
    cache: CacheOpt = True,
    confidence: ConfidenceOpt = DEFAULT_CONFIDENCE,
) -> None:
    """Sweep budgets and mark the Pareto-optimal points (F up, energy down, latency down).

    Example: moe2 frontier --sweep energy=50:400:10 --budget latency=8 --format csv
    """
    sweeps = sweep or []
    _check_kind(sweeps, exact, exact_3d, plot)
    limits = Limits(time_s=time_limit)
    with progress_bar("cross-fitting the gate") as progress:
        session = api.session_for(scenario, budget, top_k=top_k, seed=seed, limits=limits, outcomes=outcomes,
                                  metric=metric, envelope=api.envelope_for_sweeps(sweeps, envelope), solver=solver,
                                  folds=folds, cache=cache, progress=progress)
    with progress_bar("exact frontier" if exact else "frontier", total=None) as progress:
        points = api.trace_frontier(session, solver, sweeps=sweeps, exact=exact, exact_3d=exact_3d,
                                    limits=limits, progress=progress)
    records = api.frontier_records(session, points, api.bootstrap_for(session, confidence), timing=timing)
    payloads = [r.to_dict() for r in records]
    if plot is not None:
        from moe2_cli.cli.plotting import plot_frontier

        baselines = _baselines(session, [] if exact or exact_3d else sweeps, limits) if compare else {}
        plot_frontier(plot, payloads, baselines, session)
    _render(format, payloads, session)
    if not any(p["selection"] for p in payloads):
        report(f"no point of the frontier has a selection ({plural(len(payloads), 'budget')} tried)")
        raise typer.Exit(EXIT_UNMET)


def _baselines(session: Session, sweeps: list[str], limits: Limits) -> dict[str, list[dict]]:
    """Each baseline heuristic's points on the same sweep, drawn beside the frontier."""
    with progress_bar("baselines", total=None) as progress:
        traced = api.baseline_frontiers(session, sweeps, limits, progress=progress)
    return {name: [r.to_dict() for r in api.frontier_records(session, points, None, timing=False)]
            for name, points in traced.items()}


def _render(format: OutputFormat, payloads: list[dict], session: Session) -> None:
    """One row per point: the swept caps, F with its interval (``f_low``, ``f_high``), the worst-case
    energy, each category's latency, and the selection. A narrow terminal loses the latencies
    first, then the evaluations and the status; csv and json keep them."""
    cats = session.problem.instance.categories
    rows = []
    for p in payloads:
        ci = p["objective_ci"] or {}
        row = {**{f"cap.{k}": v for k, v in p["caps"].items()}, "objective": p["objective"],
               "f_low": ci.get("low"), "f_high": ci.get("high"), "energy_j": _worst(p["energy_j"]),
               **{f"latency_s.{c}": p["latency_s"][c] for c in cats},
               "status": p["status"], "evaluations": p["evaluations"], "pareto": p["pareto"],
               "selection": p["selection"]}
        rows.append(row)
    cap_keys = list(dict.fromkeys(k for r in rows for k in r if k.startswith("cap.")))
    cell = objective_cell(session.metric)
    columns = [Column(k, k.removeprefix("cap.") + " cap") for k in cap_keys] + [
        Column("objective", "F", cell), Column("f_low", "F low", cell), Column("f_high", "F high", cell),
        Column("energy_j", "energy J", lambda v: f"{v:.1f}"),
        *[Column(f"latency_s.{c}", f"{c} s", lambda v: f"{v:.2f}", drop=3) for c in cats],
        Column("status", "status", no_wrap=True, drop=1), Column("evaluations", "evals", drop=2),
        Column("pareto", "pareto", lambda v: "*" if v else ""),
        Column("selection", "selection", "\n".join, justify="left", no_wrap=True)]
    payload = {"schema": FRONTIER_SCHEMA, "scenario": session.scenario.name, "points": payloads}
    emit(format.value, payload=payload, rows=rows, columns=columns,
         title=f"{session.scenario.name}: frontier ({plural(sum(p['pareto'] for p in payloads), 'Pareto point')})",
         extra=[_chart(payloads)])
