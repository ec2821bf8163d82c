"""`moe2 report LOG`: what a `moe2 serve --log` request log says about operation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from moe2_cli.cli.common import handles_errors, plural
from moe2_cli.cli.options import FormatOpt, OutcomesOpt, OutputFormat
from moe2_cli.cli.render import Column, emit
from moe2_cli.gating.confidence import DEFAULT_CONFIDENCE

LogArg = Annotated[Path, typer.Argument(
    help="The --log DIR of 'moe2 serve' (its rotated files are read oldest first), or one log file.",
    show_default=False)]
ReportScenarioArg = Annotated[Path | None, typer.Argument(
    help="The scenario served (a file or a shipped name): with it, or --selection, the expected accuracy "
         "difference to the baseline is estimated from its outcomes (the shipped default with --selection alone).",
    show_default=False)]
PlanOpt = Annotated[Path | None, typer.Option(
    "--selection", help="The saved 'moe2 select --format json' that was served: the plan compared with the baseline "
                        "(without it, S is solved from the scenario's budgets, as serve does).")]
LevelOpt = Annotated[float, typer.Option("--confidence", min=0.5, max=0.999,
                                         help="Level of the bootstrap intervals of the expected accuracies.")]


@handles_errors
def report(
    log: LogArg,
    scenario: ReportScenarioArg = None,
    selection: PlanOpt = None,
    outcomes: OutcomesOpt = None,
    confidence: LevelOpt = DEFAULT_CONFIDENCE,
    skip_malformed: Annotated[bool, typer.Option(
        "--skip-malformed", help="Count and skip lines that are not request records (a server killed mid-write "
                                 "cuts its last line) instead of stopping at them with exit 2.")] = False,
    format: FormatOpt = OutputFormat.table,
) -> None:
    """Summarise a request log: requests per category, the joules and seconds saved against the
    baseline of 'moe2 serve --baseline' (totals and per request), the router's own overhead (p50,
    p99) and, given the scenario and the plan, the expected accuracy difference to the baseline.

    Savings are profile estimates (the baseline expert alone against the experts each request
    called), counted on answered requests; joules measured per request are shown beside them. The
    accuracy difference is the plan's F minus the baseline expert's, estimated on the scenario's
    outcomes reweighted to the log's category mix, with a paired bootstrap interval: it covers
    queries drawn like those outcomes, not the logged answers, which are not scored. Without
    SCENARIO or --selection it is not computed, and the output says so. A malformed line is an
    error at path:line (exit 2) unless --skip-malformed.

    Example: moe2 report log/ serve-local --selection select.json

    Exit codes: 0 reported; 2 bad usage or input (no log, a malformed line, a log without requests).
    """
    from moe2_cli.serve.logread import read_log  # the log is checked before any plan is loaded
    from moe2_cli.serve.logreport import summary

    read = read_log(log, skip_malformed)
    payload = summary(read)
    if scenario is not None or selection is not None:
        payload["accuracy"] = _accuracy(read, log, scenario, selection, outcomes, confidence)
    elif payload["baselines"]:
        payload["notes"].append("expected accuracy difference not computed: give the SCENARIO served (and "
                                "--selection, the plan) to estimate it from the scenario's outcomes")
    _render(format, payload)


def _accuracy(read, log: Path, scenario: Path | None, selection: Path | None, outcomes: Path | None,
              confidence: float) -> list[dict]:
    """One accuracy record per baseline in the log, for the mix of its answered requests."""
    from moe2_cli.gating.crossfit import DEFAULT_FOLDS
    from moe2_cli.gating.drift import plan_settings
    from moe2_cli.serve.logreport import accuracy_against, check_against, log_mix
    from moe2_cli.serve.plan import choose

    choice = choose(scenario, selection=selection, outcomes=outcomes)
    check_against(read, choice, str(log))
    folds = DEFAULT_FOLDS if selection is None else plan_settings(selection)["folds"]
    records = []
    for baseline in sorted({x.baseline for x in read.lines if x.baseline}):
        shares = log_mix(read.lines, baseline)
        if shares:
            records.append(accuracy_against(choice, baseline, shares, f"the requests in {log}", folds=folds,
                                            confidence=confidence, outcomes=outcomes))
    return records


def _render(format: OutputFormat, payload: dict) -> None:
    columns = [Column("category", "category", justify="left"), Column("requests", "requests"),
               Column("answered", "answered"), Column("against_baseline", "vs baseline"),
               Column("saved_j", "saved J", _signed("{:+.1f}")),
               Column("saved_j_per_request", "J/request", _signed("{:+.2f}")),
               Column("saved_s", "saved s", _signed("{:+.2f}")),
               Column("saved_s_per_request", "s/request", _signed("{:+.3f}"))]
    if format is OutputFormat.csv:  # scripts get every figure of a category, not the table's choice
        columns = [Column(key, key) for key in payload["categories"][0]]
    emit(format.value, payload=payload, rows=payload["categories"], columns=columns,
         title=f"{plural(payload['requests'], 'request')} in {plural(len(payload['log']), 'log file')}",
         extra=[Text(line) for line in _lines(payload)])


def _signed(pattern: str):
    return lambda value: pattern.format(value)


def _lines(payload: dict) -> list[str]:
    """The table view's lines under the table."""
    lines = []
    if payload["baselines"]:
        lines.append("baseline: " + ", ".join(f"{e} ({plural(n, 'request')})" for e, n in payload["baselines"].items())
                     + f"; savings are {payload['savings_basis']}")
    overhead = payload["overhead_s"]
    lines.append("router overhead (latency minus the time waiting for experts): " + (
        "not logged" if overhead is None else f"p50 {1000 * overhead['p50']:.2f} ms, p99 {1000 * overhead['p99']:.2f} "
                                              f"ms over {plural(overhead['requests'], 'request')}"))
    measured = payload["measured_j"]
    if measured is not None:
        lines.append(f"measured: {measured['measured_j']:.1f} J on {plural(measured['requests'], 'request')} "
                     f"(estimated {measured['estimated_j']:.1f} J for the same requests)")
    for record in payload["accuracy"]:
        lines += _accuracy_lines(record)
    lines += [f"note: {n}" for n in payload["notes"]]
    return lines


def _accuracy_lines(record: dict) -> list[str]:
    plan, base, diff = record["plan"], record["baseline_f"], record["difference"]
    shares = ", ".join(f"{c} {100 * s:.1f}%" for c, s in record["mix"]["shares"].items() if s > 0)
    return [f"expected accuracy for the log's mix ({shares}): plan {100 * plan['estimate']:.2f}% "
            f"({100 * plan['low']:.2f}% to {100 * plan['high']:.2f}%) vs {record['baseline']} alone "
            f"{100 * base['estimate']:.2f}% ({100 * base['low']:.2f}% to {100 * base['high']:.2f}%)",
            f"difference {100 * diff['estimate']:+.2f} pts, interval {100 * diff['low']:+.2f} to "
            f"{100 * diff['high']:+.2f} pts at level {record['confidence']:g}",
            record["covers"], *(f"note: {n}" for n in record["notes"])]
