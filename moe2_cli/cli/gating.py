"""`moe2 gating train` and `moe2 gating check`: fit the level-2 gate, and test what the
selection solvers assume about it (restriction ~ retraining, F monotone)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moe2_cli.cli.common import difference_cell, handles_errors, objective_cell, plural, progress_bar, report
from moe2_cli.cli.drift import drift_lines
from moe2_cli.cli.options import (
    CacheOpt,
    ConfidenceOpt,
    FoldsOpt,
    FormatOpt,
    Metric,
    MetricOpt,
    OutcomesOpt,
    OutputFormat,
    ScenarioArg,
    SeedOpt,
    TopKOpt,
)
from moe2_cli.cli.render import Column, emit
from moe2_cli.errors import EXIT_UNMET, UsageError
from moe2_cli.fileio import check_writable
from moe2_cli.gating.comparison import compare_for_scenario, evaluate_on
from moe2_cli.gating.confidence import DEFAULT_CONFIDENCE
from moe2_cli.gating.crossfit import DEFAULT_FOLDS
from moe2_cli.gating.model import save_gate
from moe2_cli.gating.pipeline import DEFAULT_QUERIES, deployed_gate
from moe2_cli.gating.reports import check_report, gate_system
from moe2_cli.scenario.scenario import load_scenario

app = typer.Typer(name="gating", help="Train the top-k sparse softmax gate and check the optimality-preserving "
                                      "property and the monotonicity of F.", no_args_is_help=True)

# Upper bounds keep the work finite: with cross-fitting, 100 hidden units already take over 10 s.
QueriesOpt = Annotated[int, typer.Option("--queries", min=10, max=1_000_000, help="Synthetic queries when the "
                                         "scenario has no outcomes (a third are held out).")]
HiddenOpt = Annotated[int, typer.Option("--hidden", min=0, max=64, help="Units of a tanh hidden layer in the gate "
                                                                          "(0: linear h(x) = Wx + b).")]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


# ---------------------------------------------------------------- train


@app.command()
@handles_errors
def train(
    scenario: ScenarioArg = None,
    outcomes: OutcomesOpt = None,
    top_k: TopKOpt = None,
    hidden: HiddenOpt = 0,
    queries: QueriesOpt = DEFAULT_QUERIES,
    seed: SeedOpt = 0,
    folds: FoldsOpt = DEFAULT_FOLDS,
    cache: CacheOpt = True,
    confidence: ConfidenceOpt = DEFAULT_CONFIDENCE,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Save the deployed gate (trained on every query) "
                                                                      "with its metadata (.npz) here.")] = None,
    format: FormatOpt = OutputFormat.table,
) -> None:
    """Cross-validate the gate against simple routers (per-category and per-label lookup,
    per-LLM logistic regression), the best single LLM and the oracle, each query scored by a
    model that did not see it; --out saves the gate trained on every query.

    Example: moe2 gating train examples/llmrouter-edge.yaml --out gate.npz
    """
    if out is not None:
        check_writable(out, "out")
    loaded = load_scenario(scenario)
    with progress_bar("cross-fitting the gate", total=folds) as progress:
        payload = compare_for_scenario(loaded, outcomes_path=outcomes, top_k=top_k, seed=seed, queries=queries,
                                       hidden=hidden, folds=folds, use_cache=cache, confidence=confidence,
                                       progress=progress)
    if out is not None:
        save_gate(out, deployed_gate(loaded, top_k=top_k, seed=seed, outcomes_path=outcomes, use_cache=cache))
    payload["weights_file"] = str(out) if out else None
    level = f"{100 * confidence:g}%"
    columns = [Column("router", "router", justify="left"), Column("objective", "F (all LLMs)", _pct),
               Column("low", f"{level} low", _pct), Column("high", f"{level} high", _pct),
               Column("versus_gate", "minus gate", _pts), Column("versus_gate_low", f"{level} low", _pts),
               Column("versus_gate_high", f"{level} high", _pts)]
    emit(format.value, payload=payload, rows=payload["routers"], columns=columns,
         title=f"{payload['scenario']}: top-{payload['top_k']} gate and simple routers over "
               f"{plural(len(payload['llms']), 'LLM')}, {payload['folds']}-fold cross-validated on "
               f"{plural(payload['queries'], 'query', 'queries')}",
         extra=[_category_line(payload["category_inference"])])


def _category_line(inference: dict | None) -> str:
    """The table view's line on inferring a request's category from its text."""
    if inference is None:
        return "category inferred from text: unavailable (the outcomes carry no question text)"
    per = ", ".join(f"{c['category']} {_pct1(c['accuracy'])}" for c in inference["per_category"])
    return (f"category inferred from text: {_pct1(inference['accuracy'])} cross-fitted accuracy on "
            f"{plural(inference['queries'], 'query', 'queries')} ({inference['folds']} folds; {per})")


def _pct1(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _pts(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.2f} pts"


# ---------------------------------------------------------------- check


def _check_rows(payload: dict) -> list[dict]:
    """The check's quantities, each shown in its own unit: F as the other tables show it, a
    difference of two F in points, a rate in percent, a count as it is."""
    opt, mono = payload["optimality"], payload["monotonicity"]
    gap = opt["gap"]
    pairs = "every pair" if mono["exhaustive"] else "random pairs"
    f, diff = objective_cell(payload["metric"]), difference_cell(payload["metric"])

    def row(quantity: str, value, cell=str) -> dict:
        return {"quantity": quantity, "value": value, "shown": "-" if value is None else cell(value)}

    return [
        row("F of the full set (held out)", payload["full_set_F"], f),
        row("subsets S retrained", opt["subsets"]),
        row("folds (each held out in turn)", opt["folds"]),
        *(row(f"gap F(retrained on S) - F(restricted to S), mean over folds: {k}", gap[k], diff)
          for k in ("mean", "median", "p90", "max", "min")),
        row("subsets where retraining gains > 0.01", opt["retraining_better_by_1pt"]),
        *(row(f"fold {i}: mean gap over the subsets", g, diff) for i, g in enumerate(opt["fold_gaps"])),
        row("per-fold mean gap: mean", opt["fold_gap_mean"], diff),
        row("per-fold mean gap: spread (sd over folds)", opt["fold_gap_spread"], diff),
        row("one subset in one fold: min gap", opt["single_fold_gap"]["min"], diff),
        row("one subset in one fold: max gap", opt["single_fold_gap"]["max"], diff),
        row(f"monotonicity: pairs S < S+{{i}} checked ({pairs})", mono["pairs"]),
        row("monotonicity: pairs where F drops", mono["violations"]),
        row("monotonicity: violation rate", mono["rate"], lambda v: f"{100 * v:.2f}%"),
        row("monotonicity: largest drop", mono["max_drop"], diff),
        row("monotonicity: mean drop (violations)", mono["mean_drop"], diff),
        row("largest gap to the monotone envelope", mono["envelope_gap"], diff),
    ]


@app.command()
@handles_errors
def check(
    scenario: ScenarioArg = None,
    outcomes: OutcomesOpt = None,
    top_k: TopKOpt = None,
    # Each subset retrains a gate in every fold (about a second each); a pair is two evaluations of F.
    subsets: Annotated[int, typer.Option("--subsets", min=1, max=1000,
                                         help="Random selections to retrain a gate on.")] = 20,
    samples: Annotated[int, typer.Option("--samples", min=1, max=1_000_000,
                                         help="Random pairs for the monotonicity check when N > 20 (smaller N "
                                              "checks every pair).")] = 20_000,
    hidden: HiddenOpt = 0,
    queries: QueriesOpt = DEFAULT_QUERIES,
    folds: Annotated[int, typer.Option("--folds", min=2, max=20, help="Folds: each is held out in turn and scores "
                                                                      "gates trained on the others.")] = DEFAULT_FOLDS,
    seed: SeedOpt = 0,
    metric: MetricOpt = Metric.accuracy,
    format: FormatOpt = OutputFormat.table,
) -> None:
    """Compare F with the full-set gate restricted to random selections S against F with a gate
    retrained on S alone, in every fold of a cross-fit (the gaps' spread over folds shows how
    far one split can mislead), and count the pairs S < S+{i} where F drops.

    Example: moe2 gating check --subsets 30 --format json
    """
    with progress_bar("training the gate") as progress:
        system = gate_system(scenario, outcomes, top_k, seed, metric, queries, hidden, progress)
    with progress_bar("retraining gates") as progress:
        payload = check_report(system, subsets, samples, seed, folds, progress)
    emit(format.value, payload=payload, rows=_check_rows(payload),
         columns=[Column("quantity", "quantity", justify="left"), Column("shown", "value")]
         if format is OutputFormat.table else [Column("quantity", "quantity"), Column("value", "value")],
         title=f"{payload['scenario']}: optimality-preserving check and monotonicity of F "
               f"({payload['metric']}, top-{payload['top_k']})")


# ---------------------------------------------------------------- eval


@app.command(name="eval")
@handles_errors
def eval_command(
    scenario: ScenarioArg = None,
    outcomes: Annotated[Path | None, typer.Option("--outcomes", help="Outcomes of other queries to score on (any "
                                                                     "supported format, tasks mapped by the "
                                                                     "scenario); required.")] = None,
    selection: Annotated[Path | None, typer.Option("--selection", help="A saved `moe2 select --format json`: "
                                                                       "score that selection too.")] = None,
    top_k: TopKOpt = None,
    seed: SeedOpt = 0,
    cache: CacheOpt = True,
    confidence: ConfidenceOpt = DEFAULT_CONFIDENCE,
    fail_on_drift: Annotated[bool, typer.Option("--fail-on-drift", help="Exit 1 when the selection's F on the new "
                                                "queries is below the plan's interval reweighted to their mix "
                                                "(needs --selection).")] = False,
    format: FormatOpt = OutputFormat.table,
) -> None:
    """Score the deployed gate, every simple router and (with --selection) a saved selection on
    another outcome file: how a plan holds up on next month's queries. Also shows how the mix of
    categories and tags shifted since training and, with --selection, whether the selection's F
    is inside, above or below the plan's interval reweighted to the new mix.

    Example: moe2 gating eval examples/llmrouter-edge.yaml --outcomes new.jsonl --selection plan.json

    Exit codes: 0 scored; 1 --fail-on-drift and F fell below the plan's interval; 2 bad usage or input.
    """
    if outcomes is None:
        raise UsageError("gating eval needs --outcomes FILE: the queries to score on")
    if fail_on_drift and selection is None:
        raise UsageError("--fail-on-drift needs --selection SELECT.json: the plan to check against")
    payload = evaluate_on(load_scenario(scenario), outcomes, selection=selection, top_k=top_k, seed=seed,
                          use_cache=cache, confidence=confidence)
    rows = list(payload["routers"])
    chosen = payload["selection"]
    if chosen is not None:
        gain = chosen["gain_over_best_single"]
        rows.append({"router": "selection: gate in {" + ", ".join(chosen["experts"]) + "}",
                     **{k: chosen["objective"][key] for k, key in (("objective", "estimate"), ("low", "low"),
                                                                     ("high", "high"))}})
        rows.append({"router": f"selection: best single inside ({chosen['best_single']['expert']})",
                     **{k: chosen["best_single"][key] for k, key in (("objective", "estimate"), ("low", "low"),
                                                                       ("high", "high"))},
                     "versus_gate": -gain["estimate"], "versus_gate_low": -gain["high"],
                     "versus_gate_high": -gain["low"]})
    level = f"{100 * confidence:g}%"
    columns = [Column("router", "router", justify="left"), Column("objective", "F", _pct),
               Column("low", f"{level} low", _pct), Column("high", f"{level} high", _pct),
               Column("versus_gate", "minus gate", _pts), Column("versus_gate_low", f"{level} low", _pts),
               Column("versus_gate_high", f"{level} high", _pts)]
    emit(format.value, payload=payload, rows=rows, columns=columns,
         title=f"{payload['scenario']}: trained on {payload['trained_on']:,} queries, scored on "
               f"{payload['queries']:,} from {payload['outcomes']}", extra=drift_lines(payload))
    if fail_on_drift and chosen["drift"] == "below":
        report(f"drift: the selection's F on {payload['outcomes']} is below the plan's interval for its mix")
        raise typer.Exit(EXIT_UNMET)
